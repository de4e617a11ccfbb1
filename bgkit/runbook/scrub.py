"""Keep secrets out of the archive: find secret values, and scrub them from a notebook.

Secrets never enter a notebook on purpose (parameters with secret-like names are
refused; OVH and SSH credentials are read inside the library). This is the second line:
before a run is finalised, every cell source, output and metadata string is searched
for the values of secret-looking environment variables (``OVH_*`` credentials, names
with SECRET, TOKEN, PASSWORD, KEY, CREDENTIAL or PRIVATE), the keys in the configured
``ovh.conf``, and the lines of the configured SSH private key, and each is replaced by
``***``.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["MASK", "scrub", "secret_values"]

MASK = "***"
MIN_LENGTH = 6  # shorter values ("1", "true") would mask ordinary text
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSW|CREDENTIAL|PRIVATE|(^|_)KEY($|_)|CONSUMER",
                          re.IGNORECASE)
_OVH_KEYS = ("application_key", "application_secret", "consumer_key", "client_secret")


def secret_values(*, environ: Mapping[str, str] | None = None,
                  ovh_conf: Path | None = None, identity_file: Path | None = None) -> set[str]:
    """Every value that must never appear in the archive."""
    env = os.environ if environ is None else environ
    found = {value for name, value in env.items() if _SECRET_NAME.search(name)}
    found |= _ovh_conf_values([p for p in (ovh_conf, Path("ovh.conf"),
                                            Path.home() / ".ovh.conf", Path("/etc/ovh.conf"))
                               if p is not None])
    if identity_file is not None:
        found |= _key_lines(identity_file)
    return {value for value in found if len(value) >= MIN_LENGTH}


def _ovh_conf_values(paths: Iterable[Path]) -> set[str]:
    values: set[str] = set()
    for path in paths:
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in parser.sections():
            values |= {parser[section][key] for key in _OVH_KEYS if key in parser[section]}
    return values


def _key_lines(path: Path) -> set[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return set()
    return {line.strip() for line in lines if line.strip() and not line.startswith("-----")}


def scrub(value: Any, secrets: set[str]) -> tuple[Any, int]:
    """``value`` (nested JSON) with every secret replaced by ``***``; and how many were."""
    if not secrets:
        return value, 0
    pattern = re.compile("|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True)))
    return _walk(value, pattern)


def _walk(value: Any, pattern: re.Pattern[str]) -> tuple[Any, int]:
    if isinstance(value, str):
        cleaned, count = pattern.subn(MASK, value)
        return cleaned, count
    if isinstance(value, Mapping):
        total, out = 0, {}
        for key, item in value.items():
            out[key], count = _walk(item, pattern)
            total += count
        return out, total
    if isinstance(value, list):
        results = [_walk(item, pattern) for item in value]
        return [item for item, _ in results], sum(count for _, count in results)
    return value, 0
