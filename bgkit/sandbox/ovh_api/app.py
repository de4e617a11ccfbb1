"""The emulator's logic: one answer per request, apart from the HTTP server.

Three address spaces, kept apart:

- ``/1.0/...``: the OVHcloud API. ``GET /auth/time`` (unsigned, a bare integer),
  ``POST /auth/credential`` (unsigned, the consumer-key request), every IPLB call of
  the vendored OpenAPI schema and every Public Cloud Load Balancer call of the vendored
  ``cloud`` schema (signed, checked by ``auth``; routed and validated with its schema;
  operations the emulator lacks answer 501). Every answer carries an
  ``X-Ovh-Queryid``, and the journal records each call (never its headers).
- ``/auth/?credentialToken=...``: the page where a person validates a consumer key
  (OVHcloud's is on the same host, outside ``/1.0``); ``POST`` validates it.
- ``/_emulator/...``: the emulator's own controls, outside the OVH API:
  ``faults`` (GET, POST to change, DELETE to reset) and ``journal`` (GET, DELETE).
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

from bgkit.sandbox.ovh_api.auth import ApiError, Keyring, api_error, parse_rules
from bgkit.sandbox.ovh_api.cloud_schema import CloudOperation, load_cloud_schema
from bgkit.sandbox.ovh_api.cloudlb import CLOUD_HANDLERS, CloudRegion
from bgkit.sandbox.ovh_api.faults import Faults
from bgkit.sandbox.ovh_api.iplb import IplbService
from bgkit.sandbox.ovh_api.schema import Operation, load_schema

__all__ = ["API_ROOT", "Answer", "Emulator"]

API_ROOT = "/1.0"
BAD_URL = "Got an invalid (or empty) URL"
Handler = Callable[[IplbService, Mapping[str, int], Mapping[str, str], Any], Any]
_SB = "/ipLoadbalancing/{serviceName}"
_HANDLERS: dict[tuple[str, str], Handler] = {
    ("GET", f"{_SB}/http/frontend"): lambda s, p, q, b: s.ids("frontend", q),
    ("GET", f"{_SB}/http/frontend/{{frontendId}}"):
        lambda s, p, q, b: s.get("frontend", p["frontendId"]),
    ("PUT", f"{_SB}/http/frontend/{{frontendId}}"):
        lambda s, p, q, b: s.put_frontend(p["frontendId"], b or {}),
    ("GET", f"{_SB}/http/farm"): lambda s, p, q, b: s.ids("farm", q),
    ("GET", f"{_SB}/http/farm/{{farmId}}"): lambda s, p, q, b: s.get("farm", p["farmId"]),
    ("GET", f"{_SB}/http/farm/{{farmId}}/server"):
        lambda s, p, q, b: s.ids("server", q, farm_id=p["farmId"]),
    ("GET", f"{_SB}/http/farm/{{farmId}}/server/{{serverId}}"):
        lambda s, p, q, b: s.get("server", p["serverId"], farm_id=p["farmId"]),
    ("GET", f"{_SB}/pendingChanges"): lambda s, p, q, b: s.pending(),
    ("GET", f"{_SB}/task"): lambda s, p, q, b: s.task_ids(q),
    ("GET", f"{_SB}/task/{{id}}"): lambda s, p, q, b: s.task(p["id"]),
    ("GET", f"{_SB}/zone"): lambda s, p, q, b: list(s.zones),
}


@dataclass(frozen=True, slots=True)
class Answer:
    """What to send back: status, JSON (or HTML text), and extra headers."""

    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()
    html: bool = False


class Emulator:
    """The OVH API emulator's state; thread-safe (one lock around every change)."""

    def __init__(self, *, keyring: Keyring, services: Mapping[str, IplbService],
                 faults: Faults | None = None, clock_offset_s: float = 0.0,
                 log: Callable[[str], None] | None = None,
                 clouds: Mapping[tuple[str, str], CloudRegion] | None = None) -> None:
        self.keyring = keyring
        self.services = dict(services)
        self.clouds = dict(clouds or {})  # (project, region) -> its load balancing
        self.start_faults = faults or Faults()
        self.faults = self.start_faults.updated({})
        self.clock_offset_s = clock_offset_s
        self.journal: collections.deque[dict[str, Any]] = collections.deque(maxlen=5000)
        self.lock = threading.RLock()
        self.schema = load_schema()
        self.cloud_schema = load_cloud_schema()
        self.log = log or (lambda line: None)
        self._counter = itertools.count(1)
        self._stop = threading.Event()

    # --- time ---------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def advance(self) -> None:
        """Move every refresh task and provisioning along; the ticker calls this, and so
        does each call."""
        with self.lock:
            now = time.monotonic()
            for service in self.services.values():
                service.advance(now)
            for region in self.clouds.values():
                region.advance(now)

    def run_ticker(self, interval_s: float = 0.02) -> threading.Thread:
        """Advance tasks in the background, so a refresh applies even if nobody polls."""
        def tick() -> None:
            while not self._stop.wait(interval_s):
                self.advance()

        thread = threading.Thread(target=tick, name="ovh-emulator-ticker", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    # --- /1.0 -----------------------------------------------------------------------------

    def api(self, *, method: str, target: str, host: str, headers: Mapping[str, str],
            body: str) -> Answer:
        """Answer one call of the OVH API; ``headers`` has lower-case names."""
        split = urlsplit(target)
        path = split.path.removeprefix(API_ROOT)
        query = parse_qsl(split.query, keep_blank_values=True)
        query_id = f"EMU.ext-1.{int(time.time()):08x}.{os.getpid()}.{next(self._counter):06d}"
        try:
            value = self._answer(method, path, dict(query), f"http://{host}{target}",
                                 headers, body)
            answer = Answer(200, value)
        except ApiError as error:
            answer = Answer(error.status, error.body)
        except Exception as error:  # a bug here must still answer like an API
            self.log(f"internal error on {method} {path}: {error!r}")
            answer = Answer(500, api_error(500, "Internal server error").body)
        self._record(method, path, query, body, answer, query_id)
        return Answer(answer.status, answer.body, (("X-Ovh-Queryid", query_id),))

    def _answer(self, method: str, path: str, query: Mapping[str, str], url: str,
                headers: Mapping[str, str], body: str) -> Any:
        if method == "GET" and path == "/auth/time":
            return int(self.now())
        if method == "POST" and path == "/auth/credential":
            return self._request_credential(headers, body, url)
        with self.lock:
            self.keyring.authenticate(method=method, url=url, path=path, body=body,
                                      headers=headers, now=self.now())
            balancing = path.startswith(("/ipLoadbalancing", "/cloud/"))
            fail = balancing and self.faults.should_fail(method, path)
            delay = self.faults.delay_s if balancing else 0.0
            slow = self.faults.answer_delay(method, path) if balancing else 0.0
        if delay:
            time.sleep(delay)
        if fail:
            raise api_error(500, "Internal server error")
        with self.lock:
            self.advance()
            answer = self._route(method, path, query, body)
        if slow:
            time.sleep(slow)
        return answer

    def _route(self, method: str, path: str, query: Mapping[str, str], body: str) -> Any:
        if path.startswith("/cloud/"):
            return self._route_cloud(method, path, query, body)
        found = self.schema.operation(method, path)
        if found is None:
            raise api_error(404, BAD_URL)
        operation, raw_params = found
        if operation.template == "/ipLoadbalancing" and method == "GET":
            return sorted(self.services)
        refresh = (method, operation.template) == ("POST", f"{_SB}/refresh")
        handler = _HANDLERS.get((operation.method, operation.template))
        if handler is None and not refresh:
            raise api_error(501, f"bgkit's OVH API emulator does not implement "
                                 f"{operation.method} {operation.template}")
        data = self._body(operation, body)
        filters = self._filters(operation, query)
        service = self.services.get(raw_params.get("serviceName", ""))
        if service is None:
            raise api_error(404, "This service does not exist")
        params = {name: _integer(name, value) for name, value in raw_params.items()
                  if name != "serviceName"}
        if handler is None:  # POST /refresh: its task follows the current faults
            return service.refresh((data or {}).get("zone"), outcome=self.faults.task_outcome,
                                   delay_s=self.faults.refresh_delay_s)
        return handler(service, params, filters, data)

    def _route_cloud(self, method: str, path: str, query: Mapping[str, str],
                     body: str) -> Any:
        """A Public Cloud call, routed and validated with the vendored cloud schema."""
        found = self.cloud_schema.operation(method, path)
        if found is None:
            raise api_error(404, BAD_URL)
        operation, params = found
        handler = CLOUD_HANDLERS.get((operation.method, operation.template))
        if handler is None:
            raise api_error(501, f"bgkit's OVH API emulator does not implement "
                                 f"{operation.method} {operation.template}")
        for name, value in params.items():
            if self.cloud_schema.check(value, operation.path.get(name, "string"), "request"):
                raise api_error(400, f"Invalid value {value!r} for parameter {name}")
        data = self._cloud_body(operation, body)
        filters = {key: value for key, value in query.items() if key in operation.query}
        for key, value in filters.items():
            if self.cloud_schema.check(value, operation.query[key], "request"):
                raise api_error(400, f"Invalid value {value!r} for parameter {key}")
        if not any(project == params["serviceName"] for project, _ in self.clouds):
            raise api_error(404, "This service does not exist")
        region = self.clouds.get((params["serviceName"], params["regionName"]))
        if region is None:
            raise api_error(404, f"Region {params['regionName']} does not exist or is not "
                                 "enabled in this project")
        return handler(region, params, filters, data, self.faults.next_provisioning)

    def _cloud_body(self, operation: CloudOperation, body: str) -> Any:
        if not body:
            if operation.body is not None:
                raise api_error(400, "This call needs a body")
            return None
        try:
            data = json.loads(body)
        except ValueError:
            raise api_error(400, "Invalid JSON received") from None
        if operation.body is None:
            raise api_error(400, "This call takes no body")
        problems = self.cloud_schema.check(data, operation.body, "request")
        if problems:
            raise api_error(400, "; ".join(f"[{p.split(':', 1)[0]}]{p.split(':', 1)[1]}"
                                           for p in problems))
        return data

    def _body(self, operation: Operation, body: str) -> Any:
        if not body:
            return None
        try:
            data = json.loads(body)
        except ValueError:
            raise api_error(400, "Invalid JSON received") from None
        if operation.body is None:
            raise api_error(400, "This call takes no body")
        problems = self.schema.check(data, operation.body, "request")
        if problems:
            raise api_error(400, "; ".join(f"[{p.split(':', 1)[0]}]{p.split(':', 1)[1]}"
                                           for p in problems))
        return data

    def _filters(self, operation: Operation, query: Mapping[str, str]) -> dict[str, str]:
        filters = {key: value for key, value in query.items() if key in operation.query}
        for key, value in filters.items():
            if self.schema.check(value, operation.query[key], "request"):
                raise api_error(400, f"Invalid value {value!r} for parameter {key}")
        return filters

    def _request_credential(self, headers: Mapping[str, str], body: str, url: str) -> Any:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            raise api_error(400, "Invalid JSON received") from None
        if not isinstance(data, dict) or set(data) - {"accessRules", "redirection",
                                                      "allowedIPs"}:
            raise api_error(400, "Body parameters must be accessRules, redirection, allowedIPs")
        rules = parse_rules(data.get("accessRules"))
        redirection = data.get("redirection")
        with self.lock:
            key = self.keyring.request_consumer_key(
                headers.get("x-ovh-application"), rules,
                redirection if isinstance(redirection, str) else None)
        root = url.split(API_ROOT, 1)[0]
        return {"consumerKey": key.key, "state": "pendingValidation",
                "validationUrl": f"{root}/auth/?credentialToken={key.token}"}

    def _record(self, method: str, path: str, query: list[tuple[str, str]], body: str,
                answer: Answer, query_id: str) -> None:
        try:
            sent = json.loads(body) if body else None
        except ValueError:
            sent = body
        value = answer.body
        if path == "/auth/credential" and isinstance(value, dict):
            value = {key: "***" if key in ("consumerKey", "validationUrl") else item
                     for key, item in value.items()}
        with self.lock:
            self.journal.append({"method": method, "path": path, "query": query,
                                 "body": sent, "status": answer.status, "answer": value,
                                 "queryId": query_id})

    # --- /auth/ and /_emulator/ -------------------------------------------------------------

    def validation_page(self, method: str, target: str) -> Answer:
        """OVHcloud's consumer-key validation page: GET shows it, POST validates."""
        token = parse_qs(urlsplit(target).query).get("credentialToken", [""])[0]
        with self.lock:
            key = self.keyring.pending(token)
            if key is None:
                return Answer(404, "<p>Unknown or expired credential token.</p>", html=True)
            if method == "GET":
                rules = "".join(f"<li>{r.method} {r.path}</li>" for r in key.rules)
                return Answer(200, f"<h1>Authorize this consumer key?</h1><ul>{rules}</ul>"
                                   f"<form method='post'><button>Authorize</button></form>",
                              html=True)
            self.keyring.validate(token)
        if key.redirection:
            return Answer(303, "", (("Location", key.redirection),), html=True)
        return Answer(200, "<p>The consumer key is validated.</p>", html=True)

    def control(self, method: str, path: str, body: str) -> Answer:
        """``/_emulator/faults`` and ``/_emulator/journal``."""
        with self.lock:
            if path == "/_emulator/faults":
                if method == "POST":
                    try:
                        self.faults = self.faults.updated(json.loads(body or "{}"))
                    except ValueError as error:
                        return Answer(400, {"message": str(error)})
                elif method == "DELETE":
                    self.faults = self.start_faults.updated({})
                return Answer(200, self.faults.to_json())
            if path == "/_emulator/journal":
                entries = list(self.journal)
                if method == "DELETE":
                    self.journal.clear()
                return Answer(200, entries)
        return Answer(404, {"message": f"no emulator control at {path}"})


def _integer(name: str, value: str) -> int:
    if not value.isdigit():
        raise api_error(400, f"Invalid value {value!r} for parameter {name}: not a long")
    return int(value)
