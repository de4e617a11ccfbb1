"""Drain before restart: a deploy never restarts a service the load balancer still sends,
or recently sent, traffic to. plain-c exits at once on SIGTERM, so a restart while a
download runs would cut it."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bgkit.artifact import BuildResult, build_release
from bgkit.config import Config, load_config
from bgkit.deploy import deploy
from bgkit.lb import get_provider
from bgkit.sandbox import sandbox_down, sandbox_up
from bgkit.switch import switch
from tests.conftest import REPO
from tests.integration.sandbox_support import rewrite_config, sandbox_ports, wait_lb_healthy

pytestmark = pytest.mark.slow

PLAIN_DIR = REPO / "examples" / "plain-c"
BIG = 40 << 20  # bytes
RATE = 2 << 20  # bytes per second: a 20 s download


@pytest.fixture(scope="module")
def big_releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BuildResult]:
    """plain-c serving a 40 MB file (``/big.bin``), in two versions."""
    base = tmp_path_factory.mktemp("plain-big")
    source = base / "plain-c"
    shutil.copytree(PLAIN_DIR, source, ignore=shutil.ignore_patterns("build*"))
    with (source / "www" / "big.bin").open("wb") as out:
        out.truncate(BIG)  # zeros: a small tarball, a large response
    text = (source / "bgkit.toml").read_text()
    text = text.replace('dist_dir = "../../dist-plain-c"', f'dist_dir = "{base}/dist"')
    (source / "bgkit.toml").write_text(text)
    config = load_config(source / "bgkit.toml")
    return {version: build_release(config, version=version) for version in ("1.0.0", "2.0.0")}


@pytest.fixture
def plain_one_host(tmp_path: Path, big_releases: dict[str, BuildResult]) -> Iterator[Config]:
    state = tmp_path / "sbx-drain"
    info = sandbox_up(state, hosts=1, source=PLAIN_DIR, **sandbox_ports(hosts=1))
    try:
        yield rewrite_config(info.config_file, {
            "switch": {"samples_per_host": 30, "watch_s": 2},
            "gates": {"max_p99_ms": 1500, "min_p95_delta_ms": 100, "min_samples_per_host": 20},
            "deploy": {"min_idle_s": 1, "drain_timeout_s": 120}}, name="drain.toml")
    finally:
        sandbox_down(state)


class Download:
    """One GET of ``url`` read at ``rate`` bytes per second, in a thread."""

    def __init__(self, url: str, rate: int) -> None:
        self.url, self.rate = url, rate
        self.received = 0
        self.error: str | None = None
        self.served_by: str | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            with httpx.stream("GET", self.url, timeout=30) as response:
                self.served_by = response.headers.get("X-Bgkit-Pool")
                for chunk in response.iter_bytes(64 << 10):
                    self.received += len(chunk)
                    ahead = self.received / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        except httpx.HTTPError as error:
            self.error = repr(error)
        finally:
            self.done.set()

    def __enter__(self) -> Download:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.thread.join(timeout=120)


def test_a_deploy_after_a_switch_waits_until_a_long_download_from_the_old_pool_completes(
        plain_one_host: Config, big_releases: dict[str, BuildResult]) -> None:
    config, lb = plain_one_host, get_provider(plain_one_host)
    assert deploy(config, artifact=big_releases["1.0.0"].artifact).pool == "green"
    wait_lb_healthy(config, "green")
    first = switch(config, lb=lb, expected_version="1.0.0", approve=True)
    assert first.ended == "switched", first.reason
    assert deploy(config, artifact=big_releases["2.0.0"].artifact).pool == "blue"
    wait_lb_healthy(config, "blue")
    with Download(f"{config.lb.public_url}/big.bin", RATE) as download:
        while download.received < (1 << 20) and not download.done.is_set():
            time.sleep(0.05)
        assert download.served_by == "green"
        went = switch(config, lb=lb, expected_version="2.0.0", approve=True)
        assert went.ended == "switched", went.reason
        assert not download.done.is_set(), "the download must still run when deploy starts"
        result = deploy(config, artifact=big_releases["2.0.0"].artifact)  # green, restarted
    assert result.pool == "green" and all(h.restarted for h in result.hosts)
    assert download.error is None, f"cut after {download.received} bytes: {download.error}"
    assert download.received == BIG
    assert result.cut == 0 and result.record()["cut"] == 0
