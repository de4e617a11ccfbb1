"""Drain before restart, against the fake load balancer and a scripted host: the pool left
idle long enough, then nothing open by either count, or the rest reported as cut."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bgkit.commands.remote import LastLive
from bgkit.config import Config
from bgkit.drain import Drain
from bgkit.hosts import Host
from bgkit.testing import FakeFleet, FakeLoadBalancer


@dataclass
class Answer:
    stdout: str


@dataclass
class ScriptedHost:
    """A session whose ``ss`` count comes from ``counts`` (the last one repeats)."""

    host: Host
    counts: list[int]
    steps: list[str] = field(default_factory=list)

    def run(self, command: str, *, check: bool = True) -> Answer:
        assert command.startswith("ss ")
        count = self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]
        return Answer(f"{count}\n")

    def step(self, name: str) -> None:
        self.steps.append(name)


@pytest.fixture
def fleet() -> Iterator[FakeFleet]:
    with FakeFleet(blue="1.0.0", green="2.0.0") as running:
        yield running


def setup(fleet: FakeFleet, tmp_path: Path, **deploy: float) -> tuple[Config, ScriptedHost]:
    config = fleet.config(tmp_path)
    config = config.model_copy(update={"deploy": config.deploy.model_copy(update={
        "min_idle_s": 0.0, "drain_timeout_s": 5.0, **deploy})})
    address = fleet.lb.addresses["green"][0]
    host = Host(pool="green", index=0, address=address, port=22, user="deploy", root="/srv")
    return config, ScriptedHost(host, [0])


def drain(lb: FakeLoadBalancer, config: Config, session: ScriptedHost,
          record: LastLive | None = None) -> int:
    return Drain(lb, time.monotonic()).wait(session, config, record)  # type: ignore[arg-type]


def test_an_idle_host_is_restarted_at_once(fleet: FakeFleet, tmp_path: Path) -> None:
    config, session = setup(fleet, tmp_path)
    assert drain(fleet.lb, config, session) == 0 and session.steps == []


def test_sessions_the_load_balancer_still_holds_are_waited_for(
        fleet: FakeFleet, tmp_path: Path) -> None:
    config, session = setup(fleet, tmp_path)
    server = (session.host.address, fleet.port)
    fleet.lb.sessions = {server: 2}
    done: list[int] = []

    def close_later() -> None:
        time.sleep(0.6)
        assert fleet.lb.sessions is not None
        fleet.lb.sessions[server] = 0

    closer = threading.Thread(target=close_later)
    closer.start()
    done.append(drain(fleet.lb, config, session))
    closer.join()
    assert done == [0]
    assert "draining: 2 connection(s) open (2 by the load balancer, 0 on the host)" in \
        session.steps


def test_connections_still_open_at_the_drain_timeout_are_cut_and_counted(
        fleet: FakeFleet, tmp_path: Path) -> None:
    config, session = setup(fleet, tmp_path, drain_timeout_s=0.3)
    session.counts = [3]
    assert drain(fleet.lb, config, session) == 3
    assert session.steps[-1].startswith("3 connection(s) still open after 0.3 s")


def test_a_load_balancer_that_cannot_see_sessions_leaves_the_host_count(
        fleet: FakeFleet, tmp_path: Path) -> None:
    config, session = setup(fleet, tmp_path)
    fleet.lb.sessions = None
    session.counts = [1, 1, 0]
    assert drain(fleet.lb, config, session) == 0
    assert session.steps == ["draining: 1 connection(s) open (1 on the host)"]


def test_a_pool_that_left_live_moments_ago_is_left_alone_for_min_idle_s(
        fleet: FakeFleet, tmp_path: Path) -> None:
    config, session = setup(fleet, tmp_path, min_idle_s=0.5)
    left = (datetime.now(UTC) - timedelta(seconds=0.2)).isoformat(timespec="milliseconds")
    assert drain(fleet.lb, config, session, LastLive("app-1-a", "t", left)) == 0
    assert len(session.steps) == 1 and "[deploy].min_idle_s" in session.steps[0]
    long_ago = (datetime.now(UTC) - timedelta(seconds=60)).isoformat()
    session.steps.clear()
    assert drain(fleet.lb, config, session, LastLive("app-1-a", "t", long_ago)) == 0
    assert session.steps == []
    # Still recorded live (the switch could not record that traffic left): counted from now.
    assert drain(fleet.lb, config, session, LastLive("app-1-a", "t", "")) == 0
    assert "[deploy].min_idle_s" in session.steps[0]
