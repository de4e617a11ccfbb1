"""``bgkit.flock.guard``: re-entrant within a thread, exclusive between threads and
processes, keyed on the file itself (not the spelling of its path)."""

from __future__ import annotations

import contextlib
import dis
import gc
import sys
from contextlib import ExitStack
from pathlib import Path
from types import CodeType, FrameType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgkit import flock
from tests.thread_support import raised_in_another_thread


def taken_elsewhere(path: Path) -> bool:
    """Whether another thread fails to take the guard at once."""
    raised = raised_in_another_thread(
        lambda: flock.guard(path, timeout_s=0.0, poll_s=0.001))
    if raised is not None and not isinstance(raised, flock.GuardBusy):
        raise raised
    return raised is not None


@settings(max_examples=25, deadline=None)
@given(st.lists(st.booleans(), max_size=12))
def test_the_file_is_held_exactly_while_some_block_of_this_thread_is_open(
        tmp_path_factory: pytest.TempPathFactory, moves: list[bool]) -> None:
    path = tmp_path_factory.mktemp("flock") / "guard"
    with ExitStack() as outer:
        opened: list[ExitStack] = []
        for enter in moves:
            if enter:
                block = ExitStack()
                block.enter_context(flock.guard(path, timeout_s=0.0, poll_s=0.001))
                opened.append(block)
                outer.push(block)
            elif opened:
                opened.pop().close()
            assert taken_elsewhere(path) == bool(opened), moves
    assert not taken_elsewhere(path)


def test_another_spelling_of_the_same_file_is_the_same_guard(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with flock.guard(tmp_path / "real" / "guard", timeout_s=0.0, poll_s=0.001), \
            flock.guard(tmp_path / "link" / "guard", timeout_s=0.0, poll_s=0.001):
        assert taken_elsewhere(tmp_path / "real" / "guard")
    assert not taken_elsewhere(tmp_path / "link" / "guard")


def test_an_unopenable_guard_says_so_in_the_callers_words(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "guard"
    with pytest.raises(LookupError, match="cannot open"), \
            flock.guard(missing, timeout_s=0.0, poll_s=0.001,
                        unopenable=lambda error: LookupError(f"cannot open: {error}")):
        pass
    assert not flock._HELD  # nothing was left registered
    with flock.guard(tmp_path / "guard", timeout_s=0.0, poll_s=0.001):
        assert taken_elsewhere(tmp_path / "guard")


GUARD_CODE = flock.guard.__wrapped__.__code__  # type: ignore[attr-defined]
CONTEXT_CODES = {contextlib._GeneratorContextManager.__enter__.__code__,
                 contextlib._GeneratorContextManager.__exit__.__code__}


def interrupt_at(code: CodeType, offset: int) -> list[int]:
    """Trace this thread; raise KeyboardInterrupt (what a signal handler raises) once,
    just before the instruction at ``offset`` of ``code`` runs for a guard block."""
    fired: list[int] = []

    def ours(frame: FrameType) -> bool:
        if frame.f_code is GUARD_CODE:
            return True
        manager = frame.f_locals.get("self")
        return getattr(getattr(manager, "gen", None), "gi_code", None) is GUARD_CODE

    def trace(frame: FrameType, event: str, _arg: object) -> object:
        if frame.f_code is code and ours(frame):
            frame.f_trace_opcodes = True
            if event == "opcode" and frame.f_lasti == offset and not fired:
                fired.append(offset)
                raise KeyboardInterrupt("a signal lands here")
        return trace

    sys.settrace(trace)
    return fired


def open_descriptors() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


@pytest.mark.parametrize("code", [GUARD_CODE, *CONTEXT_CODES],
                         ids=["guard", "enter", "exit"])
def test_an_interrupt_at_any_instruction_never_locks_the_thread_or_others_out(
        tmp_path: Path, code: CodeType) -> None:
    """However an interrupt cuts a block short, the same thread's cleanup still takes the
    guard at once while the traceback lives, and once it is dropped the lock and the
    descriptor are gone: other threads get in and nothing leaks."""
    path = tmp_path / "guard"
    before = open_descriptors()
    landed = 0
    for instruction in dis.get_instructions(code):
        caught: list[BaseException] = []
        fired = interrupt_at(code, instruction.offset)
        try:
            with flock.guard(path, timeout_s=0.0, poll_s=0.001):
                pass
        except KeyboardInterrupt as interrupt:
            caught.append(interrupt)  # the traceback, and what it keeps alive, lives on
        finally:
            sys.settrace(None)
        landed += bool(fired)
        assert bool(caught) == bool(fired), instruction
        with flock.guard(path, timeout_s=0.0, poll_s=0.001):  # the cleanup, at once
            pass
        caught.clear()  # dropped: what it kept goes with it (a cycle, at the next collection)
        if flock._HELD:
            gc.collect()
        assert not taken_elsewhere(path), instruction
        assert open_descriptors() == before, instruction
        assert not flock._HELD, instruction
    assert landed > 5  # the trace did reach the code it was meant to cut
