"""Per-host progress displays for long multi-host work.

``LiveProgress`` redraws one line per host in a terminal (rich); ``LineProgress`` prints
a line whenever a host's step changes, which reads well in a notebook and in CI logs.
Both are thread-safe: hosts report from the fan-out's worker threads.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import IO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from bgkit.hosts import Host

__all__ = ["LineProgress", "LiveProgress", "progress_for"]


class LineProgress:
    """``[  1.2 s] green[0] deploy@127.0.2.1:22  upload`` lines, one per change."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stdout
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def update(self, host: Host, step: str) -> None:
        with self._lock:
            elapsed = time.monotonic() - self._started
            print(f"[{elapsed:6.1f} s] {host.label:<40} {step}", file=self._stream, flush=True)


class LiveProgress:
    """A live table in the terminal: one row per host with its current step."""

    def __init__(self, console: Console, title: str) -> None:
        self._console = console
        self._title = title
        self._steps: dict[str, str] = {}
        self._lock = threading.Lock()
        self._live = Live(self._table(), console=console, refresh_per_second=8, transient=False)

    def _table(self) -> Table:
        table = Table(title=self._title)
        table.add_column("host")
        table.add_column("step")
        for label, step in self._steps.items():
            colour = "red" if step.startswith("failed") else "green" if step == "done" else ""
            table.add_row(label, f"[{colour}]{step}[/]" if colour else step)
        return table

    def update(self, host: Host, step: str) -> None:
        with self._lock:
            self._steps[host.label] = step
            self._live.update(self._table())

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._live.__exit__(kind, error, trace)


def progress_for(console: Console, title: str) -> LiveProgress | LineProgress:
    """A live table on a terminal, plain lines everywhere else."""
    if console.is_terminal:
        return LiveProgress(console, title)
    return LineProgress(console.file)
