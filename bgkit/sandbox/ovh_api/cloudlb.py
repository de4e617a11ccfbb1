"""One Public Cloud project's load balancing in one region, as the emulator keeps it.

Objects are whole objects of the vendored schema's models (``cloud.loadbalancing.
LoadBalancer``, ``Listener``, ``Pool`` and ``pool.Member``), keyed by their uuid; list
calls answer objects, not ids. A member's ``operatingStatus`` is read live from the data
plane's health checks (``online`` when UP, ``error`` when DOWN, ``offline`` in
maintenance or unknown to it, ``draining`` with weight 0), or ``noMonitor`` in a pool
seeded without a health monitor; a pool's is derived from its members'.

Changes are provisioned as Octavia does: a write puts what it touches *and* the load
balancer into ``provisioningStatus = updating`` for the fault's ``provisioning_delay_s``,
then ``active`` (applied: for the data-plane listener, the data plane now serves its
``defaultPoolId``), or ``error`` (the emulator's choice for a failed provisioning: the
API keeps the new value, the data plane does not apply it), or stays ``updating``. The
API shows the new values at once. While the load balancer or the object is ``creating``,
``updating`` or ``deleting``, a write is refused with 409: Octavia answers 409
(``ImmutableObject``, "... is immutable and cannot be updated"); **the code and body
OVHcloud's API answers then are not documented** (research notes §2.2), so this is an
inference, in OVHcloud's error shape (``{"class": "Client::Conflict", "message"}``).
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bgkit.sandbox.ovh_api.auth import api_error
from bgkit.sandbox.ovh_api.dataplane import DataPlane, DataPlaneError
from bgkit.sandbox.ovh_api.faults import ProvisioningOutcome

__all__ = ["BUSY", "CLOUD_HANDLERS", "CloudRegion", "Provisioning"]

Kind = Literal["loadbalancer", "listener", "pool", "member"]
NextProvisioning = Callable[[], tuple[float, ProvisioningOutcome]]
BUSY = ("creating", "updating", "deleting")
_MISSING: dict[Kind, str] = {"loadbalancer": "loadBalancerId", "listener": "listenerId",
                             "pool": "poolId", "member": "memberId"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Provisioning:
    """One change being provisioned: what it holds in ``updating`` and how it ends."""

    objects: tuple[tuple[Kind, str], ...]
    delay_s: float
    outcome: ProvisioningOutcome
    apply: Callable[[], None] | None = None  # the data plane's part, on ``active``
    started: float = field(default_factory=time.monotonic)
    finished: bool = False


class CloudRegion:
    """One project and region; the emulator holds its lock around every call."""

    def __init__(self, *, service_name: str, region: str,
                 loadbalancers: list[dict[str, Any]], listeners: list[dict[str, Any]],
                 pools: list[dict[str, Any]], members: Mapping[str, list[dict[str, Any]]],
                 unmonitored_pools: tuple[str, ...] = (), data_plane: DataPlane | None = None,
                 data_plane_listener: str | None = None) -> None:
        self.service_name = service_name
        self.region = region
        self.objects: dict[Kind, dict[str, dict[str, Any]]] = {
            "loadbalancer": {item["id"]: dict(item) for item in loadbalancers},
            "listener": {item["id"]: dict(item) for item in listeners},
            "pool": {item["id"]: dict(item) for item in pools},
            "member": {}}
        self.member_pool: dict[str, str] = {}
        for pool_id, items in members.items():
            for item in items:
                self.objects["member"][item["id"]] = dict(item)
                self.member_pool[item["id"]] = pool_id
        self.unmonitored = set(unmonitored_pools)
        self.data_plane = data_plane
        self.data_plane_listener = data_plane_listener
        self.provisionings: list[Provisioning] = []
        self.last_data_plane_error: str | None = None

    # --- reading ------------------------------------------------------------------------

    def get(self, kind: Kind, object_id: str) -> dict[str, Any]:
        """A copy of one object as the API shows it; 404 if none."""
        item = self.objects[kind].get(object_id)
        if item is None:
            raise api_error(404, f"The requested object ({_MISSING[kind]} = {object_id}) "
                                 "does not exist")
        answer = copy.deepcopy(item)
        if kind == "member":
            answer["operatingStatus"] = self._member_status(item)
        elif kind == "pool":
            answer["operatingStatus"] = self._pool_status(object_id, item)
        return answer

    def listing(self, kind: Kind, filters: Mapping[str, str]) -> list[dict[str, Any]]:
        """Whole objects; ``?loadbalancerId=`` keeps one load balancer's."""
        wanted = filters.get("loadbalancerId")
        return [self.get(kind, key) for key, item in sorted(self.objects[kind].items())
                if wanted is None or wanted in _owners(item)]

    def members(self, pool_id: str) -> list[dict[str, Any]]:
        self.get("pool", pool_id)
        return [self.get("member", key) for key, pool in self.member_pool.items()
                if pool == pool_id]

    def member(self, pool_id: str, member_id: str) -> dict[str, Any]:
        if self.member_pool.get(member_id) != pool_id:
            raise api_error(404, f"The requested object (memberId = {member_id}) does not "
                                 "exist")
        return self.get("member", member_id)

    # --- changing -----------------------------------------------------------------------

    def put_listener(self, listener_id: str, body: Mapping[str, Any],
                     provision: NextProvisioning) -> dict[str, Any]:
        """Edit a listener (``EditListener``, checked against the model already)."""
        self.get("listener", listener_id)  # 404 if none
        listener = self.objects["listener"][listener_id]
        balancer = self._writable(listener["loadBalancerIds"][0], ("listener", listener_id))
        pool_id = body.get("defaultPoolId", listener["defaultPoolId"])
        touched: list[tuple[Kind, str]] = [("listener", listener_id)]
        if pool_id is not None and "defaultPoolId" in body:
            pool = self.objects["pool"].get(pool_id)
            if pool is None or pool["loadbalancerId"] != balancer:
                raise api_error(400, f"Pool {pool_id} does not exist on load balancer "
                                     f"{balancer}")
            self._writable(balancer, ("pool", pool_id))
            touched.append(("pool", pool_id))
        listener.update(body)
        apply = None
        if listener_id == self.data_plane_listener and self.data_plane is not None:
            plane, target = self.data_plane, pool_id
            apply = lambda: plane.apply(target)  # noqa: E731
        self._provision(balancer, touched, provision, apply)
        return self.get("listener", listener_id)

    def add_members(self, pool_id: str, body: Mapping[str, Any],
                    provision: NextProvisioning) -> list[dict[str, Any]]:
        """``POST .../member`` with ``{"members": [...]}``."""
        pool = self.get("pool", pool_id)
        balancer = self._writable(pool["loadbalancerId"], ("pool", pool_id))
        created = []
        for item in body.get("members", ()):
            member_id = str(uuid.uuid4())
            self.objects["member"][member_id] = {
                "address": item["address"], "id": member_id, "name": item.get("name") or "",
                "operatingStatus": "offline", "protocolPort": item["protocolPort"],
                "provisioningStatus": "active", "weight": item.get("weight", 1)}
            self.member_pool[member_id] = pool_id
            created.append(member_id)
        touched: list[tuple[Kind, str]] = [("pool", pool_id),
                                           *(("member", m) for m in created)]
        self._provision(balancer, touched, provision, None)
        return [self.get("member", member_id) for member_id in created]

    def delete_member(self, pool_id: str, member_id: str, provision: NextProvisioning) -> None:
        pool = self.get("pool", pool_id)
        self.member(pool_id, member_id)
        balancer = self._writable(pool["loadbalancerId"], ("member", member_id))
        del self.objects["member"][member_id]
        del self.member_pool[member_id]
        self._provision(balancer, [("pool", pool_id)], provision, None)

    def advance(self, now: float) -> None:
        """End every provisioning whose delay has passed (monotonic ``now``)."""
        for change in self.provisionings:
            if change.finished or change.outcome == "updating" or \
                    now - change.started < change.delay_s:
                continue
            change.finished = True
            status = change.outcome
            if status == "active" and change.apply is not None:
                try:
                    change.apply()
                except DataPlaneError as error:
                    status, self.last_data_plane_error = "error", str(error)
            for kind, object_id in change.objects:
                item = self.objects[kind].get(object_id)
                if item is not None:
                    item["provisioningStatus"] = status
        self.provisionings = [c for c in self.provisionings if not c.finished]

    # --- helpers ------------------------------------------------------------------------

    def _writable(self, balancer_id: str, target: tuple[Kind, str]) -> str:
        """The load balancer's id, once neither it nor ``target`` is being provisioned."""
        balancer = self.get("loadbalancer", balancer_id)
        kind, object_id = target
        item = self.objects[kind].get(object_id, {})
        for what, status in ((f"Load Balancer {balancer_id}",
                              balancer["provisioningStatus"]),
                             (f"{kind.capitalize()} {object_id}",
                              item.get("provisioningStatus"))):
            if status in BUSY:
                # Octavia's 409 ImmutableObject; OVHcloud's own code is not documented.
                raise api_error(409, f"{what} is immutable and cannot be updated "
                                     f"(provisioningStatus {status})")
        return balancer_id

    def _provision(self, balancer_id: str, touched: list[tuple[Kind, str]],
                   provision: NextProvisioning, apply: Callable[[], None] | None) -> None:
        delay_s, outcome = provision()
        objects = (("loadbalancer", balancer_id), *touched)
        for kind, object_id in objects:
            self.objects[kind][object_id]["provisioningStatus"] = "updating"
        self.objects["loadbalancer"][balancer_id]["updatedAt"] = now_iso()
        self.provisionings.append(Provisioning(objects=tuple(objects), delay_s=delay_s,
                                               outcome=outcome, apply=apply))

    def _member_status(self, member: Mapping[str, Any]) -> str:
        pool_id = self.member_pool.get(member["id"], "")
        if pool_id in self.unmonitored:
            return "noMonitor"
        if member.get("weight") == 0:
            return "draining"
        if self.data_plane is None:
            return str(member.get("operatingStatus", "offline"))
        checks = self.data_plane.server_state(pool_id, member["address"],
                                              int(member["protocolPort"]))
        words = [str(check.get("status") or "") for check in checks]
        if not words:
            return "offline"
        if all(word.startswith("UP") for word in words):
            return "online"
        if any(word.startswith("MAINT") for word in words):
            return "offline"
        return "error"

    def _pool_status(self, pool_id: str, pool: Mapping[str, Any]) -> str:
        statuses = {self._member_status(self.objects["member"][member_id])
                    for member_id, owner in self.member_pool.items() if owner == pool_id}
        if not statuses:
            return "offline"
        if statuses <= {"online", "noMonitor"}:
            return "online"
        if statuses <= {"error", "offline"}:
            return "error"
        return "degraded"


