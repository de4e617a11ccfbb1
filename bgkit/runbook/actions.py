"""Every action leaves an archived run, whichever front door it came through.

``bgkit run`` archives the executed notebook itself. An action taken any other way — a
button clicked in JupyterLab, a cell run there with ``approve=True``, ``bgkit switch``,
``bgkit rollback`` or ``bgkit deploy`` on the command line — is archived by
:func:`archive_action` when it completes, from the process that did it (the kernel keeps
running when the browser tab is closed). Such a run is a small notebook in the same
archive, indexed like any other: its ``metadata.bgkit`` says who, when and through which
front door (``front_door``), and its outputs hold the same records a notebook run would
(``switch``, ``watch``, ``verify``, ``deploy``...), so ``bgkit runs list/show/html/verify``
read it as they read the rest.

It is a compact JSON notebook rather than an execution of the step notebook: the action has
already happened, and re-running the notebook would take fresh samples instead of
recording the evidence the action was decided on.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from bgkit.config import Config
from bgkit.runbook.backends import open_archive
from bgkit.runbook.record import RECORD_MIME, to_jsonable
from bgkit.runbook.runner import RUN_ID_ENV, RunResult, archive_path, publish_run, run_metadata

if TYPE_CHECKING:
    from bgkit.switch import SwitchOutcome
    from bgkit.verify import VerifyResult

__all__ = ["FRONT_DOORS", "archive_action", "archive_switch", "under_runner"]

FRONT_DOORS = ("jupyterlab", "cli")


def under_runner() -> bool:
    """True inside a kernel that ``bgkit run`` started: that run is already the record."""
    return bool(os.environ.get(RUN_ID_ENV))


def archive_action(config: Config, *, step: str, front_door: str, started: datetime,
                   outcome: str, reason: str | None, summary: str,
                   parameters: Mapping[str, Any] | None = None,
                   records: Mapping[str, object] | None = None) -> RunResult:
    """Archive one completed action as a run of ``step`` (e.g. ``04_switch``).

    ``outcome`` is the run's word (``succeeded`` or why not), ``summary`` a line or two of
    plain text shown on top, ``records`` named values as ``record()`` would store them.

    Raises:
        ValueError: ``front_door`` is not one of :data:`FRONT_DOORS`.
        RecordError: a record cannot be stored as JSON.
    """
    if front_door not in FRONT_DOORS:
        raise ValueError(f"front door {front_door!r}: expected one of {FRONT_DOORS}")
    run_id = secrets.token_hex(6)
    metadata = run_metadata(config, step=step, run_id=run_id, started=started,
                            folder=Path.cwd())
    metadata["front_door"] = front_door
    nb = nbformat.v4.new_notebook()
    nb.metadata["bgkit"] = metadata
    nb.metadata["papermill"] = {"parameters": dict(parameters or {})}
    title = nbformat.v4.new_markdown_cell(
        f"# {step} · from {'JupyterLab' if front_door == 'jupyterlab' else 'the command line'}"
        "\n\nRecorded by bgkit when the action completed; the records below are the "
        "evidence it acted on and what followed.")
    body = nbformat.v4.new_code_cell("# recorded by bgkit: nothing to run")
    body.outputs = [nbformat.v4.new_output("stream", name="stdout", text=summary + "\n")]
    for name, value in (records or {}).items():
        body.outputs.append(_record_output(name, value))
    outcome_value = {"name": "outcome", "kind": "value", "value": outcome}
    body.outputs.append(nbformat.v4.new_output(
        "display_data", data={RECORD_MIME: outcome_value, "text/plain": ""}))
    nb.cells = [title, body]
    name = archive_path(Path(), started, step, run_id).as_posix()
    duration = (datetime.now(UTC) - started).total_seconds()
    return publish_run(open_archive(config), name, nb, outcome=outcome, reason=reason,
                       duration_s=duration, config=config)


def _record_output(name: str, value: object) -> Any:
    """A record as ``record()`` stores it, plus a readable form: a table as escaped HTML,
    anything else as indented JSON."""
    import json

    import pandas as pd

    from bgkit.runbook.evidence import html_table

    kind, payload = to_jsonable(value, where=name)
    stored: dict[str, Any] = {"name": name, "kind": kind, "value": payload}
    data: dict[str, Any] = {RECORD_MIME: stored}
    if isinstance(value, pd.DataFrame):
        stored["columns"] = [str(column) for column in value.columns]
        data["text/html"] = f"<p><b>{name}</b></p>{html_table(value)}"
        data["text/plain"] = f"{name}:\n{value.to_string(index=False)}"
    else:
        data["text/plain"] = f"{name}: {json.dumps(payload, indent=2)}"
    return nbformat.v4.new_output("display_data", data=data)


def archive_switch(config: Config, outcome: SwitchOutcome, *, started: datetime,
                   front_door: str, pins: Mapping[str, str] | None = None,
                   evidence: VerifyResult | None = None) -> RunResult:
    """Archive a switch or rollback (``04_switch`` / ``05_rollback``) with the evidence it
    was decided on (``evidence``, else the outcome's own), the outcome and the watch."""
    judged = evidence if evidence is not None else outcome.evidence
    records: dict[str, object] = {}
    if pins:
        records["preview"] = dict(pins)
    if judged is not None:
        records["verify"] = judged.to_dict()
        records["gates"] = judged.verdict.gate_table()
    records["switch"] = outcome.to_dict()
    if outcome.watch is not None:
        records["watch"] = outcome.watch.to_dict()
    step = "04_switch" if outcome.action == "switch" else "05_rollback"
    parameters = {key: pins[key] for key in ("release", "version") if pins and pins.get(key)}
    return archive_action(
        config, step=step, front_door=front_door, started=started,
        outcome="succeeded" if outcome.exit_code == 0 else outcome.ended,
        reason=outcome.reason, summary=f"{outcome.action}: {outcome.ended} — "
        f"{outcome.reason}", parameters=parameters, records=records)
