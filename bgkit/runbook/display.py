"""Small helpers that show progress and results inside a notebook or a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["build_progress"]


def build_progress(stream: TextIO | None = None) -> Callable[[str], None]:
    """A progress callback printing each build stage with the time since the first."""
    started = time.monotonic()
    out = stream if stream is not None else sys.stdout

    def report(stage: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {stage}", file=out, flush=True)

    return report
