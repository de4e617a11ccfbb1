"""The deployment lock: atomic, says who holds it, stale locks taken over and recorded."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import time
from pathlib import Path

import pytest

from bgkit import lock as locking
from bgkit.errors import LockHeld


def test_a_held_lock_refuses_a_second_taker_saying_who_and_why(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    first = locking.acquire(path, message="deploy 2.0", ttl_s=60, owner="ci:job-7")
    with pytest.raises(LockHeld, match=r"held by ci:job-7 .* for 'deploy 2.0'"):
        locking.acquire(path, message="switch", ttl_s=60, owner="alice@laptop")
    locking.release(first)
    assert not path.exists()
    again = locking.acquire(path, message="switch", ttl_s=60, owner="alice@laptop")
    assert locking.read_lock(path) == again.info


def test_an_expired_lock_is_taken_over_and_that_is_recorded(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    old = locking.acquire(path, message="deploy", ttl_s=0.01, owner="bob@ops")
    time.sleep(0.05)
    new = locking.acquire(path, message="switch", ttl_s=60, owner="carol@ops")
    assert new.info.took_over is not None
    assert new.info.took_over["owner"] == "bob@ops"
    assert "expired" in new.info.took_over["reason"]
    assert json.loads(path.read_text())["took_over"]["token"] == old.info.token
    locking.release(old)  # the old holder's late release must not free the new lock
    assert locking.read_lock(path) == new.info


def test_a_lock_whose_process_died_on_this_host_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    child = multiprocessing.get_context("fork").Process(
        target=locking.acquire, args=(path,), kwargs={"message": "m", "ttl_s": 600})
    child.start()
    child.join()
    info = locking.read_lock(path)
    assert info is not None and info.host == socket.gethostname()
    assert "is gone" in (info.stale() or "")
    taken = locking.acquire(path, message="after crash", ttl_s=60)
    assert taken.info.took_over is not None and taken.info.took_over["pid"] == child.pid


def _try(path: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        locking.acquire(Path(path), message=f"racer {os.getpid()}", ttl_s=60)
        results.put("won")
        time.sleep(0.5)
    except LockHeld:
        results.put("refused")


def test_only_one_of_many_racers_wins(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    racers = [context.Process(target=_try, args=(str(tmp_path / "l"), results))
              for _ in range(6)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    outcomes = sorted(results.get(timeout=5) for _ in racers)
    assert outcomes == ["refused"] * 5 + ["won"]


def test_held_releases_even_when_the_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    with pytest.raises(RuntimeError), locking.held(path, message="x", ttl_s=60):
        assert path.exists()
        raise RuntimeError("boom")
    assert not path.exists()


def test_an_unreadable_lock_file_says_how_to_clear_it(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    path.write_text("{not json")
    from bgkit.errors import UsageError

    with pytest.raises(UsageError, match="lock release --force"):
        locking.read_lock(path)
