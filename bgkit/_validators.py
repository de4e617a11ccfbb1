"""Field checks for bgkit.toml and their messages, kept apart from the schema.

Each check takes the raw TOML value and returns it (possibly normalised) or raises
``PydanticCustomError`` whose message says what was expected and what was found.
``describe_errors`` turns a pydantic ``ValidationError`` into ``key.path: message``
lines.
"""

from __future__ import annotations

import ipaddress
import json
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from bgkit.runbook.scrub import looks_secret

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")
_UNIX_USER = re.compile(r"[A-Za-z_][A-Za-z0-9._-]{0,31}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_CMAKE_OPTION = re.compile(r"-D[A-Za-z_][A-Za-z0-9_]*(:[A-Z]+)?=[^\n\r]*")
_OVH_ENDPOINTS = ("ovh-eu", "ovh-ca", "ovh-us", "kimsufi-eu", "kimsufi-ca", "soyoustart-eu",
                  "soyoustart-ca")



def show(value: object) -> str:
    """A found value as a user would recognise it from their TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _said(message: str) -> PydanticCustomError:
    """An error whose whole message is ``message``."""
    return PydanticCustomError("bgkit", "{message}", {"message": message})


def _fail(expected: str, value: object) -> PydanticCustomError:
    return PydanticCustomError("bgkit", "expected {expected}, got {got}",
                               {"expected": expected, "got": show(value)})


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _string(value: object, expected: str) -> str:
    """Every string of bgkit.toml passes here: none may hold a control character.

    Strings reach shells, unit files, sudoers files and HTTP headers; a CR, LF, NUL or
    any other C0/C1 control (or DEL) could start a new line or command in one of them.
    """
    if not isinstance(value, str):
        raise _fail(expected, value)
    if _CONTROL.search(value):
        raise _fail(f"{expected}, without control characters (CR, LF, NUL, tab...)", value)
    return value


def _integer(value: object, low: int, high: int, expected: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(expected, value)
    return value


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def port(value: object) -> int:
    return _integer(value, 1, 65535, "an integer 1-65535")


def count(value: object) -> int:
    return _integer(value, 0, 2**31 - 1, "a whole number 0 or more")


def canary_percent(value: object) -> int:
    return _integer(value, 1, 99, "a whole percent from 1 to 99")


def positive_seconds(value: object) -> float:
    number = _number(value)
    if number is None or not 0 < number <= 86400:
        raise _fail("a number of seconds above 0 and at most 86400", value)
    return number


def positive_number(value: object) -> float:
    number = _number(value)
    if number is None or not 0 < number < float("inf"):
        raise _fail("a number above 0", value)
    return number


def non_negative_number(value: object) -> float:
    number = _number(value)
    if number is None or not 0 <= number < float("inf"):
        raise _fail("a number 0 or more", value)
    return number


def ratio(value: object) -> float:
    number = _number(value)
    if number is None or not 0 <= number <= 1:
        raise _fail("a ratio from 0 to 1 (0.01 = 1 %)", value)
    return number


def fanout(value: object) -> int:
    return _integer(value, 1, 1000, "a whole number of hosts at once, 1-1000")


def megabytes(value: object) -> int:
    return _integer(value, 1, 2**31 - 1, "a whole number of MiB, 1 or more")


def keep_releases(value: object) -> int:
    return _integer(value, 2, 1000, "a whole number of releases to keep, at least 2 "
                    "(the live and the previous one are never pruned)")


SERVICE_PLACEHOLDERS = ("root", "shared", "current", "address", "port", "host", "pool",
                        "version", "release")
# The systemd unit is installed once per host, so what changes with each release cannot
# stand in its ExecStart.
PER_RELEASE_PLACEHOLDERS = ("version", "release")


def placeholder_list() -> str:
    return ", ".join("{" + key + "}" for key in SERVICE_PLACEHOLDERS)


def service_arg(value: object) -> str:
    expected = f"an argument string; the placeholders are {placeholder_list()}"
    text = _string(value, expected)
    try:
        text.format(**{key: "" for key in SERVICE_PLACEHOLDERS})
    except KeyError as error:
        raise _said(f"unknown placeholder {{{error.args[0]}}} in {show(value)}; the "
                    f"placeholders are {placeholder_list()} (write {{{{ and }}}} for a "
                    "literal brace)") from None
    except (IndexError, ValueError):
        raise _fail(expected + " ({{ and }} for literal braces)", value) from None
    return text


def placeholders_in(text: str) -> set[str]:
    """The placeholder names a checked argument string uses."""
    import string

    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def file_mode(value: object) -> int:
    """A permission mode: an integer (TOML 0o640) or an octal string ("0640")."""
    expected = 'a file mode such as 0o640 or "0640" (at most 0o777)'
    if isinstance(value, str):
        if not re.fullmatch(r"0?[0-7]{3}", value):
            raise _fail(expected, value)
        return int(value, 8)
    return _integer(value, 0, 0o777, expected)


def version_from(value: object) -> str:
    expected = ('"header:<HTTP header>", "json:<JSON pointer into the health body>" or '
                '"none", such as "header:X-App-Version" or "json:/version"')
    text = _string(value, expected)
    kind, _, where = text.partition(":")
    if text == "none" or (kind == "header" and _HEADER.fullmatch(where)) or \
            (kind == "json" and (where == "" or where.startswith("/"))):
        return text
    raise _fail(expected, value)


def ctest_arg(value: object) -> str:
    return _string(value, "a ctest argument such as -E or network")


def hook_arg(value: object) -> str:
    """One argument of a hook command (no control characters; passed as is, no shell)."""
    return _string(value, "an argument string")


def name(value: object) -> str:
    expected = "a name of letters, digits, '.', '_' or '-' (at most 64, not starting with a symbol)"
    text = _string(value, expected)
    if not _NAME.fullmatch(text):
        raise _fail(expected, value)
    return text


def unit_name(value: object) -> str:
    expected = "a systemd service name such as hello-c.service (letters, digits, '.', '_', '-')"
    text = _string(value, expected)
    if not (_NAME.fullmatch(text) and text.endswith(".service") and len(text) > 8):
        raise _fail(expected, value)
    return text


def version(value: object) -> str:
    expected = "a version of letters, digits, '.', '+', '_' or '-' such as 1.4.2"
    text = _string(value, expected)
    if not _VERSION.fullmatch(text):
        raise _fail(expected, value)
    return text


def unix_user(value: object) -> str:
    expected = "a Unix user or group name (letters, digits, '.', '_' or '-')"
    text = _string(value, expected)
    if not _UNIX_USER.fullmatch(text):
        raise _fail(expected, value)
    return text


def address(value: object) -> str:
    """An IPv4/IPv6 address or a DNS host name."""
    expected = "an IP address or host name"
    text = _string(value, expected)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.rstrip(".").split(".")
    looks_numeric = all(label.isdigit() for label in labels)
    if (len(text) > 253 or looks_numeric
            or not all(_HOST_LABEL.fullmatch(label) for label in labels)):
        raise _fail(expected, value)
    return text


def _path(value: object, expected: str) -> str:
    text = _string(value, expected)
    if not text:
        raise _fail(expected, value)
    return text


def any_path(value: object) -> str:
    return _path(value, "a file system path")


def absolute_path(value: object) -> str:
    expected = "an absolute path such as /opt/app"
    text = _path(value, expected)
    if not text.startswith("/") or ".." in text.split("/"):
        raise _fail(expected, value)
    return text


def relative_path(value: object) -> str:
    expected = "a path inside the release such as bin/app (no leading '/', no '..')"
    text = _path(value, expected)
    if text.startswith("/") or ".." in text.split("/"):
        raise _fail(expected, value)
    return text


def url_path(value: object) -> str:
    expected = "an HTTP path starting with '/' such as /health"
    text = _string(value, expected)
    if not text.startswith("/") or any(c.isspace() for c in text):
        raise _fail(expected, value)
    return text


def header_name(value: object) -> str:
    expected = "an HTTP header name such as X-App-Version"
    text = _string(value, expected)
    if not _HEADER.fullmatch(text):
        raise _fail(expected, value)
    return text


def cmake_option(value: object) -> str:
    expected = "a CMake cache option such as -DFEATURE=ON"
    text = _string(value, expected)
    if not _CMAKE_OPTION.fullmatch(text):
        raise _fail(expected, value)
    return text


def http_url(value: object) -> str:
    expected = "an http:// or https:// URL such as http://127.0.0.1:8080"
    text = _string(value, expected)
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", text):
        raise _fail(expected, value)
    return text


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def uuid(value: object) -> str:
    """An OpenStack/OVHcloud object id, normalised to lower case."""
    expected = "a uuid such as 3f0e2a64-1b2c-4d5e-8f90-a1b2c3d4e5f6"
    text = _string(value, expected)
    if not _UUID.fullmatch(text):
        raise _fail(expected, value)
    return text.lower()


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_OBJECT_KEY = re.compile(r"[A-Za-z0-9!_.*'()=+@,-]+(/[A-Za-z0-9!_.*'()=+@,-]+)*")


def store_endpoint(value: object) -> str:
    """An S3 endpoint URL, without credentials in it (``https://user:key@...``)."""
    expected = "an http:// or https:// URL such as https://s3.gra.io.cloud.ovh.net"
    text = http_url(value)
    if "@" in text.split("/")[2]:
        raise _said("credentials never belong in bgkit.toml, not even in a URL: give the "
                    "endpoint without them (AWS keys come from AWS_* variables, the shared "
                    "credentials file or a profile)")
    if not re.fullmatch(r"https?://[^\s/?#]+/?", text):
        raise _fail(expected, value)
    return text.rstrip("/")


def retention_days(value: object) -> int:
    return _integer(value, 1, 36500, "a whole number of days 1-36500")


def lock_url(value: object) -> str:
    """``file:///absolute/path`` or ``s3://bucket/key``."""
    return _store_url(value, expected="file:///absolute/path or s3://bucket/key",
                      key_required=True)


def runs_url(value: object) -> str:
    """``file:///absolute/folder`` or ``s3://bucket`` / ``s3://bucket/prefix``."""
    text = _store_url(value, expected="file:///absolute/folder, s3://bucket or "
                      "s3://bucket/prefix", key_required=False)
    return text.rstrip("/") if text.startswith("s3://") else text


def _store_url(value: object, *, expected: str, key_required: bool) -> str:
    text = _string(value, expected)
    if text.startswith("file://"):
        path = text.removeprefix("file://")
        if not path.startswith("/") or ".." in path.split("/") or path == "/":
            raise _fail(expected, value)
        return text
    if not text.startswith("s3://"):
        raise _fail(expected, value)
    bucket, _, key = text.removeprefix("s3://").partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise _said(f"expected {expected}, got {show(value)}: the bucket name must be 3-63 "
                    "lowercase letters, digits, '.' or '-'")
    key = key if key_required else key.rstrip("/")
    if (key_required and not key) or (key and (not _OBJECT_KEY.fullmatch(key)
                                               or {".", ".."} & set(key.split("/")))):
        raise _said(f"expected {expected}, got {show(value)}: the object key must be "
                    "letters, digits and !_.*'()=+@,- in '/'-separated parts, no '.' or "
                    "'..' parts")
    return text


def ovh_endpoint(value: object) -> str:
    expected = f"one of {', '.join(_OVH_ENDPOINTS)} or an http(s):// URL"
    text = _string(value, expected)
    if text in _OVH_ENDPOINTS or re.fullmatch(r"https?://[^\s]+", text):
        return text
    raise _fail(expected, value)


# --- turning pydantic's errors into key-path messages --------------------------------

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
    "model_type": "a table",
    "dict_type": "a table",
    "model_attributes_type": "a table",
}


def key_path(loc: tuple[int | str, ...]) -> str:
    """('pools', 'green', 'hosts', 1, 'port') -> 'pools.green.hosts[1].port'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is Annotated:
        return _model_in(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType, tuple, list):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _describe(error: Any, root: type[BaseModel]) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    found = error.get("input")
    if kind == "bgkit":
        return str(error["msg"])
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        leaf = str(loc[-1]).lower()
        if looks_secret(leaf):
            return ("unknown key; secrets never belong in bgkit.toml (OVH keys come from "
                    "OVH_* variables or ovh.conf, SSH keys from your SSH agent or config, "
                    "S3 keys from AWS_* variables, the shared credentials file or a "
                    "profile)")
        parent = _model_at(root, loc[:-1])
        valid = sorted(field.alias or key for key, field in parent.model_fields.items()
                       if key != "path") if parent else []
        return f"unknown key (expected one of: {', '.join(valid)})"
    if kind == "literal_error":
        return f"expected {error['ctx']['expected']}, got {show(found)}"
    if kind == "too_short":
        ctx = error["ctx"]
        return f"expected at least {ctx['min_length']} item(s), got {ctx['actual_length']}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {show(found)}"
    return f"{error['msg']}, got {show(found)}"


def describe_errors(error: ValidationError, root: type[BaseModel]) -> list[str]:
    """One ``key.path: what was expected, got what`` line per problem."""
    items = error.errors(include_url=False)
    locs = [tuple(item["loc"]) for item in items]
    lines = []
    for item, loc in zip(items, locs, strict=True):
        # pydantic also calls a list "too short" when its only items were invalid:
        # the items' own errors say more, so that echo is dropped.
        nested = any(other[: len(loc)] == loc and len(other) > len(loc) for other in locs)
        if item["type"] == "too_short" and nested:
            continue
        # A whole-file check names its own key path in its message.
        where = f"{key_path(loc)}: " if loc or item["type"] != "value_error" else ""
        lines.append(f"{where}{_describe(item, root)}")
    return lines