def _owners(item: Mapping[str, Any]) -> list[str]:
    owners = item.get("loadBalancerIds") or []
    owner = item.get("loadbalancerId")
    return [*owners, owner] if owner else list(owners)


Handler = Callable[[CloudRegion, Mapping[str, str], Mapping[str, str], Any,
                    NextProvisioning], Any]
_LB = "/cloud/project/{serviceName}/region/{regionName}/loadbalancing"
CLOUD_HANDLERS: dict[tuple[str, str], Handler] = {
    ("GET", f"{_LB}/loadbalancer"): lambda r, p, q, b, n: r.listing("loadbalancer", q),
    ("GET", f"{_LB}/loadbalancer/{{loadBalancerId}}"):
        lambda r, p, q, b, n: r.get("loadbalancer", p["loadBalancerId"]),
    ("GET", f"{_LB}/listener"): lambda r, p, q, b, n: r.listing("listener", q),
    ("GET", f"{_LB}/listener/{{listenerId}}"):
        lambda r, p, q, b, n: r.get("listener", p["listenerId"]),
    ("PUT", f"{_LB}/listener/{{listenerId}}"):
        lambda r, p, q, b, n: r.put_listener(p["listenerId"], b or {}, n),
    ("GET", f"{_LB}/pool"): lambda r, p, q, b, n: r.listing("pool", q),
    ("GET", f"{_LB}/pool/{{poolId}}"): lambda r, p, q, b, n: r.get("pool", p["poolId"]),
    ("GET", f"{_LB}/pool/{{poolId}}/member"): lambda r, p, q, b, n: r.members(p["poolId"]),
    ("POST", f"{_LB}/pool/{{poolId}}/member"):
        lambda r, p, q, b, n: r.add_members(p["poolId"], b or {}, n),
    ("GET", f"{_LB}/pool/{{poolId}}/member/{{memberId}}"):
        lambda r, p, q, b, n: r.member(p["poolId"], p["memberId"]),
    ("DELETE", f"{_LB}/pool/{{poolId}}/member/{{memberId}}"):
        lambda r, p, q, b, n: r.delete_member(p["poolId"], p["memberId"], n),
}
