"""The vendored IPLB OpenAPI description: its operations, and a validator for its models.

``load_schema()`` reads ``iploadbalancing.openapi.json`` (see NOTICE.md) once.
``ApiSchema.operation(method, path)`` finds the operation a concrete API path (without
the ``/1.0`` prefix or query string) belongs to, with its path parameters.
``ApiSchema.check(value, schema, mode)`` validates JSON against a model, using the
subset of JSON Schema this file uses: ``$ref``, ``allOf``, ``type``, ``enum``,
``nullable``, ``properties``, ``required``, ``items``, ``additionalProperties``,
``readOnly`` and the formats ``ipv4``, ``ipv6``, ``ip-block``, ``ipv4-block`` and
``date-time``. Two modes, both stricter than OpenAPI's defaults on purpose:

- ``"request"``: no property outside the model, no ``readOnly`` property, every
  ``required`` one present (a PUT body may be partial: these models require nothing);
- ``"response"``: every property of the model present (OVHcloud answers whole objects,
  ``null`` where nullable) and none outside it.

The emulator answers and validates with this; the conformance tests check bgkit's
requests and the emulator's answers with it.
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
from typing import Any, Literal

__all__ = ["SCHEMA_FILE", "ApiSchema", "Mode", "Operation", "load_schema"]

SCHEMA_FILE = "iploadbalancing.openapi.json"
Mode = Literal["request", "response"]
JsonSchema = Mapping[str, Any]
_PARAM = re.compile(r"\{([A-Za-z0-9_.]+)\}")
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,),
}


@dataclass(frozen=True, slots=True)
class Operation:
    """One (method, path template) of the schema and what it takes and returns."""

    method: str  # upper case
    template: str  # /ipLoadbalancing/{serviceName}/task/{id}
    pattern: re.Pattern[str]
    query: Mapping[str, JsonSchema]  # query parameter name -> its schema
    body: JsonSchema | None  # the request body's schema, None if it takes none
    response: JsonSchema | None  # the 200 answer's schema, None for void

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` is an instance of this template."""
        found = self.pattern.fullmatch(path)
        return None if found is None else found.groupdict()


class ApiSchema:
    """The parsed OpenAPI document: operations by path, models by name."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.models: Mapping[str, JsonSchema] = document["components"]["schemas"]
        self.operations = tuple(_operations(document))

    def operation(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation ``METHOD path`` calls and its path parameters, or None."""
        for candidate in self.operations:
            if candidate.method == method.upper():
                params = candidate.match(path)
                if params is not None:
                    return candidate, params
        return None

    def path_exists(self, path: str) -> bool:
        """Some operation, of any method, has a template that ``path`` matches."""
        return any(op.match(path) is not None for op in self.operations)

    def model(self, name: str) -> JsonSchema:
        return self.models[name]

    def check(self, value: object, schema: JsonSchema, mode: Mode, where: str = "") -> list[str]:
        """Every way ``value`` breaks ``schema`` as ``where: problem``; [] when it fits."""
        flat = self._flatten(schema)
        if value is None:
            return [] if flat.get("nullable") or not flat else [f"{where or '.'}: null"
                                                                 " where the model allows none"]
        problems = self._check_type(value, flat, where)
        if problems:
            return problems
        if isinstance(value, dict):
            return self._check_object(value, flat, mode, where)
        if isinstance(value, list) and "items" in flat:
            return [problem for index, item in enumerate(value)
                    for problem in self.check(item, flat["items"], mode, f"{where}[{index}]")]
        return []

    # --- the subset -------------------------------------------------------------------

    def _flatten(self, schema: JsonSchema) -> dict[str, Any]:
        """``$ref`` followed and ``allOf`` merged into one dict of keywords."""
        if "$ref" in schema:
            merged = self._flatten(self.models[schema["$ref"].rsplit("/", 1)[1]])
            merged.update({k: v for k, v in schema.items() if k != "$ref"})
            return merged
        merged = {}
        for part in schema.get("allOf", ()):
            flat = self._flatten(part)
            properties = {**merged.get("properties", {}), **flat.get("properties", {})}
            merged.update(flat)
            if properties:
                merged["properties"] = properties
        merged.update({k: v for k, v in schema.items() if k != "allOf"})
        return merged

    def _check_type(self, value: object, flat: Mapping[str, Any], where: str) -> list[str]:
        expected = flat.get("type")
        place = where or "."
        if expected in _TYPES and (not isinstance(value, _TYPES[expected]) or (
                isinstance(value, bool) and expected in ("integer", "number"))):
            return [f"{place}: expected {expected}, got {json.dumps(value)[:60]}"]
        if "enum" in flat and value not in flat["enum"]:
            return [f"{place}: {json.dumps(value)} is not one of {', '.join(flat['enum'])}"]
        if isinstance(value, str) and not _format_ok(value, flat.get("format")):
            return [f"{place}: {value!r} is not a valid {flat['format']}"]
        return []

    def _check_object(self, value: Mapping[str, Any], flat: Mapping[str, Any], mode: Mode,
                      where: str) -> list[str]:
        properties: Mapping[str, JsonSchema] = flat.get("properties", {})
        extra = flat.get("additionalProperties")
        problems: list[str] = []
        for key, item in value.items():
            place = f"{where}.{key}" if where else key
            if key in properties:
                if mode == "request" and self._flatten(properties[key]).get("readOnly"):
                    problems.append(f"{place}: read-only, cannot be sent")
                else:
                    problems += self.check(item, properties[key], mode, place)
            elif isinstance(extra, Mapping):
                problems += self.check(item, extra, mode, place)
            elif properties or extra is False:
                problems.append(f"{place}: not a field of this model")
        if mode == "request":
            missing = [key for key in flat.get("required", ()) if key not in value]
        else:
            missing = [key for key in properties if key not in value]
        prefix = f"{where}." if where else ""
        return problems + [f"{prefix}{key}: missing" for key in missing]


def _format_ok(value: str, kind: object) -> bool:
    try:
        if kind == "ipv4":
            ipaddress.IPv4Address(value)
        elif kind == "ipv6":
            ipaddress.IPv6Address(value)
        elif kind in ("ip-block", "ipv4-block", "ipv6-block"):
            ipaddress.ip_network(value, strict=False)
        elif kind == "date-time":
            datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _operations(document: Mapping[str, Any]) -> list[Operation]:
    found: list[Operation] = []
    for template, item in document["paths"].items():
        regex = _PARAM.sub(lambda m: f"(?P<{m.group(1).replace('.', '_')}>[^/]+)",
                           re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
        for method, spec in item.items():
            body = spec.get("requestBody", {}).get("content", {}).get("application/json", {})
            answer = spec.get("responses", {}).get("200", {}).get("content", {})
            found.append(Operation(
                method=method.upper(), template=template, pattern=re.compile(regex),
                query={p["name"]: p.get("schema", {}) for p in spec.get("parameters", ())
                       if p.get("in") == "query"},
                body=body.get("schema"),
                response=answer.get("application/json", {}).get("schema")))
    # Literal segments win over parameters: /ssl/available before /ssl/{id}.
    found.sort(key=lambda op: -len([s for s in op.template.split("/") if "{" not in s]))
    return found


@functools.cache
def load_schema() -> ApiSchema:
    """The vendored schema, parsed once per process."""
    text = resources.files("bgkit.sandbox.ovh_api").joinpath(SCHEMA_FILE).read_text(
        encoding="utf-8")
    return ApiSchema(json.loads(text))
