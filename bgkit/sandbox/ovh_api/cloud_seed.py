"""Whole Public Cloud Load Balancer objects, and the blue-green seed the sandbox uses.

Each builder returns one object of the vendored cloud schema's model, every field
present (``null`` where the model allows it), as OVHcloud answers them. Ids are uuids;
``stable_id(name)`` makes one from a name, so a restarted sandbox keeps its ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from bgkit.lb.base import PoolName
from bgkit.sandbox.ovh_api.cloudlb import now_iso

__all__ = ["blue_green_cloud", "listener_json", "loadbalancer_json", "member_json",
           "pool_json", "stable_id"]

_NAMESPACE = uuid.UUID("6f1e3c0a-8d4b-4c6e-9a7f-2b5d0e1c3a49")  # bgkit's own


def stable_id(name: str) -> str:
    """A uuid that is always the same for ``name``."""
    return str(uuid.uuid5(_NAMESPACE, name))


def loadbalancer_json(*, loadbalancer_id: str, name: str, region: str, vip: str,
                      floating_ip: str | None = None,
                      created_at: str | None = None) -> dict[str, Any]:
    """A whole ``cloud.loadbalancing.LoadBalancer``, active and online."""
    stamp = created_at or now_iso()
    return {"createdAt": stamp, "flavorId": stable_id("flavor-small"),
            "floatingIp": None if floating_ip is None else
            {"id": stable_id(f"fip-{floating_ip}"), "ip": floating_ip},
            "id": loadbalancer_id, "name": name, "operatingStatus": "online",
            "provisioningStatus": "active", "region": region, "updatedAt": stamp,
            "vipAddress": vip, "vipNetworkId": stable_id("network"),
            "vipSubnetId": stable_id("subnet")}


def listener_json(*, listener_id: str, loadbalancer_id: str, name: str, port: int,
                  default_pool_id: str | None) -> dict[str, Any]:
    """A whole ``cloud.loadbalancing.Listener`` (HTTP), active and online."""
    return {"allowedCidrs": None, "certificateId": None, "defaultPoolId": default_pool_id,
            "description": None, "id": listener_id, "loadBalancerIds": [loadbalancer_id],
            "name": name, "operatingStatus": "online", "port": port, "protocol": "http",
            "provisioningStatus": "active", "timeoutClientData": None,
            "timeoutMemberData": None, "tlsVersions": None}


def pool_json(*, pool_id: str, loadbalancer_id: str, name: str) -> dict[str, Any]:
    """A whole ``cloud.loadbalancing.Pool`` (HTTP, round robin), active and online."""
    return {"algorithm": "roundRobin", "id": pool_id, "listenerId": None,
            "loadbalancerId": loadbalancer_id, "name": name, "operatingStatus": "online",
            "protocol": "http", "provisioningStatus": "active", "sessionPersistence": None}


def member_json(*, member_id: str, name: str, address: str, port: int) -> dict[str, Any]:
    """A whole ``cloud.loadbalancing.pool.Member`` (its ``operatingStatus`` is live)."""
    return {"address": address, "id": member_id, "name": name,
            "operatingStatus": "online", "protocolPort": port,
            "provisioningStatus": "active", "weight": 1}


def blue_green_cloud(*, service_name: str, region: str, loadbalancer_id: str,
                     listener_id: str, pool_ids: Mapping[PoolName, str], live: PoolName,
                     public_port: int, app_port: int,
                     hosts: Sequence[tuple[PoolName, str, str]],
                     vip: str = "127.0.0.1", created_at: str | None = None) -> dict[str, Any]:
    """One load balancer, one HTTP listener on the public port whose ``defaultPoolId`` is
    the live pool's, and one pool per colour holding that colour's ``hosts``
    (``(pool, name, address)``) at ``app_port``; the ``clouds`` item of the config."""
    members: dict[str, list[dict[str, Any]]] = {pool_ids["blue"]: [], pool_ids["green"]: []}
    for pool, name, address in hosts:
        members[pool_ids[pool]].append(member_json(
            member_id=stable_id(f"{service_name}/{region}/member/{name}"), name=name,
            address=address, port=app_port))
    return {
        "serviceName": service_name, "region": region,
        "loadbalancers": [loadbalancer_json(loadbalancer_id=loadbalancer_id,
                                            name="bgkit-sandbox", region=region, vip=vip,
                                            created_at=created_at)],
        "listeners": [listener_json(listener_id=listener_id, loadbalancer_id=loadbalancer_id,
                                    name="bgkit-public", port=public_port,
                                    default_pool_id=pool_ids[live])],
        "pools": [pool_json(pool_id=pool_ids[pool], loadbalancer_id=loadbalancer_id,
                            name=pool) for pool in ("blue", "green")],
        "members": members,
    }
