"""The deployment lease: atomic, renewed while held, never two holders, takeovers recorded."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgkit import lock as locking
from bgkit.errors import LeaseLost, LockHeld, UsageError
from tests.thread_support import raised_in_another_thread

FORK = multiprocessing.get_context("fork")


def foreign_lease(path: Path, *, expired: bool, intent: dict[str, Any] | None = None,
                  owner: str = "ci:other-runner") -> None:
    """A lease written by a process on another machine (another boot id)."""
    now = time.time()
    info = locking.LeaseInfo(
        owner=owner, message="switch", host="runner-7", pid=4242, acquired_at=now - 100,
        ttl_s=30, token="f" * 16, expires_at=now - 1 if expired else now + 60,
        machine=locking.Machine(host="runner-7", boot_id="another-boot", pid_ns="pid:[1]",
                                pid_start=1),
        intent=intent, revision="0" * 16)
    path.write_text(json.dumps(info.to_json()))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != ".bgkit.lock.guard")


def test_a_held_lease_refuses_a_second_taker_saying_who_and_why(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    first = locking.acquire(path, message="deploy 2.0", ttl_s=60, owner="ci:job-7")
    with pytest.raises(LockHeld, match=r"held by ci:job-7 .* for 'deploy 2.0'"):
        locking.acquire(path, message="switch", ttl_s=60, owner="alice@laptop")
    locking.release(first)
    assert leftovers(tmp_path) == []
    again = locking.acquire(path, message="switch", ttl_s=60, owner="alice@laptop")
    assert locking.read_lock(path) == again.info


def test_a_lease_whose_holder_is_alive_here_is_never_taken_over_even_expired(
        tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    locking.acquire(path, message="a long watch", ttl_s=0.01, owner="bob@ops")
    time.sleep(0.05)
    with pytest.raises(LockHeld, match="held by bob@ops"):
        locking.acquire(path, message="deploy", ttl_s=60, owner="carol@ops")


def test_an_expired_lease_from_another_machine_is_taken_over_and_recorded(
        tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    foreign_lease(path, expired=True)
    new = locking.acquire(path, message="switch", ttl_s=60, owner="carol@ops")
    assert new.took_over is not None
    assert new.took_over["owner"] == "ci:other-runner"
    assert "expired" in new.took_over["reason"]
    assert json.loads(path.read_text())["took_over"]["token"] == "f" * 16
    assert leftovers(tmp_path) == ["bgkit.lock"]  # no stale-* or draft files


def test_an_unexpired_lease_from_another_machine_is_not_judged_by_pid(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    foreign_lease(path, expired=False)  # its pid 4242 means nothing here
    with pytest.raises(LockHeld, match="ci:other-runner"):
        locking.acquire(path, message="switch", ttl_s=60)


def test_a_lease_whose_process_died_on_this_machine_is_taken_over_at_once(
        tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    child = FORK.Process(target=locking.acquire, args=(path,),
                         kwargs={"message": "m", "ttl_s": 600})
    child.start()
    child.join()
    info = locking.read_lock(path)
    assert info is not None and "is gone" in (info.stale() or "")
    taken = locking.acquire(path, message="after crash", ttl_s=60)
    assert taken.took_over is not None and taken.took_over["pid"] == child.pid


def test_the_holder_renews_its_lease_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    with locking.held(path, message="watching", ttl_s=0.3) as lease:
        first = lease.info.expires_at
        time.sleep(0.8)  # more than twice the TTL
        stored = locking.read_lock(path)
        assert stored is not None and stored.expires_at > first
        assert stored.expires_at > time.time()
        lease.verify()
    assert not path.exists()


def test_a_lost_lease_fails_verify_and_refuses_to_record_an_intent(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    lease = locking.acquire(path, message="switch", ttl_s=60)
    locking.force_release(path)
    with pytest.raises(LeaseLost, match="released by someone else"):
        lease.verify()
    with pytest.raises(LeaseLost):
        lease.record_intent({"action": "switch", "from_pool": "blue", "to_pool": "green"})
    other = locking.acquire(path, message="deploy", ttl_s=60, owner="dave@ops")
    lease.release()  # the old holder's late release must not free the new lease
    assert locking.read_lock(path) == other.info


def test_an_unfinished_intent_is_refused_to_a_deploy_and_handed_to_a_switch(
        tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    intent = {"action": "switch", "from_pool": "blue", "to_pool": "green",
              "version": "2.0.0", "phase": "watching"}
    foreign_lease(path, expired=True, intent=intent)
    with pytest.raises(LockHeld, match=r"middle of a switch from blue to green .*`bgkit "
                                       r"switch` or `bgkit rollback` first"):
        locking.acquire(path, message="deploy 3.0", ttl_s=60)
    lease = locking.acquire(path, message="switch", ttl_s=60, accept_intent=True)
    assert lease.took_over is not None and lease.took_over["intent"] == intent


def test_a_left_lease_keeps_its_intent_and_is_stale_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    lease = locking.acquire(path, message="switch", ttl_s=60)
    lease.record_intent({"action": "switch", "from_pool": "blue", "to_pool": "green",
                         "phase": "switching"})
    lease.leave("the refresh task is still running")
    lease.release()  # no-op: it was left on purpose
    stored = locking.read_lock(path)
    assert stored is not None and stored.intent is not None
    assert "left it" in (stored.stale() or "")
    with pytest.raises(LockHeld, match="middle of a switch"):
        locking.acquire(path, message="deploy", ttl_s=60)


def test_a_writer_that_crashed_mid_write_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    (tmp_path / ".bgkit.lock.0123456789abcdef.draft").write_text("{half a lea")
    (tmp_path / "bgkit.lock.stale-0123456789abcdef").write_text("{}")  # before leases
    lease = locking.acquire(path, message="switch", ttl_s=60)
    assert leftovers(tmp_path) == ["bgkit.lock"]
    lease.release()
    assert leftovers(tmp_path) == []


def test_held_releases_even_when_the_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    with pytest.raises(RuntimeError), locking.held(path, message="x", ttl_s=60):
        assert path.exists()
        raise RuntimeError("boom")
    assert not path.exists()


def test_an_unreadable_lock_file_says_how_to_clear_it(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    path.write_text("{not json")
    with pytest.raises(UsageError, match="lock release --force"):
        locking.read_lock(path)


def test_a_lock_file_from_before_leases_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.lock"
    path.write_text(json.dumps({"owner": "old@bgkit", "message": "deploy", "host": "h",
                                "pid": 1, "acquired_at": 100.0, "ttl_s": 900.0,
                                "token": "abc", "took_over": None}))
    info = locking.read_lock(path)
    assert info is not None and info.expires_at == 1000.0


class SteppedStore(locking.FileLeaseStore):
    """A file store whose takers pause between reading and writing, one at a time."""

    def __init__(self, path: Path, gate: threading.Event) -> None:
        super().__init__(path)
        self.gate = gate

    def replace(self, info: locking.LeaseInfo, *, revision: str) -> str | None:
        self.gate.wait(5)
        return super().replace(info, revision=revision)


def test_the_reported_interleaving_leaves_one_holder(tmp_path: Path) -> None:
    """One stale lease; B reads it and pauses; C takes it over; D finds C's; B resumes."""
    path = tmp_path / "bgkit.lock"
    foreign_lease(path, expired=True)
    paused = threading.Event()
    results: dict[str, object] = {}

    def taker(name: str, store: locking.LeaseStore) -> None:
        try:
            results[name] = locking.acquire(store, message=name, ttl_s=60, owner=name)
        except LockHeld as error:
            results[name] = error

    b = threading.Thread(target=taker, args=("B", SteppedStore(path, paused)))
    b.start()
    time.sleep(0.1)  # B has read the stale lease and waits before its write
    taker("C", locking.FileLeaseStore(path))
    taker("D", locking.FileLeaseStore(path))
    paused.set()
    b.join()
    assert isinstance(results["C"], locking.Lease)
    assert isinstance(results["B"], LockHeld) and isinstance(results["D"], LockHeld)
    stored = locking.read_lock(path)
    assert stored is not None and stored.owner == "C"
    assert leftovers(tmp_path) == ["bgkit.lock"]


