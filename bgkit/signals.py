"""What a signal handler may do: say something on stderr without raising.

A Python signal handler runs in the main thread between any two bytecodes, possibly in
the middle of a write to ``sys.stderr``; writing to that buffered stream again from the
handler raises ``RuntimeError: reentrant call`` into whatever the main thread was doing
(an event loop included). :func:`say` writes to file descriptor 2 directly instead.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["say"]


def say(line: str) -> None:
    """Write ``line`` and a newline to stderr (fd 2), unbuffered; never raises."""
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode("utf-8", "replace"))
