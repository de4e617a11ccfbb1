"""Run one notebook step with papermill and archive it, honestly and without secrets.

    runs/<YYYY>/<MM>/<YYYYMMDDTHHMMSSZ>_<step>_<run_id>.ipynb

1. The parameters are checked against the notebook's declarations (names, types; no
   secret-like names; ``interactive`` is never on headless) before anything runs.
2. The notebook executes into a private file outside the archive (see
   :mod:`bgkit.runbook.staging`), on a kernel of the runner's own interpreter.
3. A run **succeeds** only when every code cell ran and the step recorded ``succeeded``
   as its outcome; anything else is archived with its true reason: a cell that raised, a
   cell never reached (``sys.exit()``), no outcome recorded, a cell or IOPub timeout, a
   dead kernel, a stop by SIGTERM or SIGINT (after the running cell finished its safety
   path).
4. The record is scrubbed of secrets, then published write-once into the archive and
   entered into the hash-chained index.

A run whose runner was killed outright is finalised as ``interrupted`` by the next
``bgkit run`` / ``bgkit release`` / ``bgkit runs list`` (:func:`recover_interrupted`).
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bgkit.config import Config
from bgkit.errors import SecretParameterError, StepFailed, UsageError
from bgkit.identity import git_info, operator
from bgkit.runbook import index, notebooks, staging
from bgkit.runbook.backends import Archive, LocalArchive, open_archive
from bgkit.runbook.parameters import Declared, convert_text, declared_parameters, typed_value
from bgkit.words import Outcome

__all__ = ["RESERVED_PARAMETERS", "Recovery", "RunResult", "archive_path", "cli_parameters",
           "looks_secret", "publish_run", "recover_interrupted", "run_metadata", "run_step"]

RESERVED_PARAMETERS = ("run_id",)
HEADLESS_OFF = ("interactive",)  # a headless run never waits for a click
# A cell that raised one of these stopped on the operator's input (a parameter's value,
# bgkit.toml), before any change: the run is archived, and exits 2 like the CLI's own.
USAGE_ERRORS = frozenset({"UsageError", "ConfigError"})

# After SIGTERM/SIGINT the running cell may take [switch].timeout_s (a switch-back) plus
# this margin (reading the load balancer back) to finish its own safety path.
GRACE_MARGIN_S = 10.0
# How often the private record is saved while a long cell prints (papermill doubles it
# when a save takes over a quarter of it): little is lost when the runner is killed.
AUTOSAVE_S = 2
SUCCEEDED, FAILED, RUNNING, INTERRUPTED = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.RUNNING,
                                           Outcome.INTERRUPTED)
RUN_ID_ENV = "BGKIT_RUN_ID"  # set in a kernel that `bgkit run` started: the run is the record


@dataclass(frozen=True, slots=True)
class RunResult:
    """One archived run: where it is, how it ended, and the archive's head after it."""

    run_id: str
    step: str
    path: Path
    outcome: str
    reason: str | None
    duration_s: float
    head: str = ""  # the index's head hash once this run was entered
    keyed_head: str | None = None  # its HMAC, when BGKIT_ARCHIVE_KEY is set

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCEEDED


def looks_secret(name: str) -> bool:
    """True for parameter names that suggest a secret (key, secret, token, password...)."""
    from bgkit.runbook.scrub import looks_secret as secret_name

    return secret_name(name)


