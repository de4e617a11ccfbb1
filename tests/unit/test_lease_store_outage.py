"""A lease store out of reach: the holder stops before acting, and is not lost for good."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgkit import lock as locking
from bgkit.errors import LeaseLost, StorageError
from bgkit.lock import FileLeaseStore, LeaseInfo


class Flaky(FileLeaseStore):
    """A file store that fails every request while ``down``, as a store out of reach."""

    down = False

    def _maybe_fail(self) -> None:
        if self.down:
            raise StorageError("cannot read s3://bucket/lock: connection refused")

    def read(self) -> LeaseInfo | None:
        self._maybe_fail()
        return super().read()

    def replace(self, info: LeaseInfo, *, revision: str) -> str | None:
        self._maybe_fail()
        return super().replace(info, revision=revision)

    def delete(self, *, revision: str | None) -> bool:
        self._maybe_fail()
        return super().delete(revision=revision)


def test_an_unreachable_store_stops_the_holder_before_acting_but_it_may_go_on_after(
        tmp_path: Path) -> None:
    store = Flaky(tmp_path / "bgkit.lock")
    lease = locking.acquire(store, message="switch", ttl_s=60)
    store.down = True
    with pytest.raises(LeaseLost, match="cannot be checked .*stops before changing"):
        lease.record_intent({"action": "switch", "phase": "switching"})
    with pytest.raises(LeaseLost, match="cannot be checked"):
        lease.verify()
    store.down = False
    assert lease.lost is None
    lease.record_intent({"action": "switch", "phase": "switching"})
    lease.verify()
    lease.release()
    assert locking.read_lock(store) is None


def test_releasing_into_an_unreachable_store_leaves_the_lease_to_expire(
        tmp_path: Path) -> None:
    store = Flaky(tmp_path / "bgkit.lock")
    with locking.held(store, message="deploy", ttl_s=60):
        store.down = True
    store.down = False
    left = locking.read_lock(store)
    assert left is not None and left.message == "deploy"
