"""Zero downtime under load, and how fast a failing new pool is switched back, per provider.

    .venv/bin/python benchmarks/switch_bench.py [--seconds 6] [--workers 4] [--faults 3]
        [--repeat 5] [--providers haproxy ovh-iplb ovh-cloud-lb]

For each provider (HAProxy runtime API; OVH IP Load Balancing and the Public Cloud Load
Balancer through the emulator), a fresh sandbox serves 1.0.0 on green (live) and 2.0.0
on blue (idle).

1. **Healthy switch** (``--repeat`` rounds). A load generator (keep-alive workers plus
   one worker opening a new connection per request) runs through the public address
   while the provider switches to blue and, later, back to green. "Applied" is the
   provider's own answer (call to applied); "beyond the emulated delay" subtracts what
   the emulator is configured to take (the IPLB refresh task's ``refresh_delay_s``, the
   Public Cloud provisioning's ``provisioning_delay_s``): what bgkit's polling and the
   API calls add. Switch latency is from the switch call to the moment after which every
   request sent was served by the new pool.
2. **Failing new pool** (``--faults`` rounds). ``bgkit.switch.switch`` moves traffic to
   blue with a 10 s watch; one second after the flip every blue host starts answering
   500 on the health path (hello-c's ``health_status`` knob, reloaded with SIGHUP), and
   the load hits that path. Reported: failed requests between the fault and the
   switch-back (counted by the load), the time from the first failing request to the
   last (the load's view of "traffic back"), and bgkit's own view from the outcome —
   fault to the watch's first failing sample, first failing sample to the breach, and
   the switch-back's apply time.

Loopback only; the load stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import tomli_w

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bgkit.artifact import build_release  # noqa: E402
from bgkit.config import Config, load_config  # noqa: E402
from bgkit.deploy import deploy  # noqa: E402
from bgkit.errors import SandboxError  # noqa: E402
from bgkit.lb import get_provider  # noqa: E402
from bgkit.lb.base import LoadBalancer, PoolName, SwitchResult  # noqa: E402
from bgkit.sandbox import sandbox_down, sandbox_up  # noqa: E402
from bgkit.switch import switch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_ports, set_faults  # noqa: E402


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
        self.failed_at: list[float] = []  # send time of every failed request
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.worker, args=(True,))
                        for _ in range(workers)] + [threading.Thread(target=self.worker,
                                                                     args=(False,))]

    @property
    def failed(self) -> int:
        return len(self.failed_at)

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def worker(self, keep_alive: bool) -> None:
        client = httpx.Client(timeout=5)
        while time.monotonic() < self.deadline and not self.stop.is_set():
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
                    self.failed_at.append(began)
        client.close()

    def latency(self, called: float, old: str, until: float) -> float:
        old_after = [at for at, version in self.sent if called <= at < until and version == old]
        return max(old_after) - called if old_after else 0.0


class FailsAfterFlip:
    """The real provider; one second after it switches to ``pool``, that pool fails."""

    def __init__(self, inner: LoadBalancer, config: Config, pool: PoolName) -> None:
        self.inner, self.config, self.pool, self.name = inner, config, pool, inner.name
        self.fault_at: float | None = None  # time.time() of the fault

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def switch(self, pool: PoolName, *, timeout_s: float) -> SwitchResult:
        result = self.inner.switch(pool, timeout_s=timeout_s)
        if pool == self.pool and self.fault_at is None:
            threading.Timer(1.0, self._fail).start()
        return result

    def _fail(self) -> None:
        self.fault_at = time.time()
        set_faults(self.config, self.pool, health_status=500)


def with_watch(config: Config, name: str) -> Config:
    data = tomllib.loads(config.path.read_text())
    data.setdefault("switch", {}).update({"samples_per_host": 60, "watch_s": 10})
    target = config.path.with_name(name)
    target.write_text(tomli_w.dumps(data))
    return load_config(target)


# A request sent just before the next switch call may be routed after it: the windows in
# which old answers are counted end this long before the next call.
MARGIN_S = 0.05


def emulated_delay_s(config: Config) -> float:
    """What the emulator is configured to take to apply a change (0 for HAProxy)."""
    settings = config.lb.ovh_iplb or config.lb.ovh_cloud_lb
    if settings is None:
        return 0.0
    root = settings.endpoint.removesuffix("/1.0")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{root}/_emulator/faults", timeout=5) as answer:
        faults = json.loads(answer.read())
    key = "refresh_delay_s" if config.lb.ovh_iplb else "provisioning_delay_s"
    return float(faults[key])


def healthy_switch(config: Config, workers: int, seconds: float,
                   repeat: int) -> list[dict[str, float]]:
    """``repeat`` rounds of a switch to blue and back to green, under one load."""
    lb = get_provider(config)
    delay = emulated_delay_s(config)
    load = Load(f"{config.lb.public_url}/", workers, seconds * repeat + 30).start()
    rounds = []
    for _ in range(repeat):
        time.sleep(seconds / 3)
        switch_called = time.monotonic()
        switched = lb.switch("blue", timeout_s=30)
        time.sleep(seconds / 3)
        back_called = time.monotonic()
        back = lb.switch("green", timeout_s=30)
        rounds.append({"switch_called": switch_called, "back_called": back_called,
                       "switched": switched.applied_s, "back": back.applied_s})
    time.sleep(seconds / 3)
    load.join()
    rows = []
    for index, done in enumerate(rounds):
        following = rounds[index + 1]["switch_called"] if index + 1 < len(rounds) else \
            float("inf")
        rows.append({
            "switch_applied_ms": done["switched"] * 1000,
            "switch_beyond_ms": (done["switched"] - delay) * 1000,
            "switch_latency_ms": load.latency(done["switch_called"], "1.0.0",
                                              done["back_called"] - MARGIN_S) * 1000,
            "rollback_applied_ms": done["back"] * 1000,
            "rollback_beyond_ms": (done["back"] - delay) * 1000,
            "rollback_latency_ms": load.latency(done["back_called"], "2.0.0",
                                                following - MARGIN_S) * 1000,
            "requests": len(load.sent) + load.failed, "failed": load.failed,
            "delay_ms": delay * 1000})
    return rows


def failing_pool(config: Config, workers: int) -> dict[str, float]:
    """One switch to blue that fails a second after the flip; the figures of its revert."""
    lb = FailsAfterFlip(get_provider(config), config, "blue")
    load = Load(f"{config.lb.public_url}{config.service.health_path}", workers, 60).start()
    time.sleep(0.5)
    outcome = switch(config, lb=lb, expected_version="2.0.0", approve=True)
    time.sleep(0.5)
    load.join()
    assert outcome.ended == "switched back", outcome.reason
    assert outcome.watch is not None and outcome.revert is not None
    assert lb.fault_at is not None and load.failed_at, "the fault reached no request"
    revert = outcome.revert.to_dict()
    first_sample = outcome.watch.first_failure_at
    applied = outcome.revert.applied_at
    assert first_sample is not None and applied is not None
    fault_to_sample = first_sample.timestamp() - lb.fault_at
    set_faults(config, "blue", health_status=200)
    wait_healthy(config, "blue")
    return {
        "failed": load.failed,
        "load_window_ms": (max(load.failed_at) - min(load.failed_at)) * 1000,
        "fault_to_first_sample_ms": max(0.0, fault_to_sample) * 1000,
        "detect_ms": (revert["detect_s"] or 0.0) * 1000,
        "apply_back_ms": (revert["apply_s"] or 0.0) * 1000,
        "sample_to_back_ms": (revert["fault_to_back_s"] or 0.0) * 1000,
        "watch_samples": outcome.watch.samples, "watch_planned": outcome.watch.planned,
    }


def one_provider(scratch: Path, lb_name: str, workers: int, seconds: float,
                 faults: int, repeat: int) -> tuple[list[dict[str, float]],
                                                    list[dict[str, float]]]:
    state = scratch / f"sbx-{lb_name}"
    for attempt in range(5):  # a port free on 127.0.0.1 may be taken on 127.0.1.x
        app, public, ssh = free_ports(3)
        try:
            info = sandbox_up(state, hosts=2, app_port=app, public_port=public,
                              ssh_port=ssh, lb=lb_name)
            break
        except SandboxError:
            sandbox_down(state, purge=True)
            if attempt == 4:
                raise
    try:
        config = load_config(info.config_file)
        one = build_release(config, version="1.0.0").artifact
        two = build_release(config, version="2.0.0").artifact
        deploy(config, artifact=one)  # green (blue is live at first)
        wait_healthy(config, "green")
        get_provider(config).switch("green", timeout_s=30)
        deploy(config, artifact=two)  # now blue, the idle pool
        wait_healthy(config, "blue")
        healthy = healthy_switch(config, workers, seconds, repeat)
        watched = with_watch(config, "bench-watch.toml")
        return healthy, [failing_pool(watched, workers) for _ in range(faults)]
    finally:
        sandbox_down(state, purge=True)


def median(rows: list[dict[str, float]], key: str, digits: int = 0) -> str:
    values = [row[key] for row in rows]
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--faults", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--providers", nargs="+", default=["haproxy", "ovh-iplb",
                                                           "ovh-cloud-lb"],
                        choices=["haproxy", "ovh-iplb", "ovh-cloud-lb"])
    args = parser.parse_args()
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bgkit-switch-") as folder:
        for name in args.providers:
            results[name] = one_provider(Path(folder), name, args.workers, args.seconds,
                                         args.faults, args.repeat)
    print(f"Healthy switch and rollback, median (min-max) of {args.repeat} rounds:")
    print()
    print("| provider | requests | failed | emulated delay (ms) | switch: applied (ms) | "
          "switch: beyond the emulated delay (ms) | switch: every new request on the new "
          "pool after (ms) | rollback: applied (ms) | rollback: beyond the emulated delay "
          "(ms) | rollback: all new after (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (rows, _) in results.items():
        print(f"| {name} | {rows[-1]['requests']:.0f} | {rows[-1]['failed']:.0f} | "
              f"{rows[-1]['delay_ms']:.0f} | {median(rows, 'switch_applied_ms', 1)} | "
              f"{median(rows, 'switch_beyond_ms', 1)} | "
              f"{median(rows, 'switch_latency_ms', 1)} | "
              f"{median(rows, 'rollback_applied_ms', 1)} | "
              f"{median(rows, 'rollback_beyond_ms', 1)} | "
              f"{median(rows, 'rollback_latency_ms', 1)} |")
    print()
    print(f"Failing new pool, median (min-max) of {args.faults} rounds:")
    print()
    print("| provider | failed requests between the fault and the switch-back | first to "
          "last failed request (ms) | fault to the watch's first failing sample (ms) | "
          "first failing sample to breach (ms) | switch-back applied (ms) | first failing "
          "sample to traffic back (ms) | watch samples taken of 500 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (_, rows) in results.items():
        print(f"| {name} | {median(rows, 'failed')} | {median(rows, 'load_window_ms')} | "
              f"{median(rows, 'fault_to_first_sample_ms')} | {median(rows, 'detect_ms')} | "
              f"{median(rows, 'apply_back_ms')} | {median(rows, 'sample_to_back_ms')} | "
              f"{median(rows, 'watch_samples')} |")


if __name__ == "__main__":
    main()