def cli_parameters(source: Path, *, typed: list[tuple[str, str]],
                   raw: list[tuple[str, str]]) -> dict[str, object]:
    """Command-line values (``-p NAME VALUE`` typed by declaration, ``-r NAME VALUE`` raw
    text) as Python values for :func:`run_step`.

    Raises:
        UsageError: a value does not fit its declared type, ``-r`` names a parameter that
            is not text, a name is given twice, or the name is unknown.
    """
    declared = declared_parameters(source)
    values: dict[str, object] = {}
    for flag, pairs in (("-p", typed), ("-r", raw)):
        for name, text in pairs:
            if name in values:
                raise UsageError(f"parameter {name} is given twice")
            spec = declared.get(name)
            if spec is None:
                values[name] = text  # _check_parameters names it with the valid ones
            elif flag == "-r" and spec.type_name != "str":
                raise UsageError(f"-r {name}: -r passes raw text, but {name} is a "
                                 f"{spec.type_name}; use -p {name} VALUE "
                                 f"({spec.accepted()})")
            else:
                values[name] = convert_text(spec, text)
    return values


def run_step(step: str, *, config: Config, parameters: Mapping[str, Any] | None = None,
             notebooks_dir: Path | None = None, runs_dir: Path | None = None,
             progress: bool = True, pipeline_id: str | None = None) -> RunResult:
    """Execute ``notebooks/<step>.ipynb`` and archive it.

    Returns the result of a successful run.

    Raises:
        SecretParameterError: a parameter name looks like a secret (nothing runs).
        UsageError: unknown step or parameter, a value of the wrong type, or
            ``interactive=True`` (nothing runs).
        StepFailed: the run was archived but did not succeed; ``run_path`` points at it.
    """
    source = notebooks.find(step, notebooks_dir)
    declared = declared_parameters(source)
    given = _check_parameters(source, declared, dict(parameters or {}))
    if "config_path" in declared and "config_path" not in given:
        given["config_path"] = str(config.path)
    for name in HEADLESS_OFF:
        if name in declared:
            given[name] = False  # papermill has no one to click a button
    archive = open_archive(config, runs_dir=runs_dir)
    recover_interrupted(archive, config=config)

    run_id = secrets.token_hex(6)
    started = datetime.now(UTC)
    name = archive_path(Path(), started, source.stem, run_id).as_posix()
    staged = staging.stage(archive.folder, archive_name=name, run_id=run_id, step=source.stem,
                           source=source, config=config.path, started_at=started.isoformat())
    metadata = _metadata(config, source, run_id, started, pipeline_id)
    begun = time.monotonic()
    if "run_id" in declared:
        given["run_id"] = run_id
    outcome, reason, kernel, usage = _execute(source, staged.notebook_path, given, metadata,
                                              run_id=run_id, config=config, progress=progress)
    duration = time.monotonic() - begun
    nb = _read_or_source(staged.notebook_path, source, metadata)
    nb.metadata.setdefault("bgkit", metadata)["kernel"] = kernel
    result = _publish(archive, staged, nb, outcome=outcome, reason=reason,
                      duration_s=duration, config=config,
                      already_scrubbed=staging.PrivateOutput.scrubbed)
    if not result.ok:
        raise StepFailed(f"{source.stem} run {run_id} {outcome}: {reason}\n"
                         f"  record: {result.path}", run_path=result.path, outcome=outcome,
                         head=result.head, keyed_head=result.keyed_head, usage=usage)
    return result


