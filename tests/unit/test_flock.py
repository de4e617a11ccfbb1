"""``bgkit.flock.guard``: re-entrant within a thread, exclusive between threads and
processes, keyed on the file itself (not the spelling of its path)."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgkit import flock


def taken_elsewhere(path: Path) -> bool:
    """Whether another thread fails to take the guard at once."""
    busy: list[bool] = []

    def attempt() -> None:
        try:
            with flock.guard(path, timeout_s=0.0, poll_s=0.001):
                busy.append(False)
        except flock.GuardBusy:
            busy.append(True)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    return busy == [True]


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
    with flock.guard(tmp_path / "guard", timeout_s=0.0, poll_s=0.001):  # nothing was left
        assert taken_elsewhere(tmp_path / "guard")
