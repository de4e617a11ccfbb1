"""OVHcloud IP Load Balancing: the requests bgkit sends, as data, and pure parsers.

Each builder returns one :class:`ApiRequest` (method, path under ``/1.0``, query,
JSON body) for ``bgkit.lb.ovh_iplb``; nothing here talks to the network. The service
name goes into paths unquoted, so it is refused with ``ValueError`` unless it is a
plain name (letters, digits, ``.``, ``_``, ``-``); ids must be whole numbers.

``access_rules`` is the exact list of (method, path) rules a consumer key needs for
these requests, and nothing more. The parsers take the decoded JSON OVHcloud answered
and return typed values, raising ``ValueError`` naming the field that is not what the
API schema promises. ``server_health`` turns a server's ``serverState`` (one entry per
load balancer instance, HAProxy words: ``UP``, ``DOWN``, ``L7OK``...) into bgkit's view.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

__all__ = [
    "ALL_ZONES",
    "FAILED_TASK_STATUSES",
    "IN_FLIGHT_TASK_STATUSES",
    "ApiRequest",
    "Farm",
    "Frontend",
    "PendingChange",
    "Server",
    "ServerCheck",
    "Task",
    "access_rules",
    "get_farm",
    "get_frontend",
    "get_server",
    "get_task",
    "list_refresh_tasks",
    "list_servers",
    "parse_farm",
    "parse_frontend",
    "parse_ids",
    "parse_pending_changes",
    "parse_server",
    "parse_task",
    "pending_changes",
    "refresh",
    "refresh_zone",
    "server_health",
    "set_default_farm",
]

Method = Literal["GET", "POST", "PUT"]
ALL_ZONES = "all"
IN_FLIGHT_TASK_STATUSES = ("todo", "doing", "blocked")
FAILED_TASK_STATUSES = ("error", "cancelled")
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One call of the OVHcloud API; ``subject`` names its object for error messages."""

    method: Method
    path: str  # under the endpoint's /1.0, e.g. /ipLoadbalancing/lb-1/task/3
    subject: str
    query: tuple[tuple[str, str], ...] = ()
    body: Mapping[str, Any] | None = None

    @property
    def target(self) -> str:
        """The path with its query string, as signed and sent."""
        return f"{self.path}?{urlencode(self.query)}" if self.query else self.path


def _service(service_name: str) -> str:
    if not isinstance(service_name, str) or not _SEGMENT.fullmatch(service_name):
        raise ValueError(f"IPLB service name {service_name!r} must be letters, digits, '.', "
                         "'_' or '-' (e.g. loadbalancer-1a2b3c4d)")
    return f"/ipLoadbalancing/{service_name}"