def archive_path(archive: Path, started: datetime, step: str, run_id: str) -> Path:
    """``<archive>/<YYYY>/<MM>/<YYYYMMDDTHHMMSSZ>_<step>_<run_id>.ipynb``."""
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    folder = archive / started.strftime("%Y") / started.strftime("%m")
    return folder / f"{stamp}_{step}_{run_id}.ipynb"


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :func:`recover_interrupted` did: runs it archived, and what it left alone."""

    archived: tuple[RunResult, ...]
    skipped: tuple[str, ...]  # one sentence each


def recover_interrupted(archive: Archive | Path, *,
                        config: Config | None = None) -> Recovery:
    """Finalise every staged run of ``archive`` (or of the archive folder given) whose
    runner is gone: scrub it, archive it as ``interrupted`` with what is known of where it
    stopped, and index it. Runs whose runner still runs are left alone; nothing here ever
    stops the command that calls it (a staged run it cannot finish is reported in
    ``skipped``)."""
    archive = LocalArchive(archive) if isinstance(archive, Path) else archive
    archived: list[RunResult] = []
    skipped = [f"{path.name}: {problem}" for path, problem in
               staging.ignored(archive.folder)]
    for staged in staging.pending(archive.folder):
        if staging.runner_alive(staged):
            continue
        try:
            result = _recover(archive, staged, config)
        except Exception as error:  # one bad entry must never break every later command
            skipped.append(f"{staged.archive_name}: {type(error).__name__}: {error}")
            continue
        if isinstance(result, str):
            skipped.append(result)
        elif result is not None:
            archived.append(result)
    return Recovery(tuple(archived), tuple(skipped))


def _recover(archive: Archive, staged: staging.StagedRun,
             config: Config | None) -> RunResult | str | None:
    _remove_kernel_folders(staged.run_id)
    digest = archive.published_sha256(staged.archive_name)
    if digest is not None:  # published, then killed before the index or clean-up
        staged.discard()
        if digest != staged.published_sha256:
            return (f"{staged.archive_name}: a file is archived under this run's name but it "
                    "is not the one its runner published; left out of the index")
        archive.index_published(staged.archive_name)
        return None
    nb = _read_or_source(staged.notebook_path, Path(staged.source),
                         {"run_id": staged.run_id, "step": staged.step,
                          "started_at": staged.started_at})
    reason = _interrupted_reason(nb, staged)
    owner = config if config is not None else _config_or_none(Path(staged.config))
    return _publish(archive, staged, nb, outcome=INTERRUPTED, reason=reason,
                    duration_s=None, config=owner)


def _remove_kernel_folders(run_id: str) -> None:
    """The private IPC folders a killed runner's kernel left in the temp folder."""
    prefix = staging.kernel_folder_prefix(run_id)
    for folder in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        shutil.rmtree(folder, ignore_errors=True)


def _publish(archive: Archive, staged: staging.StagedRun, nb: Any, *, outcome: str,
             reason: str | None, duration_s: float | None, config: Config | None,
             already_scrubbed: int = 0) -> RunResult:
    text = _final_text(nb, staged.archive_name, outcome=outcome, reason=reason,
                       duration_s=duration_s, config=config, already_scrubbed=already_scrubbed)
    staged = staged.with_digest(hashlib.sha256(text.encode()).hexdigest())
    result = _publish_text(archive, staged.archive_name, text, outcome=outcome,
                           reason=reason, duration_s=duration_s)
    staged.discard()
    return result


def publish_run(archive: Archive | Path, name: str, nb: Any, *, outcome: str,
                reason: str | None, duration_s: float | None, config: Config | None,
                already_scrubbed: int = 0) -> RunResult:
    """Finalise ``nb`` (outcome, banner, secrets scrubbed), publish it write-once into
    ``archive`` (or the archive folder given) at ``name`` and enter it into the index; the
    archived run."""
    text = _final_text(nb, name, outcome=outcome, reason=reason, duration_s=duration_s,
                       config=config, already_scrubbed=already_scrubbed)
    target = LocalArchive(archive) if isinstance(archive, Path) else archive
    return _publish_text(target, name, text, outcome=outcome, reason=reason,
                         duration_s=duration_s)


def _final_text(nb: Any, name: str, *, outcome: str, reason: str | None,
                duration_s: float | None, config: Config | None, already_scrubbed: int) -> str:
    import nbformat

    if "papermill" in nb.metadata:  # not the private file's path: where it is archived
        nb.metadata.papermill["output_path"] = name
    final = notebooks.finalise(nb, outcome=outcome, reason=reason, duration_s=duration_s,
                               secrets=_secrets(config), already_scrubbed=already_scrubbed)
    return str(nbformat.writes(final))


