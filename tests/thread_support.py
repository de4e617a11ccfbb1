"""Enter a lock's block from another thread: how tests check that a guard keeps others out."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager


def raised_in_another_thread(
        block: Callable[[], AbstractContextManager[object]]) -> Exception | None:
    """Enter and leave ``block()`` in a fresh thread; the exception it raised, else None.
    Fails the test if that thread is still waiting after 10 s (a guard that hangs)."""
    raised: list[Exception] = []

    def attempt() -> None:
        try:
            with block():
                pass
        except Exception as error:
            raised.append(error)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "another thread hung on the guard"
    return raised[0] if raised else None
