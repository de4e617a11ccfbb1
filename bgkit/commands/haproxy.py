"""HAProxy runtime API: command strings and pure parsers of their answers.

Each builder returns one command line (without the trailing newline) for HAProxy's
runtime API (the ``stats socket``). The API splits a line on spaces and on ``;`` and
treats ``\\`` as an escape, so every value is refused with ``ValueError`` if it holds
whitespace, ``;``, ``\\`` or a control character, rather than quoted: a map key, a
backend name or a file path never needs them.

Each parser takes the text HAProxy answered and returns typed values, raising
``ValueError`` (with HAProxy's own words) when the answer is not what the command
returns on success, e.g. ``Unknown map identifier``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "StatRow",
    "map_file_value",
    "parse_backend_list",
    "parse_map",
    "parse_stat_csv",
    "render_map_file",
    "set_map",
    "show_backend",
    "show_map",
    "show_stat",
]

_UNSAFE = re.compile(r"[\s;\\\x00-\x1f\x7f]")
_MAP_LINE = re.compile(r"(0x[0-9a-fA-F]+) (\S+) (.*)")
AGGREGATE_ROWS = ("FRONTEND", "BACKEND")


@dataclass(frozen=True, slots=True)
class StatRow:
    """One row of ``show stat``: a frontend, a backend or one server of a backend."""

    proxy: str  # pxname
    name: str  # svname: FRONTEND, BACKEND or the server's name
    status: str  # UP, DOWN, MAINT, "UP 1/2", "no check", OPEN...
    address: str  # addr: "127.0.1.1:8080" for a server, "" otherwise
    check_status: str  # L7OK, L4CON, L7STS...; "*" prefix while a check runs
    check_description: str  # check_desc: what check_status means
    last_check: str  # last_chk: the last check's own message, e.g. "Connection refused"
    fields: Mapping[str, str] = field(default_factory=dict)  # every column, by name

    @property
    def is_server(self) -> bool:
        return self.name not in AGGREGATE_ROWS


def _token(value: str, what: str) -> str:
    if not value or _UNSAFE.search(value):
        raise ValueError(
            f"{what} {value!r} cannot be sent to HAProxy's runtime API: it must be non-empty "
            "and hold no whitespace, ';', '\\' or control characters")
    return value


def set_map(map_file: str, key: str, value: str) -> str:
    """Set ``key`` to ``value`` in the loaded map ``map_file`` (the entry must exist)."""
    return (f"set map {_token(map_file, 'map file')} {_token(key, 'map key')} "
            f"{_token(value, 'map value')}")


def add_map(map_file: str, key: str, value: str) -> str:
    """Add the entry ``key value`` to the loaded map ``map_file`` (for a key it lacks)."""
    return (f"add map {_token(map_file, 'map file')} {_token(key, 'map key')} "
            f"{_token(value, 'map value')}")


def show_map(map_file: str) -> str:
    """List the entries of the loaded map ``map_file``."""
    return f"show map {_token(map_file, 'map file')}"


def show_stat() -> str:
    """Every proxy and server as CSV, with a ``# pxname,svname,...`` header."""
    return "show stat"


def show_backend() -> str:
    """The names of every backend, one per line after a ``# name`` header."""
    return "show backend"


def _refusal(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first or "(empty answer)"


def parse_map(text: str) -> dict[str, str]:
    """``show map`` answer -> ``{key: value}``; an empty map gives ``{}``.

    Raises:
        ValueError: the answer is not a map listing (HAProxy's message is included).
    """
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _MAP_LINE.fullmatch(line.rstrip("\r"))
        if match is None:
            raise ValueError(f"not a map listing: {_refusal(text)}")
        entries[match.group(2)] = match.group(3)
    return entries


def parse_backend_list(text: str) -> list[str]:
    """``show backend`` answer -> backend names in HAProxy's order.

    Raises:
        ValueError: the answer lacks the ``# name`` header.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "# name":
        raise ValueError(f"not a backend list: {_refusal(text)}")
    return lines[1:]


def parse_stat_csv(text: str) -> list[StatRow]:
    """``show stat`` answer -> one :class:`StatRow` per CSV row, in HAProxy's order.

    Raises:
        ValueError: no ``# pxname,svname,...`` header, or a row has fewer columns.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# pxname,svname,"):
        raise ValueError(f"not show stat CSV: {_refusal(text)}")
    header = lines[0][2:].rstrip(",").split(",")
    rows: list[StatRow] = []
    for number, values in enumerate(csv.reader(lines[1:]), start=2):
        if len(values) < len(header):
            raise ValueError(f"show stat line {number} has {len(values)} columns, "
                             f"the header names {len(header)}")
        columns = dict(zip(header, values, strict=False))
        rows.append(StatRow(
            proxy=columns["pxname"], name=columns["svname"],
            status=columns.get("status", ""), address=columns.get("addr", ""),
            check_status=columns.get("check_status", ""),
            check_description=columns.get("check_desc", ""),
            last_check=columns.get("last_chk", ""), fields=columns))
    return rows


def map_file_value(text: str, key: str) -> str | None:
    """The value of ``key`` in a map file's text, as HAProxy loads it (the first line for
    the key wins; ``#`` comments and blank lines are skipped), or None."""
    for line in text.splitlines():
        words = line.split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        if words[0] == key:
            return words[1].strip() if len(words) > 1 else ""
    return None


def render_map_file(existing: str, key: str, value: str) -> str:
    """A map file's text with ``key`` set to ``value``, every other line kept.

    The first line for ``key`` is replaced (later duplicates are dropped, since HAProxy
    would use the first one); if there is none, ``key value`` is appended.
    """
    _token(key, "map key")
    _token(value, "map value")
    out: list[str] = []
    replaced = False
    for line in existing.splitlines():
        words = line.split(None, 1)
        if words and words[0] == key:
            if not replaced:
                out.append(f"{key} {value}")
                replaced = True
            continue
        out.append(line)
    if not replaced:
        out.append(f"{key} {value}")
    return "\n".join(out) + "\n"