def _publish_text(archive: Archive, name: str, text: str, *, outcome: str,
                  reason: str | None, duration_s: float | None) -> RunResult:
    import json

    meta = json.loads(text).get("metadata", {}).get("bgkit", {})
    path, entry = archive.publish(name, text, release=meta.get("release"))
    return RunResult(run_id=str(meta.get("run_id", "")), step=str(meta.get("step", "")),
                     path=path, outcome=outcome, reason=reason, duration_s=duration_s or 0.0,
                     head=entry.hash, keyed_head=index.keyed(entry.hash))


def _interrupted_reason(nb: Any, staged: staging.StagedRun) -> str:
    running = [i for i, cell in enumerate(nb.cells)
               if cell.metadata.get("papermill", {}).get("status") == "running"]
    where = f"during {notebooks.cell_label(nb, running[-1])}" if running else \
        "before its record was complete"
    if running:
        cell = nb.cells[running[-1]]
        cell.metadata["papermill"]["status"] = "failed"
        cell.setdefault("outputs", []).append(_interrupted_output(staged))
    return (f"the runner (pid {staged.runner_pid} on {staged.host}) stopped without "
            f"finishing the record {where}; finalised by {operator()} at "
            f"{datetime.now(UTC).isoformat(timespec='seconds')}")


def _interrupted_output(staged: staging.StagedRun) -> Any:
    from nbformat.v4 import new_output

    text = f"the runner (pid {staged.runner_pid}) was killed while this cell ran"
    return new_output("error", ename="RunnerKilled", evalue=text,
                      traceback=[f"RunnerKilled: {text}"])


def _read_or_source(path: Path, source: Path, metadata: dict[str, Any]) -> Any:
    """The executed notebook at ``path``; the step's source notebook when nothing
    readable was written there (execution never began, or a write was cut short); an empty
    notebook saying so when the source is gone too (a CI checkout removed)."""
    import nbformat

    try:
        nb = notebooks.read(path)
    except Exception:  # empty, cut short or missing: the source stands in, honestly
        try:
            nb = notebooks.read(source)
        except Exception:
            nb = nbformat.v4.new_notebook()
            nb.cells = [nbformat.v4.new_markdown_cell(f"# {metadata.get('step', 'run')}")]
        nb.metadata["bgkit"] = {**metadata, "partial_record": "unreadable or never written"}
    nb.metadata.setdefault("bgkit", dict(metadata))
    return nb


def run_metadata(config: Config, *, step: str, run_id: str, started: datetime,
                 folder: Path) -> dict[str, Any]:
    """``metadata.bgkit`` of a run starting now: who, what, with which bgkit and git
    commit (of ``folder``), under which config."""
    info = git_info(folder)
    return {
        "schema": 1, "run_id": run_id, "step": step, "operator": operator(),
        "bgkit_version": _bgkit_version(), "git": {"commit": info.commit, "dirty": info.dirty},
        "config": str(config.path), "started_at": started.isoformat(), "outcome": RUNNING,
    }


def _metadata(config: Config, source: Path, run_id: str, started: datetime,
              pipeline_id: str | None) -> dict[str, Any]:
    metadata = run_metadata(config, step=source.stem, run_id=run_id, started=started,
                            folder=source.parent)
    if pipeline_id:
        metadata["pipeline_id"] = pipeline_id
    return metadata


def _check_parameters(source: Path, declared: dict[str, Declared],
                      given: dict[str, Any]) -> dict[str, Any]:
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
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise UsageError(f"{source.name} has no parameter(s) {', '.join(unknown)}; "
                         f"it takes: {', '.join(sorted(declared)) or 'none'}")
    for name in HEADLESS_OFF:
        if given.get(name) not in (None, False):
            raise UsageError(f"{name}={given[name]!r}: a headless run has no one to click a "
                             f"button; approve with the step's own parameter instead "
                             f"(e.g. -p approve true)")
    return {name: typed_value(declared[name], value) for name, value in given.items()}


