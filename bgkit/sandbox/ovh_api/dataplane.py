"""What serves traffic behind the emulator: the sandbox's real HAProxy, or memory.

When a refresh task of the data-plane zone ends ``done``, the emulator calls
``apply(default_farm_id)`` with the frontend's applied ``defaultFarmId``; servers'
``serverState`` comes from ``server_state(farm_id, address, port)``. For the Public Cloud
Load Balancer the same two calls take pool ids (uuids) instead of farm ids: ``apply``
when a provisioning of the bound listener ends ``active``, ``server_state`` for each
member's ``operatingStatus``.

:class:`HaproxyDataPlane` switches the sandbox HAProxy with bgkit's own HAProxy
provider (its ``live`` map entry) and reads HAProxy's health checks with ``show
stat``, so the OVH provider sees real switches and real health. :class:`MemoryDataPlane`
is for tests that need no HAProxy.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from bgkit.commands import haproxy as haproxy_cmd
from bgkit.config import HaproxySettings, PoolBackends
from bgkit.errors import LoadBalancerError
from bgkit.lb.base import PoolName
from bgkit.lb.haproxy import HaproxyProvider

__all__ = ["BackendId", "DataPlane", "DataPlaneError", "HaproxyDataPlane", "MemoryDataPlane"]

INSTANCE_ID = 1  # the one load balancer instance of the zone
BackendId = int | str  # an IPLB farm id, or a Public Cloud pool id


class DataPlaneError(Exception):
    """The data plane refused the configuration: the refresh task ends in error."""


class DataPlane(Protocol):
    def apply(self, default_farm_id: BackendId | None) -> None:
        """Send traffic to that farm's (or pool's) servers; DataPlaneError if impossible."""
        ...

    def server_state(self, farm_id: BackendId, address: str,
                     port: int) -> list[dict[str, Any]]:
        """The ``serverState`` items of one server ([] when it has no check)."""
        ...


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class HaproxyDataPlane:
    """The sandbox HAProxy: farm ids map to pools, pools to its backends."""

    def __init__(self, *, runtime_api: str, map_file: str,
                 farm_pools: Mapping[BackendId, PoolName], timeout_s: float = 5.0) -> None:
        self.farm_pools = dict(farm_pools)
        self.provider = HaproxyProvider(
            HaproxySettings(runtime_api=runtime_api, map_file=map_file,
                            backends=PoolBackends()), timeout_s=timeout_s)

    def apply(self, default_farm_id: BackendId | None) -> None:
        pool = None if default_farm_id is None else self.farm_pools.get(default_farm_id)
        if pool is None:
            raise DataPlaneError(f"farm {default_farm_id} has no HAProxy backend here")
        try:
            self.provider.switch(pool, timeout_s=5.0)
        except LoadBalancerError as error:
            raise DataPlaneError(str(error)) from error

    def server_state(self, farm_id: BackendId, address: str,
                     port: int) -> list[dict[str, Any]]:
        pool = self.farm_pools.get(farm_id)
        if pool is None:
            return []
        try:
            rows = haproxy_cmd.parse_stat_csv(self.provider.api.run(haproxy_cmd.show_stat()))
        except (LoadBalancerError, ValueError):
            return []
        backend = self.provider.backends[pool]
        for row in rows:
            if row.proxy == backend and row.is_server and row.address == f"{address}:{port}":
                return [_state(row)]
        return []


def _state(row: haproxy_cmd.StatRow) -> dict[str, Any]:
    check = row.check_status.lstrip("* ").strip()
    content = row.last_check or row.check_description
    return {"checkCode": row.fields.get("check_code") or None, "checkStatus": check or None,
            "checkTime": _now(), "instanceId": INSTANCE_ID, "lastCheckContent": content or None,
            "status": row.status or None}


class MemoryDataPlane:
    """Records what it is told; ``checks[(address, port)]`` is (status, checkStatus)."""

    def __init__(self) -> None:
        self.applied: list[BackendId | None] = []
        self.checks: dict[tuple[str, int], tuple[str, str]] = {}
        self.refuse: str | None = None  # a message: the next applies fail with it

    def apply(self, default_farm_id: BackendId | None) -> None:
        if self.refuse:
            raise DataPlaneError(self.refuse)
        self.applied.append(default_farm_id)

    def server_state(self, farm_id: BackendId, address: str,
                     port: int) -> list[dict[str, Any]]:
        found = self.checks.get((address, port))
        if found is None:
            return []
        status, check_status = found
        return [{"checkCode": "200" if check_status == "L7OK" else None,
                 "checkStatus": check_status, "checkTime": _now(),
                 "instanceId": INSTANCE_ID, "lastCheckContent": None, "status": status}]