def _id(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    return value


def get_frontend(service_name: str, frontend_id: int) -> ApiRequest:
    frontend = _id(frontend_id, "frontend id")
    return ApiRequest("GET", f"{_service(service_name)}/http/frontend/{frontend}",
                      f"HTTP frontend {frontend} of IPLB {service_name}")


def set_default_farm(service_name: str, frontend_id: int, farm_id: int) -> ApiRequest:
    """Stage the frontend's ``defaultFarmId``: only that field, as OVHcloud's guide does."""
    frontend = _id(frontend_id, "frontend id")
    return ApiRequest("PUT", f"{_service(service_name)}/http/frontend/{frontend}",
                      f"HTTP frontend {frontend} of IPLB {service_name}",
                      body={"defaultFarmId": _id(farm_id, "farm id")})


def get_farm(service_name: str, farm_id: int) -> ApiRequest:
    farm = _id(farm_id, "farm id")
    return ApiRequest("GET", f"{_service(service_name)}/http/farm/{farm}",
                      f"HTTP farm {farm} of IPLB {service_name}")


def list_servers(service_name: str, farm_id: int) -> ApiRequest:
    farm = _id(farm_id, "farm id")
    return ApiRequest("GET", f"{_service(service_name)}/http/farm/{farm}/server",
                      f"the servers of HTTP farm {farm} of IPLB {service_name}")


def get_server(service_name: str, farm_id: int, server_id: int) -> ApiRequest:
    farm, server = _id(farm_id, "farm id"), _id(server_id, "server id")
    return ApiRequest("GET", f"{_service(service_name)}/http/farm/{farm}/server/{server}",
                      f"server {server} of HTTP farm {farm} of IPLB {service_name}")


def pending_changes(service_name: str) -> ApiRequest:
    return ApiRequest("GET", f"{_service(service_name)}/pendingChanges",
                      f"the pending changes of IPLB {service_name}")


def list_refresh_tasks(service_name: str, status: str) -> ApiRequest:
    """Ids of the service's ``refreshIplb`` tasks in ``status`` (todo, doing...)."""
    return ApiRequest("GET", f"{_service(service_name)}/task",
                      f"the refresh tasks of IPLB {service_name}",
                      query=(("action", "refreshIplb"), ("status", status)))


def get_task(service_name: str, task_id: int) -> ApiRequest:
    task = _id(task_id, "task id")
    return ApiRequest("GET", f"{_service(service_name)}/task/{task}",
                      f"task {task} of IPLB {service_name}")


def refresh_zone(frontend_zone: str) -> str | None:
    """The zone to refresh for a frontend: its own, or None (every zone) for ``all``."""
    return None if frontend_zone == ALL_ZONES else frontend_zone


def refresh(service_name: str, zone: str | None) -> ApiRequest:
    """Apply the staged configuration in ``zone``; without a zone, in every zone."""
    return ApiRequest("POST", f"{_service(service_name)}/refresh",
                      f"the configuration of IPLB {service_name}",
                      body=None if zone is None else {"zone": zone})


def access_rules(service_name: str, *, frontend_id: int | None = None,
                 farm_ids: Sequence[int] = ()) -> list[dict[str, str]]:
    """The consumer-key rules for exactly the calls above, on one service.

    Ids that are given are written out; without them the rule holds ``*`` there.
    ``GET /auth/time`` needs no rule: it is not signed.
    """
    base = _service(service_name)
    frontend = "*" if frontend_id is None else str(_id(frontend_id, "frontend id"))
    farms = [str(_id(farm, "farm id")) for farm in farm_ids] or ["*"]
    rules = [("GET", f"{base}/http/frontend/{frontend}"),
             ("PUT", f"{base}/http/frontend/{frontend}")]
    for farm in farms:
        rules += [("GET", f"{base}/http/farm/{farm}"),
                  ("GET", f"{base}/http/farm/{farm}/server"),
                  ("GET", f"{base}/http/farm/{farm}/server/*")]
    rules += [("GET", f"{base}/pendingChanges"), ("GET", f"{base}/task"),
              ("GET", f"{base}/task/*"), ("POST", f"{base}/refresh")]
    return [{"method": method, "path": path} for method, path in rules]


# --- parsers --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Frontend:
    frontend_id: int
    default_farm_id: int | None
    zone: str
    port: str  # a string in the API: "80", "80,443", "8000-8010"


@dataclass(frozen=True, slots=True)
class Farm:
    farm_id: int
    zone: str
    port: int | None  # None: the frontend's port


@dataclass(frozen=True, slots=True)
class ServerCheck:
    """One load balancer instance's view of one server (an item of ``serverState``)."""

    instance_id: int | None
    status: str  # UP, DOWN, "UP 1/2", MAINT, "no check"...; "" if not reported
    check_status: str  # L7OK, L4CON...
    check_code: str
    last_check: str


@dataclass(frozen=True, slots=True)
class Server:
    server_id: int
    farm_id: int
    address: str
    port: int | None  # None: the farm's port
    display_name: str | None
    status: str  # active / inactive: whether the server is enabled in its farm
    probe: bool
    checks: tuple[ServerCheck, ...]


@dataclass(frozen=True, slots=True)
class Task:
    task_id: int
    action: str
    status: str  # todo, doing, done, error, blocked, cancelled
    progress: int
    zones: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PendingChange:
    zone: str
    number: int


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected {what} as a JSON object, got {type(value).__name__}")
    return value


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], *,
           nullable: bool = False) -> Any:
    value = data.get(name)
    if value is None and nullable:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"field {name!r} is {value!r}, expected "
                         f"{getattr(kind, '__name__', 'another type')}")
    return value


