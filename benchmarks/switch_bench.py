"""Zero downtime under load: failed requests and switch latency, per provider.

    .venv/bin/python benchmarks/switch_bench.py [--seconds 6] [--workers 4]

For each provider (HAProxy runtime API; OVH IP Load Balancing through the emulator), a
fresh sandbox serves 1.0.0 on green (live) and 2.0.0 on blue (idle). A load generator
(keep-alive workers plus one worker opening a new connection per request) runs through
the public address while the provider switches to blue and, later, back to green.
Switch latency is from the switch call to the moment after which every request sent was
served by the new pool. Loopback only; the load stops by itself after --seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bgkit.artifact import build_release  # noqa: E402
from bgkit.config import Config, load_config  # noqa: E402
from bgkit.deploy import deploy  # noqa: E402
from bgkit.lb import get_provider  # noqa: E402
from bgkit.sandbox import sandbox_down, sandbox_up  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_ports  # noqa: E402


def wait_healthy(config: Config, pool: str) -> None:
    lb = get_provider(config)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        servers = [s for s in lb.backend_health() if s.pool == pool]
        if servers and all(s.healthy for s in servers):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{pool} never became healthy in the load balancer")


class Load:
    def __init__(self, url: str, workers: int, seconds: float) -> None:
        self.url, self.deadline = url, time.monotonic() + seconds
        self.sent: list[tuple[float, str | None]] = []  # (send time, version) of answers
        self.failed = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.worker, args=(True,))
                        for _ in range(workers)] + [threading.Thread(target=self.worker,
                                                                     args=(False,))]

    def worker(self, keep_alive: bool) -> None:
        client = httpx.Client(timeout=5)
        while time.monotonic() < self.deadline:
            if not keep_alive:
                client.close()
                client = httpx.Client(timeout=5, headers={"Connection": "close"})
            began = time.monotonic()
            try:
                response = client.get(self.url)
                ok = response.status_code == 200
                version = response.headers.get("X-App-Version")
            except httpx.HTTPError:
                ok, version = False, None
            with self.lock:
                if ok:
                    self.sent.append((began, version))
                else:
                    self.failed += 1
        client.close()

    def latency(self, called: float, old: str, until: float) -> float:
        old_after = [at for at, version in self.sent if called <= at < until and version == old]
        return max(old_after) - called if old_after else 0.0


def one_provider(scratch: Path, lb_name: str, workers: int, seconds: float) -> dict[str, float]:
    app, public, ssh = free_ports(3)
    state = scratch / f"sbx-{lb_name}"
    info = sandbox_up(state, hosts=2, app_port=app, public_port=public, ssh_port=ssh,
                      lb=lb_name)
    try:
        config = load_config(info.config_file)
        one = build_release(config, version="1.0.0").artifact
        two = build_release(config, version="2.0.0").artifact
        deploy(config, release=one)  # green (blue is live at first)
        wait_healthy(config, "green")
        lb = get_provider(config)
        lb.switch("green", timeout_s=30)
        deploy(config, release=two)  # now blue, the idle pool
        wait_healthy(config, "blue")
        load = Load(f"{config.lb.public_url}/", workers, seconds)
        for thread in load.threads:
            thread.start()
        time.sleep(seconds / 3)
        switch_called = time.monotonic()
        switched = lb.switch("blue", timeout_s=30)
        time.sleep(seconds / 3)
        back_called = time.monotonic()
        back = lb.switch("green", timeout_s=30)
        for thread in load.threads:
            thread.join()
        return {
            "requests": len(load.sent) + load.failed, "failed": load.failed,
            "switch_applied_ms": switched.applied_s * 1000,
            "switch_latency_ms": load.latency(switch_called, "1.0.0", back_called) * 1000,
            "rollback_applied_ms": back.applied_s * 1000,
            "rollback_latency_ms": load.latency(back_called, "2.0.0", float("inf")) * 1000,
        }
    finally:
        sandbox_down(state, purge=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    print("| provider | requests | failed | switch: applied (ms) | switch: every new request "
          "on the new pool after (ms) | rollback: applied (ms) | rollback: all new after (ms) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bgkit-switch-") as folder:
        for name in ("haproxy", "ovh-iplb"):
            row = one_provider(Path(folder), name, args.workers, args.seconds)
            print(f"| {name} | {row['requests']:.0f} | {row['failed']:.0f} | "
                  f"{row['switch_applied_ms']:.1f} | {row['switch_latency_ms']:.1f} | "
                  f"{row['rollback_applied_ms']:.1f} | {row['rollback_latency_ms']:.1f} |")


if __name__ == "__main__":
    main()
