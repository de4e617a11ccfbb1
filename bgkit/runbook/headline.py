"""One run in one headline: who, when, what, on what evidence, and how it ended.

Read from an archived notebook's ``metadata.bgkit`` and its records, for the top of
``bgkit runs html`` (and anything else that names a run in a line). Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bgkit.runbook.notebooks import read_records

__all__ = ["RunHeadline", "run_headline"]


class RunHeadline:
    """The fields a reviewer reads first, each a short line of plain text."""

    def __init__(self, rows: list[tuple[str, str]], title: str) -> None:
        self.rows = rows
        self.title = title

    def as_dict(self) -> dict[str, str]:
        return dict(self.rows)


def run_headline(nb: Any) -> RunHeadline:
    """The headline of the run in ``nb``."""
    meta = dict(nb.metadata.get("bgkit", {}))
    records = {name: item.get("value") for name, item in read_records(nb).items()}
    step = str(meta.get("step") or "?")
    outcome = str(meta.get("outcome") or "?")
    outcome = "interrupted" if outcome == "running" else outcome
    door = meta.get("front_door")
    who = str(meta.get("operator") or "?") + (f" (from {door})" if door else "")
    rows = [("outcome", outcome + (f": {meta['reason']}" if meta.get("reason") else "")),
            ("who", who), ("when", _when(meta.get("started_at"), meta.get("duration_s"))),
            ("what", _what(step, records, nb)), ("release", _release(records, nb))]
    evidence = _evidence(records)
    if evidence:
        rows.append(("evidence", evidence))
    rows = [(name, value) for name, value in rows if value]
    return RunHeadline(rows, f"{step} · {outcome} · {who} · {_when(meta.get('started_at'))}")


def _when(stamp: object, duration: object = None) -> str:
    if not isinstance(stamp, str) or not stamp:
        return ""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    text = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(duration, int | float):
        text += f", {duration:.1f} s"
    return text


def _what(step: str, records: dict[str, Any], nb: Any) -> str:
    switch = records.get("switch")
    if isinstance(switch, dict):
        return (f"{switch.get('action')} from {switch.get('from_pool')} to "
                f"{switch.get('to_pool')}; traffic ended on {switch.get('live_pool')}")
    deploy = records.get("deploy")
    if isinstance(deploy, dict) and deploy.get("pool"):
        return f"deploy to the {deploy.get('pool')} pool (live: {deploy.get('live_pool')})"
    verify = records.get("verify")
    if isinstance(verify, dict):
        return (f"verify the {verify.get('idle_pool')} pool (live: "
                f"{verify.get('live_pool')})")
    build = records.get("build")
    if isinstance(build, dict):
        return "build and package"
    return step


def _release(records: dict[str, Any], nb: Any) -> str:
    for name in ("preview", "deploy", "build"):
        value = records.get(name)
        if isinstance(value, dict) and value.get("release"):
            return str(value["release"])
    preview = records.get("preview")
    if isinstance(preview, dict) and preview.get("version"):
        return f"version {preview['version']}"
    verify = records.get("verify")
    if isinstance(verify, dict) and verify.get("expected_version"):
        return f"version {verify['expected_version']}"
    parameter = nb.metadata.get("papermill", {}).get("parameters", {}).get("release")
    return str(parameter).rsplit("/", 1)[-1].removesuffix(".tar.gz") if parameter else ""


def _evidence(records: dict[str, Any]) -> str:
    parts = []
    gates = records.get("gates")
    if isinstance(gates, list) and gates:
        passed = sum(1 for gate in gates if isinstance(gate, dict)
                     and gate.get("verdict") == "pass")
        parts.append(f"gates {passed}/{len(gates)} pass")
    watch = records.get("watch")
    if isinstance(watch, dict):
        p99 = watch.get("p99_ms")
        p99_text = f"{p99:.1f} ms" if isinstance(p99, int | float) else "-"
        parts.append(f"watch {watch.get('samples')} answers, {watch.get('errors')} failed, "
                     f"{watch.get('wrong_version')} from another release, p99 {p99_text}")
    hosts = records.get("hosts")
    if isinstance(hosts, list) and hosts:
        ok = sum(1 for host in hosts if isinstance(host, dict) and host.get("ok"))
        parts.append(f"{ok}/{len(hosts)} hosts ok")
    return "; ".join(parts)
