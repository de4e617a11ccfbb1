"""The OVHcloud IP Load Balancing provider, following OVHcloud's own blue-green guide.

On the OVHcloud side: two HTTP farms, one per pool (``[lb.ovh_iplb].farm_ids``), and one
HTTP frontend (``frontend_id``) whose ``defaultFarmId`` names the live pool's farm.
IPLB changes are *staged*: the API returns the configuration, which serves traffic only
once a refresh task has applied it, and ``GET /pendingChanges`` counts what is staged
but not applied. Hence:

- ``live_pool()`` reads the frontend's ``defaultFarmId`` and the pending changes. With
  changes pending in the frontend's zone the staged farm may not be the one serving
  traffic, so it refuses to guess (deploying to a wrongly "idle" pool would hit users).
- ``switch(pool)``: (1) waits, within ``timeout_s``, until no ``refreshIplb`` task is
  todo/doing/blocked; (2) refuses if changes are pending in the zone it will refresh,
  since its refresh would apply them too; (3) ``PUT`` the frontend with only
  ``defaultFarmId`` (the schema's model requires no field; the guide sends exactly
  this; a whole object could overwrite a concurrent edit); (4) ``POST /refresh`` for the
  frontend's zone (no body, i.e. every zone, for a frontend in zone ``all``); (5) polls
  the task until ``done``, failing on ``error``/``cancelled`` and on anything else past
  the deadline. When a step after the ``PUT`` fails, bgkit puts the previous
  ``defaultFarmId`` back **only when no refresh task can still apply the staged one**
  (the task failed, or the refresh was refused and none runs); while a task may still
  apply it, undoing would race that task, so bgkit leaves it and the error names the
  task, the staged farm and what to do, and is an :class:`~bgkit.errors.ApplyPending`
  (the switch follows the task for a grace period). Every error after the ``PUT`` says
  what state the IPLB is left in.
- ``state(wait_s)`` follows the refresh tasks in flight for up to ``wait_s``, then says
  what it can: the live pool only when nothing is pending or applying, else the farm
  the frontend is staged to, how many changes are pending, and which tasks run.
  ``discard_staged(keep)`` sets the frontend's ``defaultFarmId`` back to ``keep``'s farm
  (no refresh) when no task runs, and checks that nothing is pending afterwards.
- ``backend_health()`` lists both farms' servers (ids, then one GET each) and maps
  each server's ``serverState`` with :func:`bgkit.commands.ovh_iplb.server_health`.
- ``open_sessions()`` is None: the API reports no per-server sessions, so a deploy waits
  ``[deploy].min_idle_s`` after a switch and counts connections on the hosts themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bgkit.commands import ovh_iplb as cmd
from bgkit.config import OvhIplbSettings
from bgkit.errors import ApplyPending, LoadBalancerError, SplitUnsupported
from bgkit.lb.base import BackendServer, LbState, PoolName, SwitchResult
from bgkit.lb.ovh_api import OvhApi, make_client, register_endpoint

__all__ = ["OvhIplbProvider"]

T = TypeVar("T")


class OvhIplbProvider:
    """The :class:`bgkit.lb.base.LoadBalancer` primitives over one IPLB service."""

    name: str = "ovh-iplb"

    def __init__(self, settings: OvhIplbSettings, *, api_client: OvhApi,
                 poll_interval_s: float = 0.1, max_poll_interval_s: float = 2.0) -> None:
        if settings.farm_ids.blue == settings.farm_ids.green:
            raise LoadBalancerError("[lb.ovh_iplb].farm_ids: blue and green must be two "
                                    f"different farms, both are {settings.farm_ids.blue}")
        self.settings = settings
        self.api = api_client
        self.service = settings.service_name
        self.farms: dict[PoolName, int] = {"blue": settings.farm_ids.blue,
                                           "green": settings.farm_ids.green}
        self.poll_interval_s = poll_interval_s
        self.max_poll_interval_s = max_poll_interval_s

    @classmethod
    def from_settings(cls, settings: OvhIplbSettings, *, config_file: Path | None = None,
                      request_timeout_s: float = 30.0) -> OvhIplbProvider:
        """A provider whose client takes credentials from ``OVH_*`` / ovh.conf.

        Raises:
            LoadBalancerError: a credential is missing, or the endpoint is unusable.
        """
        client = make_client(settings.endpoint, config_file=config_file,
                             timeout_s=request_timeout_s, service_name=settings.service_name)
        return cls(settings, api_client=OvhApi(
            client, endpoint=register_endpoint(settings.endpoint),
            service_name=settings.service_name))

    # --- the LoadBalancer primitives ------------------------------------------------

    def live_pool(self) -> PoolName:
        """The pool whose farm the frontend's applied ``defaultFarmId`` names.

        Raises:
            LoadBalancerError: OVHcloud unreachable or refusing, a farm that is neither
                pool's, or changes staged but not applied in the frontend's zone.
        """
        frontend = self._frontend()
        pool = self._pool_of(frontend.default_farm_id)
        pending = self._pending(frontend.zone)
        if pending:
            raise LoadBalancerError(
                f"IPLB {self.service} has changes staged but not applied ({_describe(pending)})"
                f", so frontend {frontend.frontend_id}'s defaultFarmId "
                f"{frontend.default_farm_id} ({pool}) may not be what serves traffic and "
                "bgkit will not guess the live pool; review them, then apply them "
                f"(POST /ipLoadbalancing/{self.service}/refresh) or undo them, and retry")
        return pool

    def switch(self, pool: PoolName, *, timeout_s: float) -> SwitchResult:
        """Make ``pool``'s farm the frontend's default; return once the refresh is done.

        Raises:
            LoadBalancerError: another refresh still runs at the deadline, changes are
                pending, OVHcloud refused or failed a step, or the refresh task did not
                finish in time; past the PUT, the message says what state the IPLB is in.
        """
        started = time.monotonic()
        deadline = started + timeout_s
        self._wait_no_refresh(deadline, timeout_s)
        frontend = self._frontend()
        previous = self._pool_of(frontend.default_farm_id)
        pending = self._pending(frontend.zone)
        if pending:
            raise LoadBalancerError(
                f"bgkit will not switch IPLB {self.service} to {pool}: changes are staged but "
                f"not applied ({_describe(pending)}) and the refresh that applies the switch "
                f"would apply them too; nothing was changed; review them, apply (POST "
                f"/ipLoadbalancing/{self.service}/refresh) or undo them, and retry")
        if previous == pool:
            return SwitchResult(previous=previous, live=pool,
                                applied_s=time.monotonic() - started)
        self._read(cmd.get_farm(self.service, self.farms[pool]), cmd.parse_farm,
                   config_key=f"farm_ids.{pool}")
        switch = _Switch(self, frontend, previous, pool)
        task = switch.stage_and_refresh()
        switch.await_done(task, deadline, timeout_s)
        return SwitchResult(previous=previous, live=pool, applied_s=time.monotonic() - started)

    def state(self, *, wait_s: float = 0.0) -> LbState:
        """Follow the refresh tasks in flight for up to ``wait_s``; then what is known.

        Raises:
            LoadBalancerError: OVHcloud unreachable or refusing, or a farm that is neither
                pool's.
        """
        deadline = time.monotonic() + wait_s
        attempt = 0
        while (running := self._in_flight()) and time.monotonic() < deadline:
            self.pause(deadline, attempt)
            attempt += 1
        frontend = self._frontend()
        staged = self._pool_of(frontend.default_farm_id)
        pending = self._pending(frontend.zone)
        count = sum(change.number for change in pending)
        where = f"frontend {frontend.frontend_id} of IPLB {self.service}"
        if running:
            return LbState(live=None, staged=staged, pending=count,
                           applying=f"refresh of IPLB {self.service} in progress "
                           f"({_describe_tasks(running)}){_blocked_hint(running)}",
                           detail=f"{where} is staged to farm {frontend.default_farm_id}")
        if count:
            return LbState(live=None, staged=staged, pending=count,
                           detail=f"changes staged but not applied ({_describe(pending)}); "
                           f"{where} is staged to farm {frontend.default_farm_id}")
        return LbState(live=staged)

    def split(self, pool: PoolName, percent: int, *, timeout_s: float) -> None:
        """A canary cannot be done on IP Load Balancing without changing the live farm.

        A frontend sends its traffic to one farm (``defaultFarmId``); routes choose a farm
        by what a request carries (host, uri, header, cookie, source... per
        ``ipLoadbalancing.RouteRule``), never by a random share; weights
        (``BackendHTTPServer.weight``) divide traffic between the servers of one farm.
        So a share of traffic reaches the idle pool only if its servers join the live farm.

        Raises:
            SplitUnsupported: always for ``percent`` > 0 (0 is nothing to do).
        """
        if percent:
            raise SplitUnsupported(self.split_refusal())

    def split_refusal(self) -> str:
        """Always: see :meth:`split`."""
        return ("ovh-iplb cannot send a share of the traffic to the idle pool: a frontend "
                "serves one farm, routes match request fields (host, uri, header, cookie, "
                "source), never a random share, and server weights only divide a farm's own "
                "traffic; a canary would need the idle servers added to the live farm, which "
                "bgkit never changes. Switch without a canary (--canary 0) or use HAProxy")

    def discard_staged(self, keep: PoolName) -> LbState:
        """Set the frontend back to ``keep``'s farm without refreshing; the state after.

        Raises:
            LoadBalancerError: a refresh task runs (it may apply the staged change), the
                PUT failed, or changes are still pending afterwards (others staged some).
        """
        running = self._in_flight()
        if running:
            raise LoadBalancerError(
                f"bgkit will not undo the change staged on IPLB {self.service}: a refresh is "
                f"in progress ({_describe_tasks(running)}) and may apply it; wait for it")
        frontend = self._frontend()
        if frontend.default_farm_id != self.farms[keep]:
            self.api.call(cmd.set_default_farm(self.service, frontend.frontend_id,
                                               self.farms[keep]), config_key="frontend_id")
        after = self.state()
        if not after.settled:
            raise LoadBalancerError(
                f"bgkit set frontend {frontend.frontend_id} of IPLB {self.service} back to farm "
                f"{self.farms[keep]} ({keep}), but OVHcloud still lists {after.pending} "
                "change(s) not applied: someone else staged changes too; review them, apply "
                f"(POST /ipLoadbalancing/{self.service}/refresh) or undo them, and retry")
        return after

    def backend_health(self) -> list[BackendServer]:
        """Every server of the blue and green farms, in OVHcloud's order.

        Raises:
            LoadBalancerError: OVHcloud unreachable or refusing, or a farm missing.
        """
        frontend = self._frontend()
        servers: list[BackendServer] = []
        for pool, farm_id in self.farms.items():
            farm = self._read(cmd.get_farm(self.service, farm_id), cmd.parse_farm,
                              config_key=f"farm_ids.{pool}")
            ids = self._read(cmd.list_servers(self.service, farm_id), cmd.parse_ids,
                             config_key=f"farm_ids.{pool}")
            for server_id in ids:
                server = self._read(cmd.get_server(self.service, farm_id, server_id),
                                    cmd.parse_server)
                status, healthy, detail = cmd.server_health(server)
                servers.append(BackendServer(
                    pool=pool, name=server.display_name or f"server-{server.server_id}",
                    address=server.address,
                    port=server.port or farm.port or _single_port(frontend.port),
                    status=status, healthy=healthy, detail=detail))
        return servers

    def open_sessions(self, pool: PoolName) -> None:
        """OVHcloud's API reports no per-server sessions of an IP Load Balancing farm: a
        deploy relies on ``[deploy].min_idle_s`` and the hosts' own count."""
        return None

    # --- reading ------------------------------------------------------------------------

    def _read(self, request: cmd.ApiRequest, parse: Callable[[object], T], *,
              config_key: str | None = None) -> T:
        answer = self.api.call(request, config_key=config_key)
        try:
            return parse(answer)
        except ValueError as error:
            raise LoadBalancerError(
                f"unexpected answer from OVHcloud to {request.method} {request.path}: {error}"
                "; is [lb.ovh_iplb].endpoint the OVHcloud API?") from error

    def _frontend(self) -> cmd.Frontend:
        return self._read(cmd.get_frontend(self.service, self.settings.frontend_id),
                          cmd.parse_frontend, config_key="frontend_id")

    def _pool_of(self, farm_id: int | None) -> PoolName:
        for pool, farm in self.farms.items():
            if farm == farm_id:
                return pool
        raise LoadBalancerError(
            f"frontend {self.settings.frontend_id} of IPLB {self.service} sends traffic to "
            f"farm {farm_id}, which is neither blue ({self.farms['blue']}) nor green "
            f"({self.farms['green']}) in [lb.ovh_iplb].farm_ids; fix the frontend's "
            "defaultFarmId or the config before switching")

    def _pending(self, zone: str) -> list[cmd.PendingChange]:
        changes = self._read(cmd.pending_changes(self.service), cmd.parse_pending_changes)
        return [c for c in changes if zone == cmd.ALL_ZONES or c.zone in (zone, cmd.ALL_ZONES)]

    def _in_flight(self) -> list[cmd.Task]:
        """Every refreshIplb task that is todo, doing or blocked."""
        ids = [task_id for status in cmd.IN_FLIGHT_TASK_STATUSES
               for task_id in self._read(cmd.list_refresh_tasks(self.service, status),
                                         cmd.parse_ids)]
        return [self.task(task_id) for task_id in dict.fromkeys(ids)]

    def task(self, task_id: int) -> cmd.Task:
        return self._read(cmd.get_task(self.service, task_id), cmd.parse_task)

    def _wait_no_refresh(self, deadline: float, timeout_s: float) -> None:
        attempt = 0
        while running := self._in_flight():
            if time.monotonic() >= deadline:
                raise LoadBalancerError(
                    f"another refresh of IPLB {self.service} is still in progress after "
                    f"{timeout_s:g} s ({_describe_tasks(running)}); nothing was changed; wait "
                    f"for it (GET /ipLoadbalancing/{self.service}/task/ID) and retry"
                    + _blocked_hint(running))
            self.pause(deadline, attempt)
            attempt += 1

    def pause(self, deadline: float, attempt: int) -> None:
        """Sleep before the next poll: growing intervals, never past ``deadline``."""
        interval = min(self.max_poll_interval_s, self.poll_interval_s * 1.5 ** attempt)
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))


