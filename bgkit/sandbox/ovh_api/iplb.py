"""One IP Load Balancing service as the emulator keeps it: staged, applied, tasks.

Objects are kept as the JSON of the schema's models (every field, ``null`` where
nullable): ``ipLoadbalancing.frontendHttp.FrontendHttp``, ``backendHttp.BackendHttp``
and ``backendHttpCustomerServer.BackendHTTPServer`` (whose farm id is ``backendId``).
Lists answer ids. A ``PUT`` merges its fields into the *staged* configuration.
``applied[zone]`` is what each zone serves; ``pendingChanges`` counts, per zone, the
objects whose staged form differs from the applied one (how OVHcloud counts is not
documented; this is the inference the research notes make). ``refresh`` creates a
``refreshIplb`` task that goes todo -> doing -> its outcome over ``refresh_delay_s``;
ending ``done`` it copies the configuration staged *when it was created* into its
zone(s), and, for the data-plane zone, the data plane applies the bound frontend's
``defaultFarmId`` (a data-plane failure ends the task in ``error``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bgkit.sandbox.ovh_api.auth import api_error
from bgkit.sandbox.ovh_api.dataplane import DataPlane, DataPlaneError
from bgkit.sandbox.ovh_api.faults import TaskOutcome

__all__ = ["ALL_ZONES", "IplbService", "RefreshTask"]

ALL_ZONES = "all"
Kind = Literal["frontend", "farm", "server"]
Objects = dict[Kind, dict[int, dict[str, Any]]]
_MISSING_NAME: dict[Kind, str] = {"frontend": "frontendId", "farm": "farmId",
                                  "server": "serverId"}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class RefreshTask:
    """A ``refreshIplb`` task and the configuration it will apply."""

    task_id: int
    zones: tuple[str, ...]
    outcome: TaskOutcome
    delay_s: float
    snapshot: dict[str, Objects]
    started: float = field(default_factory=time.monotonic)
    created: str = field(default_factory=_now_iso)
    status: str = "todo"
    progress: int = 0
    done_date: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``ipLoadbalancing.Task.Task`` model."""
        return {"action": "refreshIplb", "creationDate": self.created,
                "doneDate": self.done_date, "id": self.task_id, "progress": self.progress,
                "status": self.status, "zones": list(self.zones)}


