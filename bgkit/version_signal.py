"""Where a health answer says which release served it: ``[service].version_from``.

- ``header:<name>`` (default ``header:X-App-Version``): a response header;
- ``json:<pointer>``: a JSON pointer (RFC 6901) into the health body, e.g. ``json:/version``;
- ``none``: the service does not say. Then a deploy reads each host's release over SSH
  (``current``), and the load balancer's pool header (``[lb].pool_header``, which HAProxy
  adds with ``http-response set-header X-Bgkit-Pool %b``) tells which pool served a
  request through the public address.

A service may say which build it is, too: ``<version>+<build>`` (semver build metadata),
where ``<build>`` is what follows ``<name>-<version>-`` in the release id (``1a2b3c4``,
``1a2b3c4-dirty5e6f7a8``). :func:`answers_release` takes that as the release, the bare
version as its label, and another build as another release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import httpx
import jsonpointer

__all__ = ["VersionSource", "answers_release", "build_of", "version_source"]

Kind = Literal["header", "json", "none"]


@dataclass(frozen=True, slots=True)
class VersionSource:
    kind: Kind
    where: str = ""  # the header name or the JSON pointer

    @classmethod
    def parse(cls, text: str) -> VersionSource:
        """``header:X``, ``json:/p`` or ``none`` (checked by the config already)."""
        if text == "none":
            return cls("none")
        kind, _, where = text.partition(":")
        if kind not in ("header", "json"):
            raise ValueError(f"version_from {text!r}: expected header:, json: or none")
        return cls("header" if kind == "header" else "json", where)

    @property
    def says_version(self) -> bool:
        return self.kind != "none"

    def describe(self) -> str:
        if self.kind == "header":
            return f"the {self.where} header"
        if self.kind == "json":
            return f"{self.where or '/'} in the JSON health body"
        return "no version on the wire (version_from = none)"

    def read(self, response: httpx.Response) -> str | None:
        """The version ``response`` names, or None when it names none."""
        if self.kind == "header":
            found: object = response.headers.get(self.where)
            return found if isinstance(found, str) else None
        if self.kind == "json":
            try:
                found = jsonpointer.resolve_pointer(response.json(), self.where, None)
            except (ValueError, jsonpointer.JsonPointerException):
                return None
            return str(found) if isinstance(found, str | int | float) and \
                not isinstance(found, bool) else None
        return None


def version_source(config_value: str) -> VersionSource:
    return VersionSource.parse(config_value)


def build_of(release: str | None, *, name: str, version: str | None) -> str | None:
    """The build part of a release id ``<name>-<version>-<build>``; None when ``release``
    is not of that form (or not given)."""
    if not release or not version:
        return None
    prefix = f"{name}-{version}-"
    return release.removeprefix(prefix) if release.startswith(prefix) else None


def answers_release(said: str | None, *, version: str, build: str | None) -> bool:
    """Whether a version said on the wire is the release's: its version (the label alone),
    or ``<version>+<build>`` naming this very build (any build when ``build`` is None)."""
    if said is None:
        return False
    if said == version:
        return True
    head, plus, tail = said.partition("+")
    return bool(plus) and head == version and (build is None or tail == build)

