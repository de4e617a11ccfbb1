"""Deploy wall time to the idle pool of a sandbox, by fleet size and fan-out.

    .venv/bin/python benchmarks/deploy_bench.py [--sizes 1 10 50] [--repeat 2]

For each size N, a fresh sandbox with N hosts per pool receives the same release on
its idle pool, once sequentially (fan-out 1, like the original runbook's loop) and
once with the default fan-out (10). Prints a Markdown table. Loopback only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bgkit.artifact import build_release  # noqa: E402
from bgkit.config import load_config  # noqa: E402
from bgkit.deploy import deploy  # noqa: E402
from bgkit.sandbox import sandbox_down, sandbox_up  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_ports  # noqa: E402


def one_deploy(scratch: Path, artifact: Path, hosts: int, fanout: int) -> tuple[float, float]:
    """(wall seconds, bgkit's own CPU seconds) of one deploy to a fresh sandbox."""
    state = scratch / f"sbx-{hosts}-{fanout}-{time.monotonic_ns()}"
    app, public, ssh = free_ports(3)
    info = sandbox_up(state, hosts=hosts, app_port=app, public_port=public, ssh_port=ssh)
    try:
        config = load_config(info.config_file)
        config = config.model_copy(update={"deploy": config.deploy.model_copy(
            update={"fanout": fanout})})
        started, cpu = time.perf_counter(), time.process_time()
        result = deploy(config, artifact=artifact)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert result.ok and len(result.hosts) == hosts
        return elapsed, cpu
    finally:
        sandbox_down(state, purge=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bgkit-bench-") as folder:
        scratch = Path(folder)
        text = (REPO / "examples/hello-c/bgkit.toml").read_text()
        text = text.replace('source_dir = "."', f'source_dir = "{REPO}/examples/hello-c"')
        text = text.replace('dist_dir = "../../dist"', f'dist_dir = "{scratch}/dist"')
        (scratch / "bgkit.toml").write_text(text)
        artifact = build_release(load_config(scratch / "bgkit.toml")).artifact
        rows = []
        for size in args.sizes:
            runs = {fanout: [one_deploy(scratch, artifact, size, fanout)
                             for _ in range(args.repeat)] for fanout in (1, 10)}
            rows.append((size, statistics.median(w for w, _ in runs[1]),
                         statistics.median(w for w, _ in runs[10]),
                         statistics.median(c for _, c in runs[10])))
    base = rows[0][2]
    print(f"| hosts in the idle pool | fan-out 1 (s) | fan-out 10, the default (s) | "
          f"default vs {rows[0][0]} host | bgkit CPU at fan-out 10 (s) |")
    print("|---|---|---|---|---|")
    for size, sequential, parallel, cpu in rows:
        print(f"| {size} | {sequential:.2f} | {parallel:.2f} | {parallel / base:.2f}x "
              f"| {cpu:.2f} |")


if __name__ == "__main__":
    main()