def parse_ids(value: object) -> list[int]:
    """A list answer (``long[]``): the ids in OVHcloud's order."""
    if not isinstance(value, list) or not all(
            isinstance(item, int) and not isinstance(item, bool) for item in value):
        raise ValueError(f"expected a list of ids, got {str(value)[:80]}")
    return list(value)


def parse_frontend(value: object) -> Frontend:
    data = _object(value, "a frontend")
    return Frontend(frontend_id=_field(data, "frontendId", int),
                    default_farm_id=_field(data, "defaultFarmId", int, nullable=True),
                    zone=_field(data, "zone", str), port=_field(data, "port", str))


def parse_farm(value: object) -> Farm:
    data = _object(value, "a farm")
    return Farm(farm_id=_field(data, "farmId", int), zone=_field(data, "zone", str),
                port=_field(data, "port", int, nullable=True))


def parse_server(value: object) -> Server:
    data = _object(value, "a server")
    states = _field(data, "serverState", list, nullable=True) or []
    checks = tuple(_server_check(_object(item, "a serverState item")) for item in states)
    return Server(server_id=_field(data, "serverId", int),
                  farm_id=_field(data, "backendId", int),
                  address=_field(data, "address", str),
                  port=_field(data, "port", int, nullable=True),
                  display_name=_field(data, "displayName", str, nullable=True),
                  status=_field(data, "status", str), probe=bool(data.get("probe")),
                  checks=checks)


def _server_check(data: Mapping[str, Any]) -> ServerCheck:
    def text(name: str) -> str:
        value = _field(data, name, (str, int), nullable=True)
        return "" if value is None else str(value)

    return ServerCheck(instance_id=_field(data, "instanceId", int, nullable=True),
                       status=text("status"), check_status=text("checkStatus"),
                       check_code=text("checkCode"), last_check=text("lastCheckContent"))


def parse_task(value: object) -> Task:
    data = _object(value, "a task")
    zones = _field(data, "zones", list, nullable=True) or []
    return Task(task_id=_field(data, "id", int), action=_field(data, "action", str),
                status=_field(data, "status", str),
                progress=_field(data, "progress", int, nullable=True) or 0,
                zones=tuple(str(zone) for zone in zones))


def parse_pending_changes(value: object) -> list[PendingChange]:
    """``GET /pendingChanges``: one entry per zone; entries with 0 changes are dropped."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of pending changes, got {str(value)[:80]}")
    changes = [PendingChange(zone=_field(item, "zone", str), number=_field(item, "number", int))
               for item in (_object(entry, "a pending change") for entry in value)]
    return [change for change in changes if change.number > 0]


def server_health(server: Server) -> tuple[str, bool, str]:
    """``(status, healthy, detail)`` of a server from its ``status`` and ``serverState``.

    Healthy only when the server is ``active`` in its farm and every instance that
    reports it says UP after a real check (HAProxy's ``INI`` means not checked yet).
    An active server with no ``serverState`` is ``unknown``: no probe, or a
    configuration not applied yet.
    """
    if server.status != "active":
        return server.status, False, f"{server.status} in its farm (not load balanced)"
    if not server.checks:
        why = "probe off" if not server.probe else "no instance reported a check yet"
        return "unknown", False, f"no serverState ({why})"
    statuses = sorted({check.status or "unknown" for check in server.checks})
    healthy = all(check.status.startswith("UP") and not check.check_status.startswith("INI")
                  for check in server.checks)
    details = [_check_detail(check, many=len(server.checks) > 1)
               for check in server.checks if healthy or not check.status.startswith("UP")]
    return "/".join(statuses), healthy, "; ".join(d for d in details if d)


def _check_detail(check: ServerCheck, *, many: bool) -> str:
    words = " ".join(w for w in (check.check_status, check.check_code) if w)
    if check.last_check and check.last_check not in words:
        words = f"{words}: {check.last_check}" if words else check.last_check
    if many and check.instance_id is not None:
        return f"instance {check.instance_id}: {words or check.status}"
    return words
