"""An exclusive ``flock`` taken within a deadline, for guard files several processes share."""

from __future__ import annotations

import fcntl
import time

__all__ = ["lock_within"]


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
