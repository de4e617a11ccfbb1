"""Host config files: ``[[service.files]]`` templates rendered for one host (pure).

A template is Jinja2 text with ``StrictUndefined``: it may use exactly the placeholders
of ``[service].args`` (``{{ address }}``, ``{{ port }}``, ``{{ shared }}``...), each a
string. :func:`check_template` runs at ``config check`` (and every load of bgkit.toml),
so an undefined name fails there, never on a host; :func:`render_file` renders one
host's copy, and :func:`file_digest` is the sha256 a deploy compares and records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import jinja2
from jinja2 import meta

from bgkit._validators import SERVICE_PLACEHOLDERS

__all__ = ["check_template", "file_digest", "render_file"]

MAX_TEMPLATE_BYTES = 1 << 20


def _environment() -> jinja2.Environment:
    # Config files, not HTML: autoescaping would corrupt them.
    return jinja2.Environment(  # noqa: S701
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _read(path: Path) -> str:
    if path.stat().st_size > MAX_TEMPLATE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_TEMPLATE_BYTES >> 20} MiB")
    return path.read_text(encoding="utf-8")


def check_template(path: Path) -> str | None:
    """What is wrong with the template at ``path``, or None when it renders for any host."""
    try:
        text = _read(path)
    except FileNotFoundError:
        return f"{path} does not exist (templates are relative to bgkit.toml)"
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return f"cannot read {path}: {error}"
    environment = _environment()
    try:
        unknown = sorted(meta.find_undeclared_variables(environment.parse(text))
                         - set(SERVICE_PLACEHOLDERS))
        if unknown:
            known = ", ".join(SERVICE_PLACEHOLDERS)
            return (f"{path.name} uses undefined variable(s) {', '.join(unknown)}; a "
                    f"template may use only {known} (the placeholders of [service].args)")
        environment.from_string(text).render({key: key for key in SERVICE_PLACEHOLDERS})
    except jinja2.TemplateError as error:
        line = getattr(error, "lineno", None)
        where = f" line {line}" if line else ""
        return f"{path.name}{where}: {type(error).__name__}: {error}"
    return None


def render_file(path: Path, values: Mapping[str, str]) -> str:
    """The template at ``path`` rendered with one host's placeholder ``values``.

    Raises:
        ValueError: the template cannot be read or rendered (``check_template`` says why).
    """
    try:
        return _environment().from_string(_read(path)).render(dict(values))
    except (OSError, UnicodeDecodeError, jinja2.TemplateError) as error:
        raise ValueError(f"{path}: {error}") from error


def file_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
