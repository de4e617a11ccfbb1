"""The public surface of ``bgkit`` is pinned: a change here is a deliberate API change."""

from __future__ import annotations

import bgkit
from bgkit import errors


def test_the_public_names_are_exactly_these() -> None:
    assert sorted(bgkit.__all__) == [
        "BgkitError", "BuildError", "BuildResult", "Config", "ConfigError", "RecordError",
        "RunResult", "SecretParameterError", "StepFailed", "UsageError", "__version__",
        "build_release", "load_config", "record", "run_step",
    ]
    for name in bgkit.__all__:
        assert hasattr(bgkit, name), name


def test_every_error_is_a_bgkit_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.BgkitError), name
