"""``run_coroutine`` under SIGTERM: the process's handler never runs inside the event loop
(where its exception could drop a task's next step and leave ``asyncio.run`` waiting for
ever); the coroutine is cancelled instead, and the handler runs once the loop is closed."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from bgkit.probe import run_coroutine


class Stopped(KeyboardInterrupt):
    """What bgkit's own SIGTERM handler raises (``Terminated``), for this test."""


@pytest.fixture
def seen() -> Iterator[list[bool]]:
    """A SIGTERM handler that notes whether an event loop was running when it ran, and
    raises like bgkit's; the test's previous handler is put back afterwards."""
    notes: list[bool] = []

    def handler(_signum: int, _frame: FrameType | None) -> None:
        notes.append(asyncio._get_running_loop() is not None)
        raise Stopped

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield notes
    finally:
        signal.signal(signal.SIGTERM, previous)


def sigterm_in(seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    return timer


def test_sigterm_cancels_the_coroutine_then_raises_from_outside_the_loop(
        seen: list[bool]) -> None:
    cleaned: list[str] = []

    async def hold() -> str:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append("the coroutine's own cleanup ran")
        return "never"

    sigterm_in(0.2)
    with pytest.raises(Stopped):
        run_coroutine(hold())
    assert seen == [False]  # the handler ran once, with no loop running
    assert cleaned == ["the coroutine's own cleanup ran"]


def test_busy_tasks_are_all_cancelled_and_the_handler_still_runs_once(
        seen: list[bool]) -> None:
    """Many tasks stepping constantly (the watch's sampler behind schedule) give the
    signal many places to land between two steps of the loop."""
    ended: list[int] = []

    async def spin(index: int) -> None:
        try:
            while True:
                await asyncio.sleep(0)
        finally:
            ended.append(index)

    async def many() -> None:
        tasks = [asyncio.create_task(spin(index)) for index in range(20)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    sigterm_in(0.3)
    with pytest.raises(Stopped):
        run_coroutine(many())
    assert seen == [False]
    assert sorted(ended) == list(range(20))


def test_without_a_signal_the_result_comes_back_and_the_handler_is_put_back(
        seen: list[bool]) -> None:
    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 42

    handler = signal.getsignal(signal.SIGTERM)
    assert run_coroutine(answer()) == 42
    assert signal.getsignal(signal.SIGTERM) is handler and seen == []


def test_a_handler_that_does_not_raise_still_leaves_the_work_cancelled() -> None:
    calls: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: calls.append(signum))
    try:
        sigterm_in(0.2)
        with pytest.raises(asyncio.CancelledError):
            run_coroutine(asyncio.sleep(30))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert calls == [signal.SIGTERM]
