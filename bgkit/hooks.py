"""Hooks: commands of the user's, run on this machine around deploy, switch and rollback.

The runbook asks to "plan database migrations carefully, often deploying them before the
application code" and to test Green thoroughly before the switch: a ``pre_deploy`` hook
runs a migration, a ``pre_switch`` hook runs an integration suite against the idle pool.

A hook is an argv list from ``[hooks]`` (no shell), run in bgkit.toml's folder with this
environment besides the caller's own (what the step is about):

==================  ===============================================================
BGKIT_HOOK          the hook's name (``pre_deploy``...)
BGKIT_CONFIG        the bgkit.toml in use
BGKIT_RELEASE       the release id the step is about (empty when unknown)
BGKIT_VERSION       its version (empty when unknown)
BGKIT_POOL          the pool the step acts on: deployed to, switched or rolled back to
BGKIT_LIVE_POOL     the pool live when the hook runs
BGKIT_HOSTS         the addresses of BGKIT_POOL's hosts, space-separated
BGKIT_HOST_URLS     each of those hosts' service URL (``http://<address>:<port>``)
BGKIT_PUBLIC_URL    the load balancer's public address
BGKIT_RUN_ID        the run when under ``bgkit run`` (empty otherwise)
==================  ===============================================================

:func:`run_hook` returns a :class:`HookResult` (exit code, duration, output tail); a hook
that times out is killed with its process group. The tail is redacted before anything
keeps it, and so is the argv kept with it: the values the archive never holds
(:func:`bgkit.runbook.scrub.archive_secrets`), the value of any ``NAME=value`` /
``NAME: value`` / ``"name": "value"`` whose name looks secret (a quoted value whole), the
credentials of an ``Authorization`` header or a ``Bearer`` token, and the password of any
``scheme://user:password@`` URL become ``***``. Ctrl-C or SIGTERM while a hook runs kills
its process group too (it runs in a session of its own, so the signal never reaches it).
:func:`pre_hook` raises :class:`~bgkit.errors.HookFailed` when a ``pre_*`` hook fails, so
its step stops before it changes anything.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from bgkit.errors import HookFailed

if TYPE_CHECKING:
    from bgkit.config import Config
    from bgkit.words import PoolName

__all__ = ["HOOKS", "HookName", "HookResult", "hook_environment", "post_hook", "pre_hook",
           "run_hook"]

HookName = Literal["pre_deploy", "post_deploy", "pre_switch", "post_switch", "post_rollback"]
HOOKS: tuple[HookName, ...] = ("pre_deploy", "post_deploy", "pre_switch", "post_switch",
                               "post_rollback")
TAIL_LINES = 40
REAP_S = 5.0  # after a kill, how long the output pipe is read before it is abandoned
# NAME=value, NAME: value, "name": "value" (JSON); a quoted value runs to its closing
# quote (escaped quotes and the other quote inside it; an unclosed one to the end of the
# line), a bare one to whitespace, a quote or a separator
_ASSIGNMENT = re.compile(
    r"(?P<q>[\"']?)(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)(?P=q)(?P<sep>\s*[=:]\s*)"
    r"(?:(?P<quote>[\"'])(?P<quoted>(?:\\.|(?!(?P=quote))[^\\\n])*)(?P=quote)?"
    r"|(?P<value>[^\s\"',;&]+))")
# An HTTP Authorization header (RFC 9110 11.6.2): the credentials after the scheme
_AUTHORIZATION = re.compile(
    r"(?i)(?P<head>\b(?:proxy-)?authorization[\"']?\s*[=:]\s*[\"']?"
    r"(?:(?:basic|bearer|digest|token|negotiate|aws4-hmac-sha256)\s+)?)(?P<value>[^\s\"']+)")
# a Bearer token: token characters (RFC 6750 2.1) with a digit, 12 or more ("the bearer of
# bad news" is prose)
_BEARER = re.compile(r"(?i)(?P<head>\bbearer\s+)(?P<value>(?=[A-Za-z._~+/=-]*\d)"
                     r"[A-Za-z0-9._~+/=-]{12,})")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]+:)[^\s/@]+(?=@)")
_SCHEMES = {"basic", "bearer", "digest", "token", "negotiate"}


@dataclass(frozen=True, slots=True)
class HookResult:
    """One hook's run: what ran, how it ended, and the end of what it printed."""

    name: str
    argv: tuple[str, ...]
    exit_code: int | None  # None when it could not start or was killed at the timeout
    duration_s: float
    output_tail: str
    problem: str = ""  # why it failed, in words ("" when it succeeded)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.problem

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "argv": list(self.argv), "ok": self.ok}