def _race(path: str, occupied: str, barrier: Any, hold_s: float, results: Any) -> None:
    """Take the lease; while holding it, own the ``occupied`` marker exclusively."""
    barrier.wait()
    try:
        # A TTL far above any hold: on a loaded machine a 0.5 s lease could expire while
        # its holder waits for the CPU, and a takeover would then be right, not a race.
        lease = locking.acquire(Path(path), message=f"racer {os.getpid()}", ttl_s=10)
    except LockHeld:
        results.put("refused")
        return
    try:
        marker = os.open(occupied, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        results.put("two holders")
        return
    time.sleep(hold_s)
    try:
        lease.verify()
    except LeaseLost:
        results.put("lost while held")
    os.close(marker)
    Path(occupied).unlink()
    lease.release()
    results.put("won")


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(racers=st.integers(min_value=2, max_value=8),
       start=st.sampled_from(["free", "expired elsewhere", "process gone", "left"]),
       hold_ms=st.integers(min_value=0, max_value=30))
def test_racers_over_a_stale_lease_never_hold_it_two_at_a_time(
        tmp_path_factory: pytest.TempPathFactory, racers: int, start: str,
        hold_ms: int) -> None:
    folder = tmp_path_factory.mktemp("race")
    path = folder / "bgkit.lock"
    if start == "expired elsewhere":
        foreign_lease(path, expired=True)
    elif start == "process gone":
        child = FORK.Process(target=locking.acquire, args=(path,),
                             kwargs={"message": "crashed", "ttl_s": 600})
        child.start()
        child.join()
    elif start == "left":
        lease = locking.acquire(path, message="left", ttl_s=600)
        lease.leave("handed over")
    barrier = FORK.Barrier(racers)
    results = FORK.Queue()
    processes = [FORK.Process(target=_race, args=(str(path), str(folder / "occupied"),
                                                  barrier, hold_ms / 1000, results))
                 for _ in range(racers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=30)
    outcomes = [results.get(timeout=5) for _ in processes]
    assert "two holders" not in outcomes and "lost while held" not in outcomes
    assert outcomes.count("won") >= 1
    assert leftovers(folder) == []


def test_a_guard_left_held_by_an_interrupt_does_not_lock_its_own_cleanup_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupt landing as a lease write's ``with`` is entered keeps that descriptor
    (and its flock) alive in the traceback. The cleanup in the same thread (the intent
    cleared, the lease released) still writes; another thread is still kept out."""
    monkeypatch.setattr(locking, "GUARD_TIMEOUT_S", 0.3)
    path = tmp_path / "bgkit.lock"
    lease = locking.acquire(path, message="switch", ttl_s=60)
    store = lease.store
    assert isinstance(store, locking.FileLeaseStore)
    left = store._guarded()
    left.__enter__()  # never left: the interrupt came before the body's try
    try:
        lease.record_intent({"action": "switch", "from_pool": "blue", "to_pool": "green"})
        lease.record_intent(None)
        outside = raised_in_another_thread(store._guarded)
        assert isinstance(outside, LockHeld) and "stayed locked" in str(outside)
    finally:
        left.__exit__(None, None, None)
    lease.release()
    assert locking.read_lock(path) is None
