"""Run one notebook step with papermill into the write-once run archive.

    runs/<YYYY>/<MM>/<YYYYMMDDTHHMMSSZ>_<step>_<run_id>.ipynb

The archived notebook carries ``metadata.bgkit``: run id, step, operator, bgkit
version, git commit, start and end, and an honest ``outcome`` with its ``reason``.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bgkit.config import Config
from bgkit.errors import SecretParameterError, StepFailed, UsageError
from bgkit.identity import git_info, operator
from bgkit.runbook import index, notebooks

__all__ = ["RESERVED_PARAMETERS", "RunResult", "looks_secret", "run_step"]

RESERVED_PARAMETERS = ("run_id",)
_SECRET = re.compile(r"key|secret|token|passw|credential|private", re.IGNORECASE)
SUCCEEDED, FAILED, RUNNING = "succeeded", "failed", "running"


@dataclass(frozen=True, slots=True)
class RunResult:
    """One archived run: where it is and how it ended."""

    run_id: str
    step: str
    path: Path
    outcome: str
    reason: str | None
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCEEDED


def looks_secret(name: str) -> bool:
    """True for parameter names that suggest a secret (key, secret, token, password...)."""
    return bool(_SECRET.search(name))


def run_step(step: str, *, config: Config, parameters: Mapping[str, Any] | None = None,
             notebooks_dir: Path | None = None, runs_dir: Path | None = None,
             progress: bool = True, pipeline_id: str | None = None) -> RunResult:
    """Execute ``notebooks/<step>.ipynb`` and archive it.

    Returns the result of a successful run.

    Raises:
        SecretParameterError: a parameter name looks like a secret (nothing runs).
        UsageError: unknown step or parameter (nothing runs).
        StepFailed: the run was archived but did not succeed; ``run_path`` points at it.
    """
    source = notebooks.find(step, notebooks_dir)
    given = dict(parameters or {})
    _check_parameters(source, given)
    declared = notebooks.parameter_names(source)
    if "config_path" in declared and "config_path" not in given:
        given["config_path"] = str(config.path)
    if "interactive" in declared and "interactive" not in given:
        given["interactive"] = False  # papermill has no one to click a button

    run_id = secrets.token_hex(6)
    started = datetime.now(UTC)
    archive = runs_dir or config.runs_dir
    path = archive_path(archive, started, source.stem, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x"):  # reserve the name; an archived run is never overwritten
        pass
    metadata = {
        "schema": 1,
        "run_id": run_id,
        "step": source.stem,
        "operator": operator(),
        "bgkit_version": _bgkit_version(),
        "git": _git_metadata(source.parent),
        "config": str(config.path),
        "started_at": started.isoformat(),
        "outcome": RUNNING,
    }
    if pipeline_id:
        metadata["pipeline_id"] = pipeline_id
    begun = time.monotonic()
    outcome, reason = _execute(source, path, {**given, "run_id": run_id}, metadata,
                               config=config, progress=progress)
    duration = time.monotonic() - begun
    notebooks.finalise(path, outcome=outcome, reason=reason, duration_s=duration,
                       secrets=_secrets(config))
    index.append(archive, path)
    result = RunResult(run_id=run_id, step=source.stem, path=path, outcome=outcome,
                       reason=reason, duration_s=duration)
    if not result.ok:
        raise StepFailed(f"{source.stem} run {run_id} {outcome}: {reason}\n  record: {path}",
                         run_path=path, outcome=outcome)
    return result


def archive_path(archive: Path, started: datetime, step: str, run_id: str) -> Path:
    """``<archive>/<YYYY>/<MM>/<YYYYMMDDTHHMMSSZ>_<step>_<run_id>.ipynb``."""
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    folder = archive / started.strftime("%Y") / started.strftime("%m")
    return folder / f"{stamp}_{step}_{run_id}.ipynb"


def _check_parameters(source: Path, given: Mapping[str, Any]) -> None:
    secret = sorted(name for name in given if looks_secret(name))
    if secret:
        raise SecretParameterError(
            f"refused parameter(s) {', '.join(secret)}: names like key, secret, token or "
            "password look like secrets, and parameters are written into the archived "
            "notebook. Secrets are read inside bgkit from OVH_* variables, ovh.conf and "
            "your SSH agent.")
    reserved = sorted(name for name in given if name in RESERVED_PARAMETERS)
    if reserved:
        raise UsageError(f"parameter(s) {', '.join(reserved)} are set by bgkit itself")
    declared = notebooks.parameter_names(source)
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise UsageError(f"{source.name} has no parameter(s) {', '.join(unknown)}; "
                         f"it takes: {', '.join(sorted(declared)) or 'none'}")


def _execute(source: Path, path: Path, parameters: dict[str, Any], metadata: dict[str, Any],
             *, config: Config, progress: bool) -> tuple[str, str | None]:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from bgkit.runbook import engine

    engine.register()
    try:
        with engine.sigterm_interrupts():
            papermill.execute_notebook(
                str(source), str(path), parameters=parameters, engine_name=engine.ENGINE_NAME,
                kernel_name=config.runs.kernel, cwd=str(source.parent),
                execution_timeout=int(config.runs.cell_timeout_s), progress_bar=progress,
                request_save_on_cell_execute=True, bgkit_metadata=metadata,
            )
    except PapermillExecutionError as error:
        return FAILED, f"cell {error.cell_index} raised {error.ename}: {error.evalue}"
    except engine.StepAborted as error:
        return FAILED, error.reason
    except engine.RunInterrupted as error:
        return FAILED, f"the runner was stopped ({error}) outside a cell"
    except KeyboardInterrupt:
        notebooks.ensure_written(path, source, metadata)
        return FAILED, "the runner was interrupted (SIGINT)"
    except Exception as error:  # kernel missing, notebook unreadable...: still archive why
        notebooks.ensure_written(path, source, metadata)
        return FAILED, f"{type(error).__name__}: {error}"
    return notebooks.recorded_outcome(path) or (SUCCEEDED, None)


def _git_metadata(folder: Path) -> dict[str, Any]:
    info = git_info(folder)
    return {"commit": info.commit, "dirty": info.dirty}


def _bgkit_version() -> str:
    from bgkit import __version__

    return __version__


def parse_value(text: str) -> Any:
    """A ``-p NAME VALUE`` value as papermill's CLI reads it: bool, None, int, float or str."""
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    if text in ("None", "none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text



def _secrets(config: Config) -> set[str]:
    from bgkit.runbook.scrub import secret_values

    settings = config.lb.ovh_iplb
    ovh_conf = config.resolve(settings.config_file) if settings and settings.config_file \
        else None
    found = secret_values(ovh_conf=ovh_conf, identity_file=config.identity_file)
    # The kernel runs in the notebooks' folder, where python-ovh would read an ovh.conf too.
    return found | secret_values(environ={}, ovh_conf=notebooks.default_dir() / "ovh.conf")