def hook_environment(config: Config, name: HookName, *, pool: PoolName, live_pool: str,
                     release: str = "", version: str = "") -> dict[str, str]:
    """The ``BGKIT_*`` variables a hook of ``name`` sees (see the module docstring)."""
    hosts = config.pools.get(pool).hosts
    return {
        "BGKIT_HOOK": name, "BGKIT_CONFIG": str(config.path), "BGKIT_RELEASE": release,
        "BGKIT_VERSION": version, "BGKIT_POOL": pool, "BGKIT_LIVE_POOL": live_pool,
        "BGKIT_HOSTS": " ".join(host.address for host in hosts),
        "BGKIT_HOST_URLS": " ".join(_url(host.address, config.service.port) for host in hosts),
        "BGKIT_PUBLIC_URL": config.lb.public_url,
        "BGKIT_RUN_ID": os.environ.get("BGKIT_RUN_ID", ""),
    }


def _url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


def run_hook(config: Config, name: HookName, environment: dict[str, str]) -> HookResult | None:
    """Run the hook ``name`` if ``[hooks]`` sets one (None otherwise); never raises for the
    hook's own failure (see :attr:`HookResult.problem`)."""
    argv = tuple(getattr(config.hooks, name))
    if not argv:
        return None
    shown = tuple(redact(arg, config) for arg in argv)  # argv may carry a password too
    timeout = config.hooks.timeout_s
    started = time.monotonic()
    try:
        process = subprocess.Popen(argv, cwd=config.path.parent, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env={**os.environ, **environment}, start_new_session=True)
    except OSError as error:
        return HookResult(name, shown, None, time.monotonic() - started, "",
                          f"could not start {argv[0]!r}: {error.strerror}")
    try:
        output, _ = process.communicate(timeout=timeout)
        problem = "" if process.returncode == 0 else f"exited with {process.returncode}"
        code: int | None = process.returncode
    except subprocess.TimeoutExpired:
        output = _kill(process)
        problem, code = f"timed out after {timeout:g} s and was killed", None
    except BaseException:  # Ctrl-C, SIGTERM: its own session never hears it, so kill it
        _kill(process)
        raise
    text = output.decode("utf-8", errors="replace")
    tail = redact("\n".join(text.splitlines()[-TAIL_LINES:]), config)
    return HookResult(name, shown, code, time.monotonic() - started, tail, problem)


def _kill(process: subprocess.Popen[bytes]) -> bytes:
    """Kill the hook's process group, then read what it printed for up to ``REAP_S``: a
    process that left the group (``setsid``) may hold the pipe open, and is not waited
    for. Returns the output read."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        output, _ = process.communicate(timeout=REAP_S)
    except subprocess.TimeoutExpired as still:
        output = still.output or b""
        if process.stdout is not None:
            process.stdout.close()
        process.wait()
    return output or b""


def redact(text: str, config: Config | None) -> str:
    """``text`` with every secret it shows replaced by ``***`` (see the module docstring)."""
    from bgkit.runbook.scrub import MASK, archive_secrets, looks_secret, scrub

    def assignment(match: re.Match[str]) -> str:
        value = match["quoted"] if match["quote"] else match["value"]
        if not looks_secret(match["name"]) or value == MASK or value.lower() in _SCHEMES:
            return match[0]
        name = f"{match['q']}{match['name']}{match['q']}{match['sep']}"
        if not match["quote"]:
            return f"{name}{MASK}"
        closed = len(match[0]) == len(name) + len(match["quoted"]) + 2  # both quotes
        return f"{name}{match['quote']}{MASK}{match['quote'] if closed else ''}"

    text = _URL_PASSWORD.sub(lambda match: match["head"] + MASK, text)
    text = _AUTHORIZATION.sub(lambda match: match["head"] + MASK, text)
    text = _BEARER.sub(lambda match: match["head"] + MASK, text)
    text = _ASSIGNMENT.sub(assignment, text)
    scrubbed, _ = scrub(text, archive_secrets(config))
    return str(scrubbed)


def pre_hook(config: Config, name: HookName, environment: dict[str, str]) -> HookResult | None:
    """Run a ``pre_*`` hook; its failure stops the step.

    Raises:
        HookFailed: the hook failed (it carries the :class:`HookResult`).
    """
    result = run_hook(config, name, environment)
    if result is not None and not result.ok:
        tail = f"; its output ended with:\n{result.output_tail}" if result.output_tail else ""
        raise HookFailed(f"the {name} hook {' '.join(result.argv)!r} {result.problem}: "
                         f"nothing was changed{tail}", result=result)
    return result


def post_hook(config: Config, name: HookName,
              environment: dict[str, str]) -> HookResult | None:
    """Run a ``post_*`` hook: its failure is recorded and reported, the step stands."""
    return run_hook(config, name, environment)
