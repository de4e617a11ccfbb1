"""Exclusive ``flock`` guards that several processes share, taken within a deadline."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

__all__ = ["GuardBusy", "guard", "lock_within"]

# (resolved guard file, thread) -> that thread's open file of it. Weak: a block an
# interrupt cut short still closes its descriptor once nothing refers to it any more.
_HELD: weakref.WeakValueDictionary[tuple[str, int], _Held] = weakref.WeakValueDictionary()


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


class _Held:
    """One thread's open file of a guard, and how many blocks use it."""

    __slots__ = ("__weakref__", "blocks", "file", "locked")

    def __init__(self, file: io.FileIO) -> None:
        self.file: io.FileIO | None = file
        self.blocks = 0
        self.locked = False

    def close(self) -> None:
        """Close the file (releasing its flock) once; later calls do nothing."""
        file, self.file = self.file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def __del__(self) -> None:  # the net under any path an interrupt cut short
        self.close()


@contextmanager
def guard(path: Path, *, timeout_s: float, poll_s: float, mode: int = 0o600,
          busy: Callable[[], Exception] = GuardBusy,
          unopenable: Callable[[OSError], Exception] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` of ``path`` (created with ``mode``) for the block.

    Re-entrant within a thread. An interrupt (Ctrl-C, SIGTERM) landing as an earlier block
    is entered or left can keep that block, and the lock with it, alive in the traceback;
    the cleanup that follows in the same thread (a canary split ended, a lease written)
    must not then wait behind its own process's lock. Other threads and processes are
    kept out as ever: each thread takes its own descriptor, and ``flock`` locks conflict
    between descriptors. The last block to leave closes the descriptor; one cut short
    anywhere by an interrupt is closed when nothing refers to it any more.

    Raises ``unopenable(error)`` (else the ``OSError`` itself) when ``path`` cannot be
    opened, and ``busy()`` when the lock is still held elsewhere after ``timeout_s``
    seconds (polled every ``poll_s``).
    """
    key = (os.path.realpath(path), threading.get_ident())
    held = _HELD.get(key)
    if held is None or held.file is None:
        try:  # a file object, made in C, owns the descriptor from the start: no
            # interrupt can land between the open and something that will close it
            file = io.FileIO(path, "a+", opener=partial(os.open, mode=mode))
        except OSError as error:
            if unopenable is None:
                raise
            raise unopenable(error) from error
        held = _Held(file)
        _HELD[key] = held
    held.blocks += 1
    try:
        if not held.locked:
            opened = held.file
            assert opened is not None  # closed only once no block uses it
            if not lock_within(opened.fileno(), timeout_s=timeout_s, poll_s=poll_s):
                raise busy()
            held.locked = True
        yield
    finally:
        held.blocks -= 1
        if held.blocks <= 0:
            held.close()
            with contextlib.suppress(KeyError):  # gone already if collected meanwhile
                if _HELD.get(key) is held:
                    del _HELD[key]
