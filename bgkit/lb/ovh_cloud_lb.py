"""The OVHcloud Public Cloud Load Balancer (Octavia) provider.

On the OVHcloud side: one load balancer (``[lb.ovh_cloud_lb].loadbalancer_id``) in one
region of one Public Cloud project, one listener (``listener_id``) on the public port,
and two pools, one per colour (``pool_ids``), whose members are the hosts of that colour
in bgkit.toml at ``[service].port``. The listener's ``defaultPoolId`` names the live pool.

Octavia has no staging: a ``PUT`` is applied at once, asynchronously. While it is
applied the listener, its pools and the load balancer are ``provisioningStatus =
updating`` (Octavia's ``PENDING_UPDATE``: "no update or delete request is possible on
any component of the load balancer while in that state"), then ``active``, or ``error``
when it failed. What each primitive means here:

- ``live_pool()``: the pool the listener's ``defaultPoolId`` names, only while the
  listener and the load balancer are ``active``. While they are being provisioned, or
  after a provisioning ended in ``error``, the API already shows the new ``defaultPoolId``
  but the load balancer may not serve it, so bgkit refuses to guess.
- ``switch(pool)``: refuses (changing nothing) while the load balancer or the listener is
  not ``active``, and when the target pool's members are not exactly the hosts of that
  colour in bgkit.toml (drift); then ``PUT /listener/{id}`` with only ``defaultPoolId``
  (a field of ``EditListener``; a whole object could overwrite a concurrent edit), polls
  the listener and the load balancer until both are ``active`` and reads
  ``defaultPoolId`` back. A provisioning that ends in ``error`` is undone at once
  (``defaultPoolId`` set back to the previous pool, and followed until ``active``): the
  error names where that leaves traffic. A provisioning still running at ``timeout_s``
  is an :class:`~bgkit.errors.ApplyPending` (it may still apply; the switch follows it
  for ``[switch].apply_grace_s``). A failed ``PUT`` is followed by a read: when the
  listener names the target anyway (the answer was lost, not the change) the switch goes
  on; when it cannot be read, ApplyPending.
- ``state(wait_s)``: follows a provisioning in progress for up to ``wait_s``, then says
  what it can: ``applying`` while provisioning (Octavia's nearest thing to IPLB's
  refresh task); after an ``error``, ``staged`` is the pool ``defaultPoolId`` names with
  one pending change (a change the API holds that the load balancer did not confirm —
  the nearest thing to IPLB's staged change); the live pool only when both are ``active``.
- ``discard_staged(keep)``: after such an ``error``, sets ``defaultPoolId`` to ``keep``'s
  pool again and follows it until ``active``; refuses while a provisioning runs.
- ``backend_health()``: each member of both pools with its ``operatingStatus``: ``online``
  is healthy; ``noMonitor`` (the pool has no health monitor) counts as healthy but not
  monitored — the load balancer has no view of it and the ``lb_health`` gate says so;
  anything else is unhealthy. Drift is reported here too: a member that is no configured
  host of its colour is unhealthy, and a configured host that is no member is listed with
  status ``missing``, so verify's ``lb_health`` gate refuses the switch and ``bgkit
  status`` shows it.

Host addresses are compared as IP addresses; a host given by name in bgkit.toml matches
the addresses it resolves to here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from bgkit.commands import ovh_cloud_lb as cmd
from bgkit.commands.ovh_iplb import ApiRequest
from bgkit.config import OvhCloudLbSettings
from bgkit.errors import ApplyPending, LoadBalancerError, SplitUnsupported
from bgkit.lb.base import BackendServer, LbState, PoolName, SwitchResult
from bgkit.lb.ovh_api import CLOUD_LB, OvhApi, Product, make_client, register_endpoint

__all__ = ["OvhCloudLbProvider", "resolve"]

T = TypeVar("T")
Hosts = Mapping[PoolName, Sequence[tuple[str, int]]]


def resolve(address: str) -> tuple[str, ...]:
    """The IP addresses a configured host address stands for (itself if it is one)."""
    try:
        ipaddress.ip_address(address)
        return (address,)
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(address, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return ()
    return tuple(dict.fromkeys(str(item[4][0]) for item in found))


def product_for(settings: OvhCloudLbSettings) -> Product:
    return dataclasses.replace(CLOUD_LB, key_options=(
        f"--provider ovh-cloud-lb --region {settings.region} "))


class OvhCloudLbProvider:
    """The :class:`bgkit.lb.base.LoadBalancer` primitives over one Octavia listener."""

    name: str = "ovh-cloud-lb"

    def __init__(self, settings: OvhCloudLbSettings, *, api_client: OvhApi, hosts: Hosts,
                 apply_timeout_s: float = 60.0, poll_interval_s: float = 0.1,
                 max_poll_interval_s: float = 2.0,
                 addresses_of: Callable[[str], Sequence[str]] = resolve) -> None:
        self.settings = settings
        self.api = api_client
        self.service = settings.service_name
        self.region = settings.region
        self.pools: dict[PoolName, str] = {"blue": settings.pool_ids.blue,
                                           "green": settings.pool_ids.green}
        self.hosts: dict[PoolName, tuple[tuple[str, int], ...]] = {
            pool: tuple(hosts.get(pool, ())) for pool in ("blue", "green")}
        self.apply_timeout_s = apply_timeout_s
        self.poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s
        self.addresses_of = addresses_of
        self.where = (f"load balancer {settings.loadbalancer_id} (listener "
                      f"{settings.listener_id}, region {settings.region})")

    @classmethod
    def from_settings(cls, settings: OvhCloudLbSettings, *, hosts: Hosts,
                      config_file: Path | None = None, request_timeout_s: float = 30.0,
                      apply_timeout_s: float = 60.0) -> OvhCloudLbProvider:
        """A provider whose client takes credentials from ``OVH_*`` / ovh.conf.

        Raises:
            LoadBalancerError: a credential is missing, or the endpoint is unusable.
        """
        product = product_for(settings)
        client = make_client(settings.endpoint, config_file=config_file,
                             timeout_s=request_timeout_s, service_name=settings.service_name,
                             product=product)
        return cls(settings, hosts=hosts, apply_timeout_s=apply_timeout_s,
                   api_client=OvhApi(client, service_name=settings.service_name,
                                     endpoint=register_endpoint(settings.endpoint,
                                                                product=product),
                                     product=product))

    # --- the LoadBalancer primitives ------------------------------------------------

    def live_pool(self) -> PoolName:
        """The pool the listener's ``defaultPoolId`` names, once provisioned.

        Raises:
            LoadBalancerError: OVHcloud unreachable or refusing, a pool that is neither
                colour's, or a listener or load balancer that is not ``active``.
        """
        balancer, listener = self._loadbalancer(), self._listener()
        pool = self._pool_of(listener.default_pool_id)
        busy = cmd.statuses(balancer, listener)
        if busy:
            raise LoadBalancerError(
                f"{self.where} is not active ({busy}), so the listener's defaultPoolId "
                f"{listener.default_pool_id} ({pool}) may not be what serves traffic and "
                f"bgkit will not guess the live pool; {cmd.what_to_do(balancer, listener)}")
        return pool

    def switch(self, pool: PoolName, *, timeout_s: float) -> SwitchResult:
        """Make ``pool``'s pool the listener's default; return once provisioned.

        Raises:
            LoadBalancerError: the load balancer is not active, the target pool drifted
                from bgkit.toml, OVHcloud refused or failed a step, or the provisioning
                ended in error (the message says where traffic is); ApplyPending when it
                is still being provisioned at ``timeout_s``.
        """
        started = time.monotonic()
        balancer, listener = self._loadbalancer(), self._listener()
        previous = self._pool_of(listener.default_pool_id)
        busy = cmd.statuses(balancer, listener)
        if busy:
            raise LoadBalancerError(
                f"bgkit will not switch {self.where} to {pool}: it is not active ({busy}) "
                "and no update is possible until it is; nothing was changed; "
                + cmd.what_to_do(balancer, listener))
        if previous == pool:
            return SwitchResult(previous=previous, live=pool,
                                applied_s=time.monotonic() - started)
        self._refuse_drift(pool)
        change = _Switch(self, previous, pool)
        change.put()
        change.await_active(started + timeout_s, timeout_s)
        return SwitchResult(previous=previous, live=pool, applied_s=time.monotonic() - started)

    def state(self, *, wait_s: float = 0.0) -> LbState:
        """Follow a provisioning in progress for up to ``wait_s``; then what is known.

        Raises:
            LoadBalancerError: OVHcloud unreachable or refusing, or a default pool that is
                neither colour's.
        """
        deadline = time.monotonic() + wait_s
        attempt = 0
        while True:
            balancer, listener = self._loadbalancer(), self._listener()
            if not cmd.busy(balancer, listener) or time.monotonic() >= deadline:
                break
            self.pause(deadline, attempt)
            attempt += 1
        pool = self._pool_of(listener.default_pool_id)
        names = f"the listener names pool {listener.default_pool_id} ({pool})"
        if cmd.busy(balancer, listener):
            return LbState(live=None, applying=f"{self.where} is being provisioned "
                           f"({cmd.statuses(balancer, listener)})", detail=names)
        if cmd.failed(balancer, listener):
            return LbState(live=None, staged=pool, pending=1, detail=(
                f"the last provisioning of {self.where} ended in error "
                f"({cmd.statuses(balancer, listener)}): {names}, which the load balancer may "
                "not have applied"))
        if cmd.statuses(balancer, listener):
            return LbState(live=None, detail=f"{self.where} is "
                           f"{cmd.statuses(balancer, listener)}; {names}")
        return LbState(live=pool)

    def split(self, pool: PoolName, percent: int, *, timeout_s: float) -> None:
        """A canary cannot be done on the Public Cloud Load Balancer without changing the
        live pool.

        A listener sends its traffic to one pool (``defaultPoolId``); L7 policies redirect
        by what a request carries (``cloud.loadbalancing.L7Rule``: host, path, header,
        cookie...), never by a random share; member weights (``MemberUpdate.weight``) divide
        traffic between the members of one pool. So a share reaches the idle pool only if
        its members join the live pool.

        Raises:
            SplitUnsupported: always for ``percent`` > 0 (0 is nothing to do).
        """
        if percent:
            raise SplitUnsupported(self.split_refusal())

    def split_refusal(self) -> str:
        """Always: see :meth:`split`."""
        return ("ovh-cloud-lb cannot send a share of the traffic to the idle pool: a "
                "listener serves one pool, L7 rules match request fields (host, path, header, "
                "cookie), never a random share, and member weights only divide a pool's own "
                "traffic; a canary would need the idle members added to the live pool, which "
                "bgkit never changes. Switch without a canary (--canary 0) or use HAProxy")

    def open_sessions(self, pool: PoolName) -> None:
        """The Public Cloud Load Balancer's API gives no per-member session count (its
        ``loadbalancer/{id}/stats`` counts the whole load balancer): a deploy relies on
        ``[deploy].min_idle_s`` and the hosts' own count."""
        return None

    def discard_staged(self, keep: PoolName) -> LbState:
        """After a provisioning that ended in error, set the listener back to ``keep``'s
        pool and follow it until active; the state after.

        Raises:
            LoadBalancerError: a provisioning is in progress, or the PUT or its
                provisioning failed, or ``keep`` is not live afterwards.
        """
        balancer, listener = self._loadbalancer(), self._listener()
        if cmd.busy(balancer, listener):
            raise LoadBalancerError(
                f"bgkit will not undo the change on {self.where}: it is being provisioned "
                f"({cmd.statuses(balancer, listener)}); wait for it")
        if listener.default_pool_id != self.pools[keep] or cmd.failed(balancer, listener):
            self.put_default_pool(keep)
            outcome, balancer, listener = self.settle(time.monotonic() + self.apply_timeout_s)
            if outcome != "active":
                raise LoadBalancerError(
                    f"bgkit set the listener of {self.where} back to pool {self.pools[keep]} "
                    f"({keep}) but its provisioning {cmd.outcome_words(outcome)} "
                    f"({cmd.statuses(balancer, listener)}); {cmd.what_to_do(balancer, listener)}")
        after = self.state()
        if after.live != keep:
            raise LoadBalancerError(f"bgkit set the listener of {self.where} back to {keep}, "
                                    f"but the load balancer now says {after.describe()}")
        return dataclasses.replace(after, detail=f"the listener of {self.where} is back on "
                                   f"pool {self.pools[keep]} ({keep}), active")

    def backend_health(self) -> list[BackendServer]:
        """Every member of the blue and green pools, in OVHcloud's order, and every
        configured host that is no member (status ``missing``).

        Raises:
            LoadBalancerError: OVHcloud unreachable or refusing, or a pool missing.
        """
        servers: list[BackendServer] = []
        for pool, pool_id in self.pools.items():
            members = self._members(pool)
            found = cmd.drift(members, self.hosts[pool], addresses_of=self.addresses_of)
            strangers = {member.member_id for member in found.extra}
            for member in members:
                healthy, monitored, detail = cmd.member_health(member)
                if member.member_id in strangers:
                    healthy = False
                    detail = (f"drift: not a host of [pools.{pool}] in bgkit.toml"
                              + (f"; {detail}" if detail else ""))
                servers.append(BackendServer(
                    pool=pool, name=member.name or member.member_id, address=member.address,
                    port=member.port, status=member.operating, healthy=healthy,
                    detail=detail, monitored=monitored))
            servers += [BackendServer(pool=pool, name=address, address=address, port=port,
                                      status="missing", healthy=False,
                                      detail=f"drift: a host of [pools.{pool}] in bgkit.toml "
                                      f"but not a member of pool {pool_id}")
                        for address, port in found.missing]
        return servers

    # --- reading and writing ----------------------------------------------------------------

    def _read(self, request: ApiRequest, parse: Callable[[object], T], *,
              config_key: str | None = None) -> T:
        answer = self.api.call(request, config_key=config_key)
        try:
            return parse(answer)
        except ValueError as error:
            raise LoadBalancerError(
                f"unexpected answer from OVHcloud to {request.method} {request.path}: {error}"
                "; is [lb.ovh_cloud_lb].endpoint the OVHcloud API?") from error

    def _loadbalancer(self) -> cmd.LoadBalancerInfo:
        return self._read(cmd.get_loadbalancer(self.service, self.region,
                                               self.settings.loadbalancer_id),
                          cmd.parse_loadbalancer, config_key="loadbalancer_id")

    def _listener(self) -> cmd.Listener:
        listener = self._read(cmd.get_listener(self.service, self.region,
                                               self.settings.listener_id),
                              cmd.parse_listener, config_key="listener_id")
        owner = self.settings.loadbalancer_id
        if listener.loadbalancer_ids and owner not in listener.loadbalancer_ids:
            raise LoadBalancerError(
                f"listener {listener.listener_id} belongs to load balancer(s) "
                f"{', '.join(listener.loadbalancer_ids)}, not to {owner}; check "
                "[lb.ovh_cloud_lb].listener_id and loadbalancer_id")
        return listener

    def _members(self, pool: PoolName) -> list[cmd.Member]:
        return self._read(cmd.list_members(self.service, self.region, self.pools[pool]),
                          cmd.parse_members, config_key=f"pool_ids.{pool}")

    def _pool_of(self, pool_id: str | None) -> PoolName:
        for pool, known in self.pools.items():
            if known == pool_id:
                return pool
        what = f"pool {pool_id}" if pool_id else "no pool at all (no defaultPoolId)"
        raise LoadBalancerError(
            f"the listener {self.settings.listener_id} of {self.where} sends traffic to "
            f"{what}, which is neither blue ({self.pools['blue']}) nor green "
            f"({self.pools['green']}) in [lb.ovh_cloud_lb].pool_ids; fix the listener's "
            "defaultPoolId or the config before switching")

    def _refuse_drift(self, pool: PoolName) -> None:
        """Refuse (nothing changed) a target pool of another load balancer, or whose
        members are not exactly the configured hosts of ``pool``."""
        info = self._read(cmd.get_pool(self.service, self.region, self.pools[pool]),
                          cmd.parse_pool, config_key=f"pool_ids.{pool}")
        if info.loadbalancer_id != self.settings.loadbalancer_id:
            raise LoadBalancerError(
                f"pool {info.pool_id} ([lb.ovh_cloud_lb].pool_ids.{pool}) belongs to load "
                f"balancer {info.loadbalancer_id}, not to {self.settings.loadbalancer_id}; "
                "nothing was changed; fix the config")
        found = cmd.drift(self._members(pool), self.hosts[pool], addresses_of=self.addresses_of)
        if found:
            raise LoadBalancerError(
                f"bgkit will not switch {self.where} to {pool}: pool {info.pool_id} does not "
                f"hold exactly the hosts of [pools.{pool}] in bgkit.toml at their service "
                f"port ({found.describe()}), so traffic would reach hosts bgkit did not "
                "deploy and verify, or miss some it did; nothing was changed; make the "
                "pool's members and bgkit.toml agree, then retry")

    def put_default_pool(self, pool: PoolName) -> None:
        self.api.call(cmd.set_default_pool(self.service, self.region,
                                           self.settings.listener_id, self.pools[pool]),
                      config_key="listener_id")

    def settle(self, deadline: float) -> tuple[str, cmd.LoadBalancerInfo, cmd.Listener]:
        """Poll the load balancer and the listener until neither is being provisioned, or
        ``deadline``: ``("active" | "error" | "busy" | <other status>, lb, listener)``."""
        attempt = 0
        while True:
            balancer, listener = self._loadbalancer(), self._listener()
            if not cmd.busy(balancer, listener):
                if cmd.failed(balancer, listener):
                    return "error", balancer, listener
                return (cmd.statuses(balancer, listener) or "active"), balancer, listener
            if time.monotonic() >= deadline:
                return "busy", balancer, listener
            self.pause(deadline, attempt)
            attempt += 1

    def pause(self, deadline: float, attempt: int) -> None:
        """Sleep before the next poll: growing intervals, never past ``deadline``."""
        interval = min(self.max_poll_interval_s, self.poll_interval_s * 1.5 ** attempt)
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))


