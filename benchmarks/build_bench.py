"""Measure the build step and the run archive on this machine.

    .venv/bin/python benchmarks/build_bench.py [--repeat N]

Prints a Markdown table: wall time of `build_release` on the sample service (cold
build folder every time, as bgkit always builds), the time to pack the tarball alone,
and the overhead papermill and the archive add to a build run (`bgkit run 01_build`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bgkit.artifact import build_release  # noqa: E402
from bgkit.config import load_config  # noqa: E402
from bgkit.runbook.runner import run_step  # noqa: E402
from bgkit.tarball import staged_files, write_tarball  # noqa: E402


def config_in(folder: Path) -> Path:
    text = (REPO / "examples/hello-c/bgkit.toml").read_text()
    text = text.replace('source_dir = "."', f'source_dir = "{REPO}/examples/hello-c"')
    text = text.replace('dist_dir = "../../dist"', f'dist_dir = "{folder}/dist"')
    text = text.replace('dir = "../../runs"', f'dir = "{folder}/runs"')
    path = folder / "bgkit.toml"
    path.write_text(text)
    return path


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory() as scratch:
        config = load_config(config_in(Path(scratch)))
        builds = [timed(lambda: build_release(config)) for _ in range(repeat)]
        release = build_release(config)
        shas = [release.sha256, *(build_release(config).sha256 for _ in range(2))]
        stage = Path(scratch) / "stage"
        with tarfile.open(release.artifact) as tar:
            tar.extractall(stage, filter="data")
        (stage / "manifest.json").unlink()
        entries = staged_files(stage)
        packs = [timed(lambda: write_tarball(stage, entries, {}, Path(scratch) / "p.tar.gz"))
                 for _ in range(repeat)]
        runs = [timed(lambda: run_step("01_build", config=config, progress=False))
                for _ in range(repeat)]
    rows = [
        ("`build_release` (configure, compile, ctest, install, package)", builds),
        ("pack the tarball alone", packs),
        ("`bgkit run 01_build` (papermill kernel + build + archive)", runs),
    ]
    print(f"| measure (median of {repeat}, min-max) | seconds |")
    print("|---|---|")
    for label, values in rows:
        print(f"| {label} | {statistics.median(values):.2f} "
              f"({min(values):.2f}-{max(values):.2f}) |")
    print(f"\ndistinct sha256 over {len(shas)} builds of one source: {len(set(shas))}")


if __name__ == "__main__":
    main()