class IplbService:
    """One service; the emulator holds its lock around every call."""

    def __init__(self, *, service_name: str, zones: list[str],
                 frontends: list[dict[str, Any]], farms: list[dict[str, Any]],
                 servers: list[dict[str, Any]], data_plane: DataPlane | None = None,
                 data_plane_zone: str | None = None, data_plane_frontend: int | None = None,
                 first_task_id: int = 4_200_001) -> None:
        self.name = service_name
        self.zones = list(zones)
        self.staged: Objects = {
            "frontend": {item["frontendId"]: dict(item) for item in frontends},
            "farm": {item["farmId"]: dict(item) for item in farms},
            "server": {item["serverId"]: dict(item) for item in servers}}
        self.applied: dict[str, Objects] = {zone: self._visible(zone) for zone in self.zones}
        self.tasks: dict[int, RefreshTask] = {}
        self.next_task_id = first_task_id
        self.data_plane = data_plane
        self.data_plane_zone = data_plane_zone or (self.zones[0] if self.zones else None)
        self.data_plane_frontend = data_plane_frontend
        self.last_data_plane_error: str | None = None

    # --- reading ------------------------------------------------------------------------

    def ids(self, kind: Kind, filters: Mapping[str, str], *, farm_id: int | None = None) -> \
            list[int]:
        if farm_id is not None:
            self.get("farm", farm_id)
        return sorted(key for key, item in self.staged[kind].items()
                      if (farm_id is None or item["backendId"] == farm_id)
                      and _matches(item, filters))

    def get(self, kind: Kind, object_id: int, *, farm_id: int | None = None) -> dict[str, Any]:
        """A copy of one staged object (a server with its ``serverState``); 404 if none."""
        item = self.staged[kind].get(object_id)
        if item is None or (farm_id is not None and item.get("backendId") != farm_id):
            raise api_error(404, f"The requested object ({_MISSING_NAME[kind]} = {object_id})"
                                 " does not exist")
        answer = copy.deepcopy(item)
        if kind == "server":
            answer["serverState"] = self._server_state(item)
        return answer

    def pending(self) -> list[dict[str, Any]]:
        """``ipLoadbalancing.PendingChanges[]``: zones with changes not applied."""
        changes = []
        for zone in self.zones:
            staged, applied = self._visible(zone), self.applied[zone]
            number = sum(1 for kind in staged for key in staged[kind].keys() | applied[kind].keys()
                         if staged[kind].get(key) != applied[kind].get(key))
            if number:
                changes.append({"number": number, "zone": zone})
        return changes

    def task_ids(self, filters: Mapping[str, str]) -> list[int]:
        return sorted(task_id for task_id, task in self.tasks.items()
                      if _matches(task.to_json(), filters))

    def task(self, task_id: int) -> dict[str, Any]:
        task = self.tasks.get(task_id)
        if task is None:
            raise api_error(404, f"The requested object (id = {task_id}) does not exist")
        return task.to_json()

    # --- changing -----------------------------------------------------------------------

    def put_frontend(self, frontend_id: int, body: Mapping[str, Any]) -> None:
        """Merge ``body`` (already checked against the model) into the staged frontend."""
        frontend = self.staged["frontend"].get(frontend_id)
        if frontend is None:
            raise api_error(404, f"The requested object (frontendId = {frontend_id}) does "
                                 "not exist")
        farm_id = body.get("defaultFarmId", frontend["defaultFarmId"])
        if farm_id is not None and farm_id not in self.staged["farm"]:
            raise api_error(400, f"Farm {farm_id} does not exist on this service")
        frontend.update(body)

    def refresh(self, zone: str | None, *, outcome: TaskOutcome, delay_s: float) -> \
            dict[str, Any]:
        """Start applying the staged configuration of ``zone`` (every zone if None)."""
        if zone is not None and zone not in self.zones:
            raise api_error(400, f"Zone {zone} is not a zone of this Load Balancer "
                                 f"({', '.join(self.zones)})")
        zones = (zone,) if zone else tuple(self.zones)
        task = RefreshTask(task_id=self.next_task_id, zones=zones, outcome=outcome,
                           delay_s=delay_s, snapshot={z: self._visible(z) for z in zones})
        self.next_task_id += 1
        self.tasks[task.task_id] = task
        return task.to_json()

    def advance(self, now: float) -> None:
        """Move every unfinished task along its timeline up to ``now`` (monotonic)."""
        for task in self.tasks.values():
            if task.status not in ("todo", "doing"):
                continue
            elapsed = now - task.started
            if task.status == "todo" and elapsed >= task.delay_s / 3:
                task.status, task.progress = "doing", 50
            if elapsed < task.delay_s or task.outcome == "doing":
                continue
            self._finish(task)

    def _finish(self, task: RefreshTask) -> None:
        if task.outcome != "done":
            task.status = task.outcome
            return
        try:
            self._apply(task)
        except DataPlaneError as error:
            task.status = "error"
            self.last_data_plane_error = str(error)
            return
        task.status, task.progress, task.done_date = "done", 100, _now_iso()

    def _apply(self, task: RefreshTask) -> None:
        if self.data_plane is not None and self.data_plane_zone in task.zones:
            frontend = task.snapshot[self.data_plane_zone]["frontend"].get(
                self.data_plane_frontend or -1)
            if frontend is not None:
                self.data_plane.apply(frontend["defaultFarmId"])
        for zone in task.zones:
            self.applied[zone] = copy.deepcopy(task.snapshot[zone])

    # --- helpers ------------------------------------------------------------------------

    def _zone_of(self, kind: Kind, item: Mapping[str, Any]) -> str:
        if kind == "server":
            farm = self.staged["farm"].get(item["backendId"], {})
            return str(farm.get("zone", ALL_ZONES))
        return str(item["zone"])

    def _visible(self, zone: str) -> Objects:
        """Deep copies of the staged objects that zone ``zone`` serves."""
        return {kind: {key: copy.deepcopy(item) for key, item in items.items()
                       if self._zone_of(kind, item) in (zone, ALL_ZONES)}
                for kind, items in self.staged.items()}

    def _server_state(self, server: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The data plane's checks of a server, once its zone serves it as staged."""
        zone = self.data_plane_zone
        if self.data_plane is None or zone is None:
            return []
        applied = self.applied[zone]["server"].get(server["serverId"])
        if applied is None or applied != server or server["status"] != "active":
            return []
        farm = self.applied[zone]["farm"].get(server["backendId"], {})
        port = server.get("port") or farm.get("port")
        if not port:
            return []
        return self.data_plane.server_state(server["backendId"], server["address"], int(port))


def _matches(item: Mapping[str, Any], filters: Mapping[str, str]) -> bool:
    """Equality filters of list calls (``?status=todo``); unknown fields are ignored."""
    for key, wanted in filters.items():
        if key not in item:
            continue
        value = item[key]
        text = "null" if value is None else str(value).lower() if isinstance(value, bool) \
            else str(value)
        if text != wanted:
            return False
    return True
