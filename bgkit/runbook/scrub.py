"""Keep secrets out of the archive: find secret values, and scrub them from a notebook.

Secrets never enter a notebook on purpose (parameters with secret-like names are
refused; OVH and SSH credentials are read inside the library). This is the second line:
before a run is published, every cell source, output, metadata string and key is
searched for the values of secret-looking environment variables (names that
:func:`looks_secret`, the one rule bgkit uses for parameter names, config keys and
environment variables alike: ``AWS_SECRET_ACCESS_KEY`` too), the keys in the configured
``ovh.conf`` and, for an ``s3://`` lock or archive, in the AWS shared credentials and
config files, and the lines of the configured SSH private key — each also in its escaped
forms (JSON, Python repr, HTML) — and each is replaced by ``***``.
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

__all__ = ["MASK", "MIN_LENGTH", "archive_secrets", "aws_credential_values", "looks_secret",
           "notebook_scrub", "scrub", "secret_values"]

MASK = "***"
MIN_LENGTH = 6  # shorter values ("1", "true") would mask ordinary text: never scrubbed
_STRONG = re.compile(r"secret|passw|passcode|passphrase|token|credential|private|privkey|"
                     r"sshpass|dbpass", re.IGNORECASE)
_WEAK_WORDS = frozenset({"key", "keys", "apikey", "pass", "pwd", "pin", "auth",
                         "authorization"})  # the HTTP header of credentials (RFC 9110)
_NOT_SECRET = frozenset({"PWD", "OLDPWD"})  # the shell's working folders
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_TRUNCATED_FROM = 12  # a secret this long is also masked when shown cut short ("abcd...")
# metadata.bgkit fields bgkit writes itself from its own vocabulary: never masked, so a
# secret that happens to be an ordinary word ("succeeded") cannot blank the outcome.
_OWN_FIELDS = ("schema", "run_id", "step", "outcome", "started_at", "finished_at",
               "duration_s", "front_door", "pipeline_id", "bgkit_version")


def looks_secret(name: str) -> bool:
    """True for a name that suggests a secret: it contains secret, passw(or)d, passcode,
    passphrase, token, credential, private, privkey, sshpass or dbpass anywhere, or the
    word key, apikey, pass, pwd, pin, auth or authorization (``api_key``,
    ``OVH_CONSUMER_KEY``, ``dbPass``, ``MYSQL_PWD``; not ``monkey``, ``keyboard`` nor the
    shell's ``PWD``)."""
    if name in _NOT_SECRET:
        return False
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
        settings = (config.lb.ovh_cloud_lb if config.lb.provider == "ovh-cloud-lb"
                    else config.lb.ovh_iplb)
        if settings and settings.config_file:
            ovh_conf = config.resolve(settings.config_file)
        identity = config.identity_file
    found = secret_values(ovh_conf=ovh_conf, identity_file=identity)
    if config is not None:
        found |= aws_credential_values(config)
    if notebooks_dir is not None:
        found |= secret_values(environ={}, ovh_conf=notebooks_dir / "ovh.conf")
    return found


_AWS_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token",
             "aws_security_token")


def aws_credential_values(config: Config) -> set[str]:
    """The keys in the AWS shared credentials and config files an ``s3://`` lock or
    archive of ``config`` would use (``[lock]``/``[runs]`` ``credentials_file``,
    ``AWS_SHARED_CREDENTIALS_FILE``, ``AWS_CONFIG_FILE``, ``~/.aws/``); none when neither
    is in object storage. (The ``AWS_*`` variables are secret-looking names: always
    scrubbed.)"""
    tables = [table for table, url in ((config.lock, config.lock_url),
                                       (config.runs, config.runs_url or ""))
              if url.startswith("s3://")]
    if not tables:
        return set()
    home = Path.home() / ".aws"
    paths = {Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / "credentials"),
             Path(os.environ.get("AWS_CONFIG_FILE") or home / "config")}
    paths |= {config.resolve(str(Path(table.credentials_file).expanduser()))
              for table in tables if table.credentials_file}
    values: set[str] = set()
    for path in paths:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path)
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for section in parser.sections():
            values |= {parser[section][key].strip() for key in _AWS_KEYS
                       if key in parser[section]}
    return {value for value in values if len(value) >= MIN_LENGTH}


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
    by ``***`` in strings and in keys; and how many were. A list of lines as nbformat
    stores a multi-line string is scrubbed as the one string it is."""
    if not secrets:
        return value, 0
    return _walk(value, _pattern(secrets))


def notebook_scrub(nb: Mapping[str, Any], secrets: set[str]) -> tuple[dict[str, Any], int]:
    """A notebook (as JSON) scrubbed as a reader would see it: consecutive outputs of the
    same stream are joined first (a secret printed in two writes is one text), and
    bgkit's own metadata words are kept."""
    joined = {**nb, "cells": [_joined_streams(cell) for cell in nb.get("cells", [])]}
    cleaned, count = scrub(joined, secrets)
    own = nb.get("metadata", {}).get("bgkit", {})
    kept = cleaned.get("metadata", {}).get("bgkit")
    if isinstance(own, Mapping) and isinstance(kept, dict):
        kept.update({key: own[key] for key in _OWN_FIELDS if key in own})
    return cleaned, count


def _joined_streams(cell: Mapping[str, Any]) -> dict[str, Any]:
    outputs: list[Any] = []
    for output in cell.get("outputs", []) or []:
        previous = outputs[-1] if outputs else None
        if (isinstance(output, Mapping) and output.get("output_type") == "stream"
                and isinstance(previous, dict) and previous.get("output_type") == "stream"
                and previous.get("name") == output.get("name")):
            previous["text"] = _text(previous.get("text")) + _text(output.get("text"))
            continue
        outputs.append(dict(output) if isinstance(output, Mapping) else output)
    return {**cell, "outputs": outputs} if "outputs" in cell else dict(cell)


def _text(value: object) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _pattern(secrets: set[str]) -> re.Pattern[str]:
    forms = {form for secret in secrets for form in _escaped_forms(secret)}
    return re.compile("|".join(re.escape(s) for s in sorted(forms, key=len, reverse=True)))


def _escaped_forms(secret: str) -> set[str]:
    """The secret as written in text that quoted or encoded it (JSON, repr, ascii(), the
    repr of its UTF-8 bytes, HTML) and, when long, cut short with an ellipsis as pandas
    and reprs show long values."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             repr(secret)[1:-1], ascii(secret)[1:-1], repr(secret.encode())[2:-1],
             html.escape(secret), html.escape(secret, quote=False)}
    if len(secret) >= _TRUNCATED_FROM:
        forms |= {secret[:cut] + ellipsis for cut in range(8, len(secret))
                  for ellipsis in ("...", "…")}
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
        if _split_lines(value):  # one multi-line string, stored as its lines
            cleaned, count = pattern.subn(MASK, "".join(value))
            return cleaned.splitlines(keepends=True), count
        results = [_walk(item, pattern) for item in value]
        return [item for item, _ in results], sum(count for _, count in results)
    return value, 0


def _split_lines(value: list[Any]) -> bool:
    """nbformat's form of a multi-line string: 2+ strings, each but the last ending in a
    newline."""
    return len(value) > 1 and all(isinstance(item, str) for item in value) and \
        all(item.endswith("\n") for item in value[:-1])