def _execute(source: Path, path: Path, parameters: dict[str, Any], metadata: dict[str, Any],
             *, run_id: str, config: Config,
             progress: bool) -> tuple[str, str | None, dict[str, str], bool]:
    """Run the notebook: (outcome, reason, the kernel's identity, whether a cell stopped
    on bad usage or configuration: a UsageError or ConfigError, exit 2)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from bgkit.runbook import engine

    engine.register()
    staging.PrivateOutput.register(_secrets(config))
    control = engine.RunControl(grace_s=config.switch.timeout_s + GRACE_MARGIN_S,
                                iopub_timeout_s=config.runs.iopub_timeout_s,
                                expected_kernel=expected_kernel(),
                                kernel_env={RUN_ID_ENV: run_id}, run_id=run_id)
    try:
        nb = papermill.execute_notebook(
            str(source), staging.PRIVATE_SCHEME + str(path), parameters=parameters,
            engine_name=engine.ENGINE_NAME, kernel_name="python3", language="python",
            cwd=str(source.parent),
            execution_timeout=int(config.runs.cell_timeout_s), progress_bar=progress,
            request_save_on_cell_execute=True, autosave_cell_every=AUTOSAVE_S,
            bgkit_metadata=metadata, control=control)
    except PapermillExecutionError as error:
        usage = error.ename in USAGE_ERRORS and not control.stop_requested()
        return FAILED, _raised_reason(error, control, path), control.kernel, usage
    except engine.StepAborted as error:
        return FAILED, error.reason, control.kernel, False
    except Exception as error:  # kernel missing, notebook unreadable...: still archive why
        return FAILED, f"{type(error).__name__}: {error}", control.kernel, False
    return (*_judge(nb, control), control.kernel, False)


def _judge(nb: Any, control: Any) -> tuple[str, str | None]:
    """A run that raised nothing: did every cell run, and did the step say it succeeded?"""
    missing = notebooks.incomplete_reason(nb)
    if control.stop_requested():
        return FAILED, (f"the runner received {control.signal_name}"
                        + (f"; {missing}" if missing else " after the last cell"))
    if missing:
        return FAILED, missing
    recorded = notebooks.recorded_outcome(nb)
    if recorded is None:
        return FAILED, ("every cell ran but the step recorded no outcome (a step notebook "
                        "must record one: bgkit.record('outcome', ...))")
    outcome, reason = recorded
    if outcome in (RUNNING, INTERRUPTED):
        return FAILED, (f"the step recorded the outcome {outcome!r}, which only the runner "
                        "gives")
    return outcome, reason


def _raised_reason(error: Any, control: Any, path: Path) -> str:
    nb = notebooks.without_papermill_markers(notebooks.read(path))
    where = notebooks.cell_label(nb, error.cell_index) if error.cell_index is not None \
        and error.cell_index < len(nb.cells) else "a cell"
    if control.stop_requested():
        waited = time.monotonic() - (control.signalled_at or time.monotonic())
        return (f"the runner received {control.signal_name} during {where}; the kernel was "
                f"interrupted and the cell ended ({error.ename}) {waited:.1f} s later")
    return f"{where} raised {error.ename}: {error.evalue}"


def expected_kernel() -> dict[str, str]:
    """The interpreter and bgkit a run's kernel must report: the runner's own."""
    import bgkit

    return {"python": sys.executable, "bgkit_version": _bgkit_version(),
            "bgkit_path": str(Path(bgkit.__file__).parent)}


def _bgkit_version() -> str:
    from bgkit import __version__

    return __version__


def _config_or_none(path: Path) -> Config | None:
    from bgkit.config import load_config
    from bgkit.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError:
        return None


def _secrets(config: Config | None) -> set[str]:
    from bgkit.runbook.scrub import archive_secrets

    return archive_secrets(config, notebooks_dir=notebooks.default_dir())
