"""Every error bgkit raises on purpose, in one tree.

    BgkitError                  anything bgkit reports to a user (exit 1)
    ├── UsageError              bad command-line or notebook input (exit 2)
    │   └── SecretParameterError  a parameter whose name looks like a secret
    ├── ConfigError             bgkit.toml is missing, unreadable or invalid (exit 2)
    ├── BuildError              configure, compile, ctest or install failed (exit 1)
    ├── RecordError             a value given to record() cannot be archived (exit 1)
    ├── StepFailed              an archived notebook run did not succeed (exit 1)
    ├── LoadBalancerError       the load balancer refused, failed or timed out (exit 1)
    │   ├── ApplyPending        a change was made but its application is still in progress
    │   └── SplitUnsupported    the provider cannot split traffic between pools (no canary)
    ├── SandboxError            the local sandbox fleet could not be started or read (exit 1)
    ├── HostError               one host could not be reached or a command on it failed
    ├── DeployError             a deploy failed on some hosts; carries every host's result
    ├── StorageError            the object store (S3) refused, failed or cannot be used
    ├── HookFailed              a pre_* hook failed: its step stopped before any change
    └── LockHeld                someone else holds the deployment lock (exit 1)
        └── LeaseLost           the lock this process held is no longer its own

Foreign errors (subprocess, papermill, nbclient, tomllib, pydantic) are translated
into these at the boundary where they happen, with ``raise ... from``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bgkit.hooks import HookResult

__all__ = [
    "ApplyPending",
    "BgkitError",
    "BuildError",
    "ConfigError",
    "DeployError",
    "HookFailed",
    "HostError",
    "LeaseLost",
    "LoadBalancerError",
    "LockHeld",
    "RecordError",
    "SandboxError",
    "SecretParameterError",
    "SplitUnsupported",
    "StepFailed",
    "StorageError",
    "UsageError",
]


class BgkitError(Exception):
    """Base of every error bgkit raises for a user to read."""


class UsageError(BgkitError):
    """The caller asked for something that cannot be done as asked."""


class SecretParameterError(UsageError):
    """A notebook parameter whose name looks like a secret was refused."""


class ConfigError(BgkitError):
    """bgkit.toml could not be loaded; ``problems`` lists each one."""

    def __init__(self, path: Path | str, problems: Sequence[str]) -> None:
        self.path = str(path)
        self.problems = tuple(problems)
        lines = [f"{self.path}: {problem}" for problem in self.problems]
        super().__init__("\n".join(lines))


class BuildError(BgkitError):
    """A build stage failed; ``output_tail`` holds the end of its output."""

    def __init__(self, stage: str, message: str, output_tail: str = "") -> None:
        self.stage = stage
        self.output_tail = output_tail
        text = f"build failed at {stage}: {message}"
        if output_tail:
            text += f"\n--- last lines of {stage} output ---\n{output_tail}"
        super().__init__(text)


class RecordError(BgkitError, TypeError):
    """record() was given a name or value that cannot be stored as JSON."""


class StepFailed(BgkitError):
    """An archived run ended in any outcome but success; the record says why."""

    def __init__(self, message: str, *, run_path: Path | None = None, outcome: str = "failed",
                 head: str | None = None, keyed_head: str | None = None, usage: bool = False):
        self.run_path = run_path
        self.outcome = outcome
        self.usage = usage  # it stopped on bad usage or configuration (exit 2)
        self.head = head  # the archive index's head once the run was entered
        self.keyed_head = keyed_head
        super().__init__(message)


class LoadBalancerError(BgkitError):
    """The load balancer could not be read or switched; the message says what to do."""


class SplitUnsupported(LoadBalancerError):
    """The load balancer cannot send a share of the traffic to the idle pool without
    changing the live pool's own servers; the message says why (a canary is refused)."""


class ApplyPending(LoadBalancerError):
    """A change was made, and something (an OVH refresh task) may still apply it: the
    live pool is not known until it settles (``LoadBalancer.state(wait_s=...)``)."""


class SandboxError(BgkitError):
    """The local sandbox could not be started, stopped or read."""


class HostError(BgkitError):
    """A host could not be reached, or a command on it failed.

    ``host`` names it (``user@address:port``); ``hint`` says what to do about it.
    """

    def __init__(self, host: str, message: str, *, hint: str = "") -> None:
        self.host = host
        self.hint = hint
        super().__init__(f"{host}: {message}" + (f" ({hint})" if hint else ""))


class DeployError(BgkitError):
    """A deploy stopped; ``results`` holds every host's outcome, failed or not."""

    def __init__(self, message: str, *, results: Sequence[object] = ()) -> None:
        self.results = tuple(results)
        super().__init__(message)


class StorageError(BgkitError):
    """An S3-compatible object store could not be reached, refused a request, or does
    not enforce conditional writes; the message names the bucket and says what to do."""


class HookFailed(BgkitError):
    """A ``pre_*`` hook failed, so its step stopped before changing anything; ``result``
    is its :class:`bgkit.hooks.HookResult`."""

    def __init__(self, message: str, *, result: HookResult) -> None:
        self.result = result
        super().__init__(message)


class LockHeld(BgkitError):
    """The deployment lock is held by someone else; the message says who, since when."""


class LeaseLost(LockHeld):
    """The lease this process held was taken over, released by force or expired: it
    must not change the load balancer any more."""
