"""OVHcloud Public Cloud Load Balancer (Octavia): the requests bgkit sends, as data, and
pure parsers.

Every path sits under ``/cloud/project/{serviceName}/region/{regionName}/loadbalancing``
(``serviceName`` is the Public Cloud project id). Each builder returns one
:class:`~bgkit.commands.ovh_iplb.ApiRequest` for ``bgkit.lb.ovh_cloud_lb``; nothing here
talks to the network. The project and region go into paths unquoted, so they are
refused with ``ValueError`` unless they are plain names; object ids must be uuids.

``access_rules`` is the exact list of (method, path) rules a consumer key needs for
these requests, and nothing more. The parsers take the decoded JSON OVHcloud answered
(whole objects: this API lists objects, not ids) and return typed values, raising
``ValueError`` naming the field that is not what the schema promises.
``member_health`` turns a member's ``operatingStatus`` into bgkit's view, and
``drift`` compares a pool's members with the hosts bgkit.toml gives that colour.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bgkit.commands.ovh_iplb import ApiRequest

__all__ = [
    "BUSY_STATUSES",
    "Drift",
    "Listener",
    "LoadBalancerInfo",
    "Member",
    "Pool",
    "access_rules",
    "busy",
    "drift",
    "failed",
    "get_listener",
    "get_loadbalancer",
    "get_pool",
    "list_members",
    "member_health",
    "outcome_words",
    "parse_listener",
    "parse_loadbalancer",
    "parse_members",
    "parse_pool",
    "prefix",
    "set_default_pool",
    "statuses",
    "what_to_do",
]

# Octavia's PENDING_* states: "no update or delete request is possible on any component
# of the load balancer while in that state" (OVHcloud's concepts guide).
BUSY_STATUSES = ("creating", "updating", "deleting")
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def prefix(service_name: str, region: str) -> str:
    """``/cloud/project/{serviceName}/region/{regionName}/loadbalancing``.

    Raises:
        ValueError: a project or region that is not a plain name.
    """
    if not isinstance(service_name, str) or not _SEGMENT.fullmatch(service_name):
        raise ValueError(f"Public Cloud project (service name) {service_name!r} must be "
                         "letters, digits, '.', '_' or '-' (e.g. 0123456789abcdef0123456789abcdef)")
    if not isinstance(region, str) or not _SEGMENT.fullmatch(region):
        raise ValueError(f"region {region!r} must be letters, digits, '.', '_' or '-' "
                         "(e.g. GRA11)")
    return f"/cloud/project/{service_name}/region/{region}/loadbalancing"


def _uuid(value: str, what: str) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise ValueError(f"{what} must be a lower-case uuid such as "
                         f"3f0e2a64-1b2c-4d5e-8f90-a1b2c3d4e5f6, got {value!r}")
    return value


def get_loadbalancer(service_name: str, region: str, loadbalancer_id: str) -> ApiRequest:
    lb = _uuid(loadbalancer_id, "load balancer id")
    return ApiRequest("GET", f"{prefix(service_name, region)}/loadbalancer/{lb}",
                      f"load balancer {lb} in region {region} of project {service_name}")


def get_listener(service_name: str, region: str, listener_id: str) -> ApiRequest:
    listener = _uuid(listener_id, "listener id")
    return ApiRequest("GET", f"{prefix(service_name, region)}/listener/{listener}",
                      f"listener {listener} in region {region} of project {service_name}")


def set_default_pool(service_name: str, region: str, listener_id: str,
                     pool_id: str) -> ApiRequest:
    """Edit the listener's ``defaultPoolId``: the only field sent (of ``EditListener``),
    so that a concurrent edit of its other fields is never overwritten."""
    listener = _uuid(listener_id, "listener id")
    return ApiRequest("PUT", f"{prefix(service_name, region)}/listener/{listener}",
                      f"listener {listener} in region {region} of project {service_name}",
                      body={"defaultPoolId": _uuid(pool_id, "pool id")})


def get_pool(service_name: str, region: str, pool_id: str) -> ApiRequest:
    pool = _uuid(pool_id, "pool id")
    return ApiRequest("GET", f"{prefix(service_name, region)}/pool/{pool}",
                      f"pool {pool} in region {region} of project {service_name}")


def list_members(service_name: str, region: str, pool_id: str) -> ApiRequest:
    pool = _uuid(pool_id, "pool id")
    return ApiRequest("GET", f"{prefix(service_name, region)}/pool/{pool}/member",
                      f"the members of pool {pool} in region {region} of project "
                      f"{service_name}")


def access_rules(service_name: str, *, region: str | None = None,
                 loadbalancer_id: str | None = None, listener_id: str | None = None,
                 pool_ids: Sequence[str] = ()) -> list[dict[str, str]]:
    """The consumer-key rules for exactly the calls above, in one project.

    What is given is written out; without it the rule holds ``*`` there. ``GET
    /auth/time`` needs no rule: it is not signed.
    """
    if region is None:
        base = prefix(service_name, "any").replace("/region/any/", "/region/*/")
    else:
        base = prefix(service_name, region)
    lb = "*" if loadbalancer_id is None else _uuid(loadbalancer_id, "load balancer id")
    listener = "*" if listener_id is None else _uuid(listener_id, "listener id")
    pools = [_uuid(pool, "pool id") for pool in pool_ids] or ["*"]
    rules = [("GET", f"{base}/loadbalancer/{lb}"),
             ("GET", f"{base}/listener/{listener}"),
             ("PUT", f"{base}/listener/{listener}")]
    for pool in pools:
        rules += [("GET", f"{base}/pool/{pool}"), ("GET", f"{base}/pool/{pool}/member")]
    return [{"method": method, "path": path} for method, path in rules]


# --- parsers --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LoadBalancerInfo:
    loadbalancer_id: str
    name: str
    provisioning: str  # active, creating, deleted, deleting, error, updating
    operating: str  # online, offline, degraded, error, draining, noMonitor


@dataclass(frozen=True, slots=True)
class Listener:
    listener_id: str
    name: str
    default_pool_id: str | None
    loadbalancer_ids: tuple[str, ...]
    provisioning: str
    operating: str


@dataclass(frozen=True, slots=True)
class Pool:
    pool_id: str
    name: str
    loadbalancer_id: str
    provisioning: str
    operating: str


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    name: str
    address: str
    port: int
    operating: str
    provisioning: str
    weight: int | None


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected {what} as a JSON object, got {type(value).__name__}")
    return value


def _field(data: Mapping[str, Any], name: str, kind: type, *, nullable: bool = False) -> Any:
    value = data.get(name)
    if value is None and nullable:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"field {name!r} is {value!r}, expected {kind.__name__}")
    return value


def parse_loadbalancer(value: object) -> LoadBalancerInfo:
    data = _object(value, "a load balancer")
    return LoadBalancerInfo(loadbalancer_id=_field(data, "id", str),
                            name=_field(data, "name", str, nullable=True) or "",
                            provisioning=_field(data, "provisioningStatus", str),
                            operating=_field(data, "operatingStatus", str))


def parse_listener(value: object) -> Listener:
    data = _object(value, "a listener")
    ids = _field(data, "loadBalancerIds", list, nullable=True) or []
    return Listener(listener_id=_field(data, "id", str),
                    name=_field(data, "name", str, nullable=True) or "",
                    default_pool_id=_field(data, "defaultPoolId", str, nullable=True),
                    loadbalancer_ids=tuple(str(item) for item in ids),
                    provisioning=_field(data, "provisioningStatus", str),
                    operating=_field(data, "operatingStatus", str))


def parse_pool(value: object) -> Pool:
    data = _object(value, "a pool")
    return Pool(pool_id=_field(data, "id", str),
                name=_field(data, "name", str, nullable=True) or "",
                loadbalancer_id=_field(data, "loadbalancerId", str),
                provisioning=_field(data, "provisioningStatus", str),
                operating=_field(data, "operatingStatus", str))


def parse_members(value: object) -> list[Member]:
    """``GET .../member``: whole ``pool.Member`` objects, in OVHcloud's order."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of members, got {str(value)[:80]}")
    members = []
    for item in value:
        data = _object(item, "a member")
        members.append(Member(member_id=_field(data, "id", str),
                              name=_field(data, "name", str, nullable=True) or "",
                              address=_field(data, "address", str),
                              port=_field(data, "protocolPort", int),
                              operating=_field(data, "operatingStatus", str),
                              provisioning=_field(data, "provisioningStatus", str),
                              weight=_field(data, "weight", int, nullable=True)))
    return members