class _Switch:
    """One switch after its checks: PUT, follow the provisioning, undo an error."""

    def __init__(self, provider: OvhCloudLbProvider, previous: PoolName,
                 pool: PoolName) -> None:
        self.lb = provider
        self.previous, self.pool = previous, pool
        self.target = provider.pools[pool]
        self.head = f"switching {provider.where} to {pool}"

    def put(self) -> None:
        try:
            self.lb.put_default_pool(self.pool)
        except LoadBalancerError as error:
            try:
                listener = self.lb._listener()
            except LoadBalancerError as read_error:
                raise ApplyPending(
                    f"{self.head}: the PUT failed ({error}) and the listener cannot be read "
                    f"back ({read_error}), so whether OVHcloud accepted the change is "
                    f"unknown; {self._left()}") from error
            if listener.default_pool_id != self.target:
                raise LoadBalancerError(f"{self.head} failed: {error}; nothing was changed, "
                                        f"{self.previous} still serves traffic") from error
            # The listener names the target: the change was made, only its answer failed.

    def await_active(self, deadline: float, timeout_s: float) -> None:
        try:
            outcome, balancer, listener = self.lb.settle(deadline)
        except LoadBalancerError as error:
            raise ApplyPending(f"{self.head}: cannot follow its provisioning ({error}); "
                               f"{self._left()}") from error
        if outcome == "busy":
            raise ApplyPending(
                f"{self.head} did not finish in {timeout_s:g} s: it is still being "
                f"provisioned ({cmd.statuses(balancer, listener)}); {self._left()}")
        if listener.default_pool_id != self.target:
            raise LoadBalancerError(
                f"{self.head}: the listener now names pool {listener.default_pool_id}, not "
                f"{self.target}: someone changed it during the switch; check `bgkit status` "
                "before going on")
        if outcome == "error":
            raise self._undo(balancer, listener)
        if outcome != "active":
            raise LoadBalancerError(f"{self.head}: the load balancer is now {outcome}; "
                                    f"{cmd.what_to_do(balancer, listener)}")

    def _left(self) -> str:
        return (f"Octavia may still apply it and no change is possible meanwhile, so bgkit "
                f"left it as is: follow GET "
                f"{cmd.prefix(self.lb.service, self.lb.region)}/loadbalancer/"
                f"{self.lb.settings.loadbalancer_id}; 'active' means {self.pool} is live, "
                f"'error' means it may not be and the listener's defaultPoolId must be set "
                f"back to {self.lb.pools[self.previous]} ({self.previous}); `bgkit status` "
                "tells once it settles")

    def _undo(self, balancer: cmd.LoadBalancerInfo, listener: cmd.Listener) -> \
            LoadBalancerError:
        """The provisioning ended in error: set the previous pool back; say where that
        leaves traffic."""
        head = (f"{self.head} failed: its provisioning ended in error "
                f"({cmd.statuses(balancer, listener)})")
        back = self.lb.pools[self.previous]
        try:
            self.lb.put_default_pool(self.previous)
            outcome, balancer, listener = self.lb.settle(
                time.monotonic() + self.lb.apply_timeout_s)
        except LoadBalancerError as error:
            return LoadBalancerError(
                f"{head}; setting the listener back to pool {back} ({self.previous}) failed "
                f"too ({error}): the live pool is unknown; check the load balancer in the "
                "control panel, then run `bgkit switch` or `bgkit rollback`, which converge it")
        if outcome != "active":
            return LoadBalancerError(
                f"{head}; bgkit set the listener back to pool {back} ({self.previous}) but "
                f"that provisioning {cmd.outcome_words(outcome)} "
                f"({cmd.statuses(balancer, listener)}): the live pool is unknown; "
                f"{cmd.what_to_do(balancer, listener)}")
        return LoadBalancerError(
            f"{head}; bgkit set the listener back to pool {back} ({self.previous}) and the "
            f"load balancer is active again: {self.previous} serves traffic; give OVHcloud "
            "support the load balancer id if it happens again")
