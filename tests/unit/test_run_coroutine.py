"""``run_coroutine`` under SIGTERM: the process's handler runs at once, but what it raises
never lands inside the event loop (where it could drop a task's next step and leave
``asyncio.run`` waiting for ever); the coroutine is cancelled instead, and the exception is
raised once the loop is closed. From inside a running loop (a kernel), an interrupt of the
caller cancels the coroutine instead of waiting it out."""

from __future__ import annotations

import asyncio
import faulthandler
import os
import signal
import threading
from collections.abc import Callable, Iterator
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


@pytest.fixture
def sigterm_in() -> Iterator[Callable[[float], None]]:
    """Send this process SIGTERM after some seconds; timers not yet fired are cancelled at
    teardown, so none can reach a later test."""
    timers: list[threading.Timer] = []

    def schedule(seconds: float) -> None:
        timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
        timers.append(timer)
        timer.start()

    yield schedule
    for timer in timers:
        timer.cancel()
        timer.join()


def test_sigterm_cancels_the_coroutine_then_raises_from_outside_the_loop(
        seen: list[bool], sigterm_in: Callable[[float], None]) -> None:
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
    assert seen == [True]  # the handler ran at once (what it prints, what it arms) ...
    assert cleaned == ["the coroutine's own cleanup ran"]


def test_the_handlers_exception_never_lands_in_a_tasks_code(seen: list[bool]) -> None:
    """A signal arriving while a task's code runs is handled right there; under
    ``run_coroutine`` what the handler raises only comes out of the call, after the loop."""
    landed: list[str] = []

    async def step() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # handled before the next instruction
        except Stopped:
            landed.append("inside the task")
            raise
        await asyncio.sleep(30)

    with pytest.raises(Stopped):
        run_coroutine(step())
    assert seen == [True] and landed == []


def test_busy_tasks_are_all_cancelled_and_the_handler_still_runs_once(
        seen: list[bool], sigterm_in: Callable[[float], None]) -> None:
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
    faulthandler.dump_traceback_later(60, exit=True)  # a lost step hangs: fail instead
    try:
        with pytest.raises(Stopped):
            run_coroutine(many())
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert seen == [True]
    assert sorted(ended) == list(range(20))


def test_without_a_signal_the_result_comes_back_and_the_handler_is_put_back(
        seen: list[bool]) -> None:
    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 42

    handler = signal.getsignal(signal.SIGTERM)
    assert run_coroutine(answer()) == 42
    assert signal.getsignal(signal.SIGTERM) is handler and seen == []


def test_a_handler_that_does_not_raise_lets_the_work_go_on() -> None:
    """As without a loop: a handler that only notes the signal does not stop anything."""
    calls: list[int] = []

    async def answer() -> int:
        os.kill(os.getpid(), signal.SIGTERM)  # handled before the next instruction
        await asyncio.sleep(0.05)
        return 42

    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: calls.append(signum))
    try:
        assert run_coroutine(answer()) == 42
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert calls == [signal.SIGTERM]


def test_the_signal_wins_over_an_error_the_work_raises_as_it_is_cancelled(
        seen: list[bool], sigterm_in: Callable[[float], None]) -> None:
    """A cleanup that fails must not swallow the SIGTERM that caused it."""
    async def hold() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise RuntimeError("the work's own cleanup failed") from None

    sigterm_in(0.2)
    with pytest.raises(Stopped) as stopped:
        run_coroutine(hold())
    assert seen == [True]
    assert isinstance(stopped.value.__context__, RuntimeError)  # kept, not lost


def test_a_second_sigterm_never_interrupts_the_works_own_cleanup(seen: list[bool]) -> None:
    cleaned: list[str] = []

    async def hold() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(30)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the second one, during the cleanup
            await asyncio.sleep(0.05)
            cleaned.append("the cleanup ran to its end")

    with pytest.raises(Stopped):
        run_coroutine(hold())
    assert seen == [True, True]  # both were heard ...
    assert cleaned == ["the cleanup ran to its end"]  # ... and neither cut the cleanup


def test_inside_a_running_loop_an_interrupted_caller_cancels_the_work() -> None:
    """A kernel's Ctrl-C (KeyboardInterrupt in the cell) during a hold or a watch run on a
    worker thread: the work is cancelled and its cleanup awaited, not waited out."""
    ended: list[str] = []

    started = threading.Event()

    async def hold() -> None:
        try:
            started.set()
            await asyncio.sleep(30)
            ended.append("waited out")
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    async def cell() -> None:
        # asyncio.run's own SIGINT handler only cancels; a kernel raises in the cell
        signal.signal(signal.SIGINT, signal.default_int_handler)
        cell_thread = threading.get_ident()

        def interrupt() -> None:  # to the cell's thread itself: a process-wide signal may
            if started.wait(timeout=30):  # go to any thread that does not block it
                signal.pthread_kill(cell_thread, signal.SIGINT)

        timer = threading.Thread(target=interrupt, daemon=True)
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                run_coroutine(hold())  # blocks this loop, as a kernel's cell does
        finally:
            timer.join()

    previous = signal.getsignal(signal.SIGINT)
    try:
        asyncio.run(cell())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert ended == ["cancelled"]