class _Switch:
    """One switch after its checks: stage, refresh, wait, and undo only when safe."""

    def __init__(self, provider: OvhIplbProvider, frontend: cmd.Frontend,
                 previous: PoolName, pool: PoolName) -> None:
        self.lb = provider
        self.service = provider.service
        self.frontend = frontend
        self.previous, self.pool = previous, pool
        self.target_farm = provider.farms[pool]
        self.previous_farm = provider.farms[previous]
        self.where = f"frontend {frontend.frontend_id} of IPLB {self.service}"

    def stage_and_refresh(self) -> cmd.Task:
        try:
            self.lb.api.call(cmd.set_default_farm(self.service, self.frontend.frontend_id,
                                                  self.target_farm), config_key="frontend_id")
        except LoadBalancerError as error:
            raise self._failed_put(error) from error
        zone = cmd.refresh_zone(self.frontend.zone)
        try:
            return self.lb._read(cmd.refresh(self.service, zone), cmd.parse_task)
        except LoadBalancerError as error:
            raise self._failed_refresh(error) from error

    def await_done(self, task: cmd.Task, deadline: float, timeout_s: float) -> None:
        attempt = 0
        while task.status != "done":
            if task.status in cmd.FAILED_TASK_STATUSES:
                raise LoadBalancerError(
                    f"switching IPLB {self.service} to {self.pool} failed: refresh task "
                    f"{task.task_id} ended in '{task.status}'; {self._undo()}; give OVHcloud "
                    "support the task id if it happens again")
            if time.monotonic() >= deadline:
                raise ApplyPending(self._still_running(task, timeout_s))
            self.lb.pause(deadline, attempt)
            attempt += 1
            try:
                task = self.lb.task(task.task_id)
            except LoadBalancerError as error:
                raise ApplyPending(
                    f"switching IPLB {self.service} to {self.pool}: cannot follow refresh "
                    f"task {task.task_id} ({error}); {self._left_staged([task])}") from error
        frontend = self.lb._frontend()
        if frontend.default_farm_id != self.target_farm:
            raise LoadBalancerError(
                f"refresh task {task.task_id} of IPLB {self.service} is done but {self.where} "
                f"now names farm {frontend.default_farm_id}: someone changed it during the "
                "switch; check `bgkit status` before going on")

    # --- what to say, and undo when it is safe ---------------------------------------

    def _failed_put(self, error: LoadBalancerError) -> LoadBalancerError:
        try:
            staged = self.lb._frontend().default_farm_id
        except LoadBalancerError as read_error:
            return LoadBalancerError(
                f"switching IPLB {self.service} to {self.pool} failed: {error}; bgkit cannot "
                f"read {self.where} back ({read_error}), so it may be staged to farm "
                f"{self.target_farm} ({self.pool}) without being applied: if GET /ipLoad"
                f"balancing/{self.service}/http/frontend/{self.frontend.frontend_id} says so, "
                f"set defaultFarmId back to {self.previous_farm} before any refresh; "
                f"{self.previous} still serves traffic")
        if staged == self.target_farm:
            return LoadBalancerError(f"switching IPLB {self.service} to {self.pool} failed: "
                                     f"{error}; the change was staged anyway; {self._undo()}")
        return LoadBalancerError(f"switching IPLB {self.service} to {self.pool} failed: "
                                 f"{error}; nothing was changed, {self.previous} still serves "
                                 "traffic")

    def _failed_refresh(self, error: LoadBalancerError) -> LoadBalancerError:
        head = (f"switching IPLB {self.service} to {self.pool} failed: the refresh was not "
                f"started ({error})")
        try:
            running = self.lb._in_flight()
        except LoadBalancerError as list_error:
            return ApplyPending(
                f"{head}; bgkit cannot tell whether a refresh task started ({list_error}); "
                f"{self._left_staged([])}")
        if running:
            return ApplyPending(f"{head}, yet refresh task(s) now run "
                                f"({_describe_tasks(running)}); {self._left_staged(running)}")
        return LoadBalancerError(f"{head}; no refresh task runs, so nothing applied it; "
                                 f"{self._undo()}")

    def _still_running(self, task: cmd.Task, timeout_s: float) -> str:
        return (f"switching IPLB {self.service} to {self.pool} did not finish in "
                f"{timeout_s:g} s: refresh task {task.task_id} is still '{task.status}' "
                f"({task.progress}%); {self._left_staged([task])}" + _blocked_hint([task]))

    def _left_staged(self, tasks: list[cmd.Task]) -> str:
        names = ", ".join(str(t.task_id) for t in tasks) or "ID"
        return (f"{self.where} is staged to farm {self.target_farm} ({self.pool}) and a "
                f"refresh may still apply it, so bgkit left it as is (undoing it now would "
                f"race the refresh): follow GET /ipLoadbalancing/{self.service}/task/{names}; "
                f"'done' means {self.pool} is live, 'error' or 'cancelled' means "
                f"{self.previous} still is and defaultFarmId must be set back to "
                f"{self.previous_farm}; `bgkit status` tells once it settles")

    def _undo(self) -> str:
        """Put the previous defaultFarmId back; say where that leaves the IPLB."""
        try:
            self.lb.api.call(cmd.set_default_farm(self.service, self.frontend.frontend_id,
                                                  self.previous_farm), config_key="frontend_id")
        except LoadBalancerError as error:
            return (f"setting {self.where} back to farm {self.previous_farm} "
                    f"({self.previous}) failed too ({error}): it is staged to farm "
                    f"{self.target_farm} ({self.pool}) but not applied, and the next refresh "
                    f"would apply it; set defaultFarmId back to {self.previous_farm} (control "
                    f"panel or PUT) before anything else; {self.previous} still serves traffic")
        said = (f"bgkit set {self.where} back to farm {self.previous_farm} ({self.previous}), "
                "the pool that served traffic before")
        try:
            pending = self.lb._pending(self.frontend.zone)
        except LoadBalancerError as error:
            return f"{said}; whether changes are still pending is unknown ({error})"
        if pending:
            return (f"{said}; OVHcloud still lists changes not applied "
                    f"({_describe(pending)}): the failed refresh may have applied part of the "
                    f"switch, so apply them (POST /ipLoadbalancing/{self.service}/refresh) to "
                    f"bring every zone back to {self.previous}")
        return f"{said}; nothing is pending, {self.previous} serves traffic"


def _describe(pending: list[cmd.PendingChange]) -> str:
    return ", ".join(f"{change.number} in zone {change.zone}" for change in pending)


def _describe_tasks(tasks: list[cmd.Task]) -> str:
    return ", ".join(f"task {t.task_id} {t.status} {t.progress}%" for t in tasks)


def _blocked_hint(tasks: list[cmd.Task]) -> str:
    blocked = [str(t.task_id) for t in tasks if t.status == "blocked"]
    if not blocked:
        return ""
    return (f"; task {', '.join(blocked)} is blocked: only OVHcloud can unblock it, so "
            "contact OVHcloud support with its id")


def _single_port(port: str) -> int:
    """The frontend's port when it is a single number ("80"), else 0."""
    return int(port) if port.isdigit() else 0
