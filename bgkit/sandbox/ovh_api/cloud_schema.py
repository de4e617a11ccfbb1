"""The vendored Public Cloud Load Balancer schema, in OVHcloud's own format.

``cloud-loadbalancing.schema.json`` (see NOTICE.md) is the ``loadbalancing`` and
``operation`` subset of ``eu.api.ovh.com/1.0/cloud.json``: ``apis`` (a path, its
operations, each with ``httpMethod``, ``parameters`` by ``paramType`` path / query /
body, and a ``responseType``) and ``models`` (objects with ``properties``, each with a
``fullType``, ``canBeNull``, ``readOnly`` and ``required``; enums with ``enum``).

``load_cloud_schema()`` reads it once. ``CloudSchema.operation(method, path)`` finds the
operation a concrete path (without ``/1.0`` and query string) belongs to, with its path
parameters; ``CloudSchema.check(value, full_type, mode)`` validates JSON against a type:
``X[]`` lists, the primitives ``string``, ``uuid``, ``long``, ``double``, ``boolean``,
``datetime``, ``ip``, ``ipv4`` and ``ipv4Block``, enums and models. Two modes, both
stricter than the schema's bare words on purpose, as for IPLB (``schema``):

- ``"request"``: no property outside the model, no ``readOnly`` one, every ``required``
  one present, ``null`` only where ``canBeNull``;
- ``"response"``: every property of the model present (OVHcloud answers whole objects,
  ``null`` where ``canBeNull``) and none outside it.

A type the subset names but does not describe (``ListenerTlsVersionEnum``, for one) is a
problem whenever a value of it is not ``null``.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from bgkit.sandbox.ovh_api.schema import Mode

__all__ = ["CLOUD_SCHEMA_FILE", "CloudOperation", "CloudSchema", "load_cloud_schema"]

CLOUD_SCHEMA_FILE = "cloud-loadbalancing.schema.json"
_PARAM = re.compile(r"\{([A-Za-z0-9_]+)\}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class CloudOperation:
    """One (method, path template) of the schema and what it takes and returns."""

    method: str
    template: str  # /cloud/project/{serviceName}/region/{regionName}/loadbalancing/...
    pattern: re.Pattern[str]
    path: Mapping[str, str]  # path parameter -> its fullType
    query: Mapping[str, str]  # query parameter -> its fullType
    body: str | None  # the body's fullType, None if it takes none
    response: str | None  # the answer's fullType, None for void
    status: str  # PRODUCTION, BETA...

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        return None if found is None else found.groupdict()


class CloudSchema:
    """The parsed schema: operations by path, models by name."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.models: Mapping[str, Mapping[str, Any]] = document["models"]
        self.operations = tuple(_operations(document))

    def operation(self, method: str, path: str) -> tuple[CloudOperation, dict[str, str]] | None:
        """The operation ``METHOD path`` calls and its path parameters, or None."""
        for candidate in self.operations:
            if candidate.method == method.upper():
                params = candidate.match(path)
                if params is not None:
                    return candidate, params
        return None

    def model(self, name: str) -> Mapping[str, Any]:
        return self.models[name]

    def check(self, value: object, full_type: str, mode: Mode, where: str = "") -> list[str]:
        """Every way ``value`` breaks ``full_type`` as ``where: problem``; [] when it fits."""
        place = where or "."
        if value is None:
            return [f"{place}: null where the model allows none"]
        if full_type.endswith("[]"):
            if not isinstance(value, list):
                return [f"{place}: expected a list of {full_type[:-2]}, got {_show(value)}"]
            return [problem for index, item in enumerate(value)
                    for problem in self.check(item, full_type[:-2], mode, f"{where}[{index}]")]
        if full_type in _PRIMITIVES:
            return [] if _PRIMITIVES[full_type](value) else \
                [f"{place}: expected {full_type}, got {_show(value)}"]
        model = self.models.get(full_type)
        if model is None:
            return [f"{place}: type {full_type} is not described by the schema"]
        if "enum" in model:
            return [] if value in model["enum"] else \
                [f"{place}: {json.dumps(value)} is not one of {', '.join(model['enum'])}"]
        if not isinstance(value, dict):
            return [f"{place}: expected a {full_type} object, got {_show(value)}"]
        return self._check_object(value, model, mode, where)

    def _check_object(self, value: Mapping[str, Any], model: Mapping[str, Any], mode: Mode,
                      where: str) -> list[str]:
        properties: Mapping[str, Mapping[str, Any]] = model.get("properties", {})
        problems: list[str] = []
        for key, item in value.items():
            place = f"{where}.{key}" if where else key
            spec = properties.get(key)
            if spec is None:
                problems.append(f"{place}: not a field of this model")
            elif mode == "request" and spec.get("readOnly"):
                problems.append(f"{place}: read-only, cannot be sent")
            elif item is None:
                if not spec.get("canBeNull"):
                    problems.append(f"{place}: null where the model allows none")
            else:
                problems += self.check(item, spec["fullType"], mode, place)
        if mode == "request":
            missing = [key for key, spec in properties.items()
                       if spec.get("required") and key not in value]
        else:
            missing = [key for key in properties if key not in value]
        prefix = f"{where}." if where else ""
        return problems + [f"{prefix}{key}: missing" for key in missing]


def _show(value: object) -> str:
    return json.dumps(value) if isinstance(value, str | int | float | bool) else \
        type(value).__name__


def _parses(kind: Any) -> Any:
    def check(value: object) -> bool:
        if not isinstance(value, str):
            return False
        try:
            kind(value)
        except ValueError:
            return False
        return True
    return check


_PRIMITIVES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "password": lambda v: isinstance(v, str),
    "uuid": lambda v: isinstance(v, str) and _UUID.fullmatch(v) is not None,
    "long": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "double": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "datetime": _parses(datetime.fromisoformat),
    "ip": _parses(ipaddress.ip_address),
    "ipv4": _parses(ipaddress.IPv4Address),
    "ipv4Block": _parses(lambda text: ipaddress.IPv4Network(text, strict=False)),
}


def _operations(document: Mapping[str, Any]) -> list[CloudOperation]:
    found: list[CloudOperation] = []
    for api in document["apis"]:
        template = api["path"]
        regex = _PARAM.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)",
                           re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
        for spec in api["operations"]:
            params = spec.get("parameters", ())
            body = next((p["fullType"] for p in params if p["paramType"] == "body"), None)
            answer = spec.get("responseType")
            found.append(CloudOperation(
                method=spec["httpMethod"].upper(), template=template,
                pattern=re.compile(regex),
                path={p["name"]: p["fullType"] for p in params if p["paramType"] == "path"},
                query={p["name"]: p["fullType"] for p in params if p["paramType"] == "query"},
                body=body, response=None if answer in (None, "void") else answer,
                status=str(spec.get("apiStatus", {}).get("value", ""))))
    # Literal segments win over parameters.
    found.sort(key=lambda op: -len([s for s in op.template.split("/") if "{" not in s]))
    return found


@functools.cache
def load_cloud_schema() -> CloudSchema:
    """The vendored schema, parsed once per process."""
    text = resources.files("bgkit.sandbox.ovh_api").joinpath(CLOUD_SCHEMA_FILE).read_text(
        encoding="utf-8")
    return CloudSchema(json.loads(text))
