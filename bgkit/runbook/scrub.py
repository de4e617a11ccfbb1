"""Keep secrets out of the archive: find secret values, and scrub them from a notebook.

Secrets never enter a notebook on purpose (parameters with secret-like names are
refused; OVH and SSH credentials are read inside the library). This is the second line:
before a run is published, every cell source, output, metadata string and key is
searched for the values of secret-looking environment variables (names that
:func:`looks_secret`, the one rule bgkit uses for parameter names, config keys and
environment variables alike), the keys in the configured ``ovh.conf``, and the lines of
the configured SSH private key — each also in its escaped forms (JSON, Python repr,
HTML) — and each is replaced by ``***``.
"""

from __future__ import annotations

import configparser
import html
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bgkit.config import Config

__all__ = ["MASK", "archive_secrets", "looks_secret", "scrub", "scrub_text", "secret_values"]

MASK = "***"
MIN_LENGTH = 6  # shorter values ("1", "true") would mask ordinary text
_STRONG = re.compile(r"secret|passw|passphrase|token|credential|private", re.IGNORECASE)
_WEAK_WORDS = frozenset({"key", "keys", "apikey", "pass"})
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def looks_secret(name: str) -> bool:
    """True for a name that suggests a secret: it contains secret, passw(or)d, token,
    credential, private or passphrase anywhere, or the word key, apikey or pass
    (``api_key``, ``OVH_CONSUMER_KEY``, ``dbPass``; not ``monkey`` or ``keyboard``)."""
    if _STRONG.search(name):
        return True
    return any(word.lower() in _WEAK_WORDS for word in _WORDS.findall(name))
_OVH_KEYS = ("application_key", "application_secret", "consumer_key", "client_secret")


def secret_values(*, environ: Mapping[str, str] | None = None,
                  ovh_conf: Path | None = None, identity_file: Path | None = None) -> set[str]:
    """Every value that must never appear in the archive."""
    env = os.environ if environ is None else environ
    found = {value for name, value in env.items() if looks_secret(name)}
    found |= _ovh_conf_values([p for p in (ovh_conf, Path("ovh.conf"),
                                            Path.home() / ".ovh.conf", Path("/etc/ovh.conf"))
                               if p is not None])
    if identity_file is not None:
        found |= _key_lines(identity_file)
    return {value for value in found if len(value) >= MIN_LENGTH}


def archive_secrets(config: Config | None, *, notebooks_dir: Path | None = None) -> set[str]:
    """Every secret that must not reach the archive for runs made with ``config``: the
    environment's, the configured ovh.conf and SSH key, and an ovh.conf in the notebooks'
    folder (where the kernel runs, and python-ovh would read one)."""
    ovh_conf = identity = None
    if config is not None:
        settings = config.lb.ovh_iplb
        if settings and settings.config_file:
            ovh_conf = config.resolve(settings.config_file)
        identity = config.identity_file
    found = secret_values(ovh_conf=ovh_conf, identity_file=identity)
    if notebooks_dir is not None:
        found |= secret_values(environ={}, ovh_conf=notebooks_dir / "ovh.conf")
    return found


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
    """``value`` (nested JSON) with every secret, and every escaped form of it, replaced
    by ``***`` in strings and in keys; and how many were."""
    if not secrets:
        return value, 0
    return _walk(value, _pattern(secrets))


def scrub_text(text: str, secrets: set[str]) -> tuple[str, int]:
    """``text`` (e.g. a whole notebook's JSON) with every secret, in every escaped form
    including JSON-in-JSON, replaced by ``***``; and how many were. The result stays valid
    JSON when ``text`` was."""
    if not secrets:
        return text, 0
    return _pattern(secrets, nested=True).subn(MASK, text)


def _pattern(secrets: set[str], *, nested: bool = False) -> re.Pattern[str]:
    forms = {form for secret in secrets for form in _escaped_forms(secret)}
    if nested:  # as they appear inside a JSON document: escaped once more
        forms |= {json.dumps(form, ensure_ascii=ascii)[1:-1] for form in set(forms)
                  for ascii in (True, False)}
    return re.compile("|".join(re.escape(s) for s in sorted(forms, key=len, reverse=True)))


def _escaped_forms(secret: str) -> set[str]:
    """The secret as written in text that quoted it: JSON, repr, HTML (and itself)."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             repr(secret)[1:-1], html.escape(secret), html.escape(secret, quote=False)}
    return {form for form in forms if len(form) >= MIN_LENGTH}


def _walk(value: Any, pattern: re.Pattern[str]) -> tuple[Any, int]:
    if isinstance(value, str):
        cleaned, count = pattern.subn(MASK, value)
        return cleaned, count
    if isinstance(value, Mapping):
        total, out = 0, {}
        for key, item in value.items():
            clean_key, key_count = _walk(key, pattern) if isinstance(key, str) else (key, 0)
            out[clean_key], count = _walk(item, pattern)
            total += count + key_count
        return out, total
    if isinstance(value, list):
        results = [_walk(item, pattern) for item in value]
        return [item for item, _ in results], sum(count for _, count in results)
    return value, 0
