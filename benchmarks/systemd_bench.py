"""Systemd sandbox hosts: how long a host takes to boot, and to take a deploy.

    .venv/bin/python benchmarks/systemd_bench.py --hosts 1 --repeat 3

Needs root and systemd-nspawn (`make deps`). Each repeat brings up a fresh
`--manager systemd` sandbox of plain-c (both pools), times `sandbox up` (boot, users,
sshd, the host setup script, in parallel across the containers), then deploys to the
idle pool twice: a new release (upload, unpack, host file, restart through sudo
systemctl, wait healthy) and the same one again (nothing to do but check). Every
container is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import free_ports
from bgkit.artifact import build_release
from bgkit.config import load_config
from bgkit.deploy import deploy
from bgkit.sandbox import sandbox_down, sandbox_up

PLAIN = Path(__file__).resolve().parents[1] / "examples" / "plain-c"


def one(hosts: int, folder: Path) -> tuple[float, float, float]:
    app, public, ssh = free_ports(3)
    state = folder / "sbx"
    started = time.monotonic()
    info = sandbox_up(state, hosts=hosts, source=PLAIN, manager="systemd", app_port=app,
                      public_port=public, ssh_port=ssh)
    up_s = time.monotonic() - started
    try:
        config = load_config(info.config_file)
        artifact = build_release(config).artifact
        started = time.monotonic()
        deploy(config, artifact=artifact)
        first_s = time.monotonic() - started
        started = time.monotonic()
        deploy(config, artifact=artifact)
        again_s = time.monotonic() - started
    finally:
        sandbox_down(state)
    return up_s, first_s, again_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1, help="hosts per pool")
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    runs = []
    for _ in range(options.repeat):
        with tempfile.TemporaryDirectory(prefix="bgkit-systemd-bench-") as folder:
            runs.append(one(options.hosts, Path(folder)))
    names = (f"sandbox up: boot and set up {2 * options.hosts} systemd host(s)",
             f"deploy a new release to {options.hosts} idle host(s)",
             "deploy the same release again")
    print("| measure (median, min-max) | seconds |\n|---|---|")
    for index, name in enumerate(names):
        values = [run[index] for run in runs]
        print(f"| {name} | {statistics.median(values):.2f} "
              f"({min(values):.2f}-{max(values):.2f}) |")


if __name__ == "__main__":
    main()
