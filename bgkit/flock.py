"""Exclusive ``flock`` guards that several processes share, taken within a deadline."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["GuardBusy", "guard", "lock_within"]

# (resolved guard file, thread) -> [its descriptor or -1, how many ``with`` blocks use it]
_HELD: dict[tuple[str, int], list[int]] = {}
# Re-entrant: an interrupt landing between a ``with``'s acquire and its ``try`` would
# leave a plain Lock held, and the same thread's cleanup would then wait on it for ever.
_HELD_LOCK = threading.RLock()


class GuardBusy(Exception):
    """The guard file stayed locked by another process (or thread) past the deadline."""


def lock_within(descriptor: int, *, timeout_s: float, poll_s: float) -> bool:
    """Take an exclusive ``flock`` on ``descriptor``, trying every ``poll_s`` seconds;
    False when it is still held by someone else after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(poll_s)


@contextmanager
def guard(path: Path, *, timeout_s: float, poll_s: float, mode: int = 0o600,
          busy: Callable[[], Exception] = GuardBusy,
          unopenable: Callable[[OSError], Exception] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` of ``path`` (created with ``mode``) for the block.

    Re-entrant within a thread. An interrupt (Ctrl-C, SIGTERM) landing as an earlier block
    is entered or left can keep that block's descriptor, and the lock with it, alive in
    the traceback; the cleanup that follows in the same thread (a canary split ended, a
    lease written) must not then wait behind its own process's lock. Other threads and
    processes are kept out as ever: each takes its own descriptor, and ``flock`` locks
    conflict between descriptors.

    Raises ``unopenable(error)`` (else the ``OSError`` itself) when ``path`` cannot be
    opened, and ``busy()`` when the lock is still held elsewhere after ``timeout_s``
    seconds (polled every ``poll_s``).
    """
    key = (os.path.realpath(path), threading.get_ident())
    with _HELD_LOCK:
        held = _HELD.setdefault(key, [-1, 0])
        held[1] += 1
    try:
        if held[0] < 0:  # the first block of this thread: open, keep, then lock
            try:
                held[0] = os.open(path, os.O_RDWR | os.O_CREAT, mode)
            except OSError as error:
                if unopenable is None:
                    raise
                raise unopenable(error) from error
            if not lock_within(held[0], timeout_s=timeout_s, poll_s=poll_s):
                raise busy()
        yield
    finally:
        with _HELD_LOCK:
            held[1] -= 1
            last = held[1] == 0 and _HELD.get(key) is held
            if last:
                del _HELD[key]
        if last and held[0] >= 0:
            os.close(held[0])  # closing releases the flock
