"""bgkit: zero-downtime blue-green deployments of compiled C services.

The public surface is small and pinned by a test; everything else is reached
through its module (``bgkit.config``, ``bgkit.artifact``, ``bgkit.runbook``...).

Importing ``bgkit`` is cheap: each public name is imported from its module when it is
first used (PEP 562), so ``bgkit --help`` does not pay for pandas, nbformat or papermill.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    __version__: str
    from bgkit.artifact import BuildResult, build_release
    from bgkit.config import Config, load_config
    from bgkit.errors import (
        BgkitError,
        BuildError,
        ConfigError,
        RecordError,
        SecretParameterError,
        StepFailed,
        UsageError,
    )
    from bgkit.runbook.record import record
    from bgkit.runbook.runner import RunResult, run_step

_WHERE = {
    "BuildResult": "bgkit.artifact", "build_release": "bgkit.artifact",
    "Config": "bgkit.config", "load_config": "bgkit.config",
    "BgkitError": "bgkit.errors", "BuildError": "bgkit.errors", "ConfigError": "bgkit.errors",
    "RecordError": "bgkit.errors", "SecretParameterError": "bgkit.errors",
    "StepFailed": "bgkit.errors", "UsageError": "bgkit.errors",
    "record": "bgkit.runbook.record",
    "RunResult": "bgkit.runbook.runner", "run_step": "bgkit.runbook.runner",
}

__all__ = [
    "BgkitError",
    "BuildError",
    "BuildResult",
    "Config",
    "ConfigError",
    "RecordError",
    "RunResult",
    "SecretParameterError",
    "StepFailed",
    "UsageError",
    "__version__",
    "build_release",
    "load_config",
    "record",
    "run_step",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bgkit")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = found = _version()
        return found
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'bgkit' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