_MEMBER_WORDS = {
    "error": "failing the pool's health monitor",
    "offline": "administratively down (not load balanced)",
    "draining": "draining (weight 0: no new connections)",
    "degraded": "degraded",
}


def member_health(member: Member) -> tuple[bool, bool, str]:
    """``(healthy, monitored, detail)`` of a member from its ``operatingStatus``.

    ``online`` is healthy. ``noMonitor`` means the pool has no health monitor: Octavia
    sends traffic to the member without checking it, so it counts as healthy but not
    monitored (the load balancer has no view of its health). Anything else is unhealthy.
    """
    busy = "" if member.provisioning == "active" else \
        f" (provisioningStatus {member.provisioning})"
    if member.operating == "online":
        return True, True, busy.strip(" ()")
    if member.operating == "noMonitor":
        return True, False, ("no health monitor on its pool: the load balancer sends it "
                             "traffic without checking it" + busy)
    return False, True, _MEMBER_WORDS.get(member.operating, member.operating) + busy


@dataclass(frozen=True, slots=True)
class Drift:
    """One pool's members against the hosts bgkit.toml gives its colour."""

    extra: tuple[Member, ...]  # members that are no configured host (address and port)
    missing: tuple[tuple[str, int], ...]  # configured (address, port) with no member

    def __bool__(self) -> bool:
        return bool(self.extra or self.missing)

    def describe(self) -> str:
        parts = [f"member {m.name or m.member_id} ({m.address}:{m.port}) is not one of its "
                 "hosts in bgkit.toml" for m in self.extra]
        parts += [f"host {address}:{port} of bgkit.toml is not a member" for address, port
                  in self.missing]
        return "; ".join(parts)


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def drift(members: Iterable[Member], expected: Sequence[tuple[str, int]], *,
          addresses_of: Callable[[str], Sequence[str]] = lambda name: (name,)) -> Drift:
    """Members that are not an expected ``(address, port)`` and expected ones missing.

    ``addresses_of(address)`` gives the IP addresses a configured host name stands for
    (the provider resolves names; by default an address stands for itself).
    """
    found = list(members)
    wanted = [(address, port, tuple(addresses_of(address))) for address, port in expected]

    def matches(member: Member, address: str, port: int, ips: tuple[str, ...]) -> bool:
        return member.port == port and any(_same_address(member.address, ip)
                                           for ip in (address, *ips))

    extra = tuple(m for m in found if not any(matches(m, *w) for w in wanted))
    missing = tuple((address, port) for address, port, ips in wanted
                    if not any(matches(m, address, port, ips) for m in found))
    return Drift(extra=extra, missing=missing)


