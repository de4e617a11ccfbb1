"""bgkit: zero-downtime blue-green deployments of compiled C services.

The public surface is small and pinned by a test; everything else is reached
through its module (``bgkit.config``, ``bgkit.artifact``, ``bgkit.runbook``...).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bgkit")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

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
