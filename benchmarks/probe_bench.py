"""Probe throughput: samples per second across the hosts of a sandbox.

    .venv/bin/python benchmarks/probe_bench.py [--hosts 2 10] [--rate 500 2000 100000]

Starts a sandbox per host count, deploys the sample service to one pool, makes the
other pool live, and samples every host of both pools plus the public address with
`bgkit.probe.sample` at each asked-for rate; prints achieved samples per second and
the share of failed samples. Loopback only; each run is bounded by its sample count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bgkit.artifact import build_release  # noqa: E402
from bgkit.config import load_config  # noqa: E402
from bgkit.deploy import deploy  # noqa: E402
from bgkit.lb import get_provider  # noqa: E402
from bgkit.probe import host_targets, lb_target, sample  # noqa: E402
from bgkit.sandbox import sandbox_down, sandbox_up  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_ports  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--rate", type=float, nargs="+", default=[500, 2000, 100000])
    parser.add_argument("--samples", type=int, default=400, help="per target")
    args = parser.parse_args()
    print("| hosts per pool | targets | asked rate (/s) | samples | achieved (samples/s) "
          "| failed |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bgkit-probe-") as folder:
        scratch = Path(folder)
        for hosts in args.hosts:
            app, public, ssh = free_ports(3)
            state = scratch / f"sbx{hosts}"
            info = sandbox_up(state, hosts=hosts, app_port=app, public_port=public,
                              ssh_port=ssh)
            try:
                config = load_config(info.config_file)
                release = build_release(config)
                for pool in ("green", "blue"):
                    deploy(config, artifact=release.artifact)
                    lb = get_provider(config)
                    idle = "green" if pool == "green" else "blue"
                    deadline = time.monotonic() + 15
                    while time.monotonic() < deadline and not all(
                            s.healthy for s in lb.backend_health() if s.pool == idle):
                        time.sleep(0.05)  # wait for HAProxy's own checks before the flip
                    lb.switch(pool, timeout_s=10)
                targets = [*host_targets(config, "blue", expected_version=None),
                           *host_targets(config, "green", expected_version=None),
                           lb_target(config, live_pool=lb.live_pool(), expected_version=None)]
                for rate in args.rate:
                    started = time.perf_counter()
                    frame = sample(targets, samples_per_target=args.samples, rate_per_s=rate)
                    elapsed = time.perf_counter() - started
                    failed = (~frame["ok"]).mean()
                    print(f"| {hosts} | {len(targets)} | {rate:g} | {len(frame)} | "
                          f"{len(frame) / elapsed:.0f} | {failed:.2%} |")
            finally:
                sandbox_down(state, purge=True)


if __name__ == "__main__":
    main()