# --- statuses, in words ----------------------------------------------------------------

def busy(balancer: LoadBalancerInfo, listener: Listener) -> bool:
    """Whether either is being provisioned (no change is possible meanwhile)."""
    return balancer.provisioning in BUSY_STATUSES or \
        listener.provisioning in BUSY_STATUSES


def failed(balancer: LoadBalancerInfo, listener: Listener) -> bool:
    """Whether the last provisioning of either ended in error."""
    return "error" in (balancer.provisioning, listener.provisioning)


def statuses(balancer: LoadBalancerInfo, listener: Listener) -> str:
    """``""`` when both are active, else what each is."""
    if balancer.provisioning == listener.provisioning == "active":
        return ""
    return (f"load balancer provisioningStatus {balancer.provisioning}, listener "
            f"{listener.provisioning}")


def outcome_words(outcome: str) -> str:
    return {"error": "ended in error", "busy": "did not end in time"}.get(
        outcome, f"left it {outcome}")


def what_to_do(balancer: LoadBalancerInfo, listener: Listener) -> str:
    """What an operator does about a load balancer that is not active."""
    if busy(balancer, listener):
        return ("wait until it is active again (a change is being applied) and retry; `bgkit "
                "status` tells once it settles")
    if failed(balancer, listener):
        return ("its last provisioning ended in error: put the listener's defaultPoolId "
                "on the pool that should serve (a PUT; `bgkit switch` and `bgkit rollback` "
                "do so for a change of their own they find in error) or check the load "
                "balancer in the control panel, and give OVHcloud support its id if it "
                "stays in error")
    return "it is being deleted or is deleted: check [lb.ovh_cloud_lb].loadbalancer_id"
