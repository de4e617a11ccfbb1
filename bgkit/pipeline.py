"""``bgkit release``: build -> deploy -> verify -> switch, one archived run per step.

Every run of one pipeline carries the same ``pipeline_id`` in its metadata. The
pipeline stops at the first step that does not succeed; the live pool is untouched by
any step before the switch, and a switch whose watch fails ends with traffic back on the
previous pool (the switch algorithm sees to that). The exit code is the failed step's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from bgkit.config import Config
from bgkit.errors import StepFailed
from bgkit.runbook import notebooks
from bgkit.runbook.runner import RunResult, run_step

__all__ = ["PIPELINE_STEPS", "PipelineResult", "release"]

PIPELINE_STEPS = ("01_build", "02_deploy_green", "03_verify", "04_switch")


@dataclass(slots=True)
class PipelineResult:
    """The runs of one pipeline, in order, and where it stopped (if it did)."""

    pipeline_id: str
    runs: list[RunResult] = field(default_factory=list)
    failed: StepFailed | None = None

    @property
    def ok(self) -> bool:
        return self.failed is None


def release(config: Config, *, approve: bool, version: str = "",
            notebooks_dir: Path | None = None, progress: bool = True) -> PipelineResult:
    """Run the whole pipeline; never raises StepFailed (it is in ``result.failed``)."""
    result = PipelineResult(pipeline_id=secrets.token_hex(6))
    artifact = ""
    for step in PIPELINE_STEPS:
        parameters: dict[str, object] = {}
        if step == "01_build" and version:
            parameters["version"] = version
        if step != "01_build":
            parameters["artifact"] = artifact
        if step == "04_switch":
            parameters["approve"] = approve
        try:
            run = run_step(step, config=config, parameters=parameters,
                           notebooks_dir=notebooks_dir, progress=progress,
                           pipeline_id=result.pipeline_id)
        except StepFailed as failure:
            result.failed = failure
            return result
        result.runs.append(run)
        if step == "01_build":
            artifact = _built_artifact(run)
    return result


def _built_artifact(run: RunResult) -> str:
    build = notebooks.read_records(notebooks.read(run.path)).get("build", {}).get("value")
    if not isinstance(build, dict) or not isinstance(build.get("artifact"), str):
        raise StepFailed(f"{run.step} run {run.run_id} recorded no artifact", run_path=run.path)
    return str(build["artifact"])
