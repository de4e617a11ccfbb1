"""Deploy's rules that need no host: checked against the shipped fake load balancer."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgkit.deploy import deploy
from bgkit.drift import ExpectedServer, drift, server_drift
from bgkit.errors import DeployError
from bgkit.lb.base import BackendServer
from bgkit.testing import FakeFleet


def server(pool: str, name: str, address: str, port: int = 8080) -> BackendServer:
    return BackendServer(pool=pool, name=name, address=address, port=port,  # type: ignore[arg-type]
                         status="UP", healthy=True)


def expected(pool: str, address: str, port: int = 8080) -> ExpectedServer:
    return ExpectedServer(pool, address, port, frozenset({address}))


def test_drift_names_every_extra_and_missing_server_pool_by_pool() -> None:
    wanted = [expected("blue", "10.0.1.1"), expected("green", "10.0.2.1"),
              expected("green", "10.0.2.2")]
    agreeing = [server("blue", "blue-1", "10.0.1.1"), server("green", "green-1", "10.0.2.1"),
                server("green", "green-2", "10.0.2.2")]
    assert server_drift(wanted, agreeing) == []
    drifted = [server("blue", "blue-1", "10.0.1.1"), server("green", "green-1", "10.0.2.1"),
               server("green", "green-9", "10.0.1.1"), server("blue", "blue-2", "10.0.1.2", 81)]
    assert server_drift(wanted, drifted) == [
        "blue-2 (10.0.1.2:81) serves the blue pool in the load balancer but is not a host of "
        "pools.blue in bgkit.toml",
        "green-9 (10.0.1.1:8080) serves the green pool in the load balancer but is not a host "
        "of pools.green in bgkit.toml",
        "10.0.2.2:8080 is a host of pools.green in bgkit.toml but not a server of the green "
        "pool in the load balancer",
    ]


def test_drift_compares_ports_and_normalised_addresses() -> None:
    wanted = [ExpectedServer("blue", "::1", 8080, frozenset({"::1"}))]
    assert server_drift(wanted, [server("blue", "b", "0:0:0::1")]) == []
    assert len(server_drift(wanted, [server("blue", "b", "::1", 8081)])) == 2


def test_drift_reads_bgkit_toml_and_a_name_matches_the_address_it_resolves_to(
        tmp_path: Path) -> None:
    with FakeFleet(blue="1.0.0", green="2.0.0") as fleet:
        config = fleet.config(tmp_path)
        assert drift(config, fleet.lb.backend_health()) == []
        named = config.model_copy(update={"pools": config.pools.model_copy(update={
            "blue": config.pools.blue.model_copy(update={"hosts": (
                config.pools.blue.hosts[0].model_copy(update={"address": "localhost"}),
                *config.pools.blue.hosts[1:])})})})
        servers = [s if s.name != "blue-1" else server("blue", "blue-1", "127.0.0.1", s.port)
                   for s in fleet.lb.backend_health()]
        assert drift(named, servers) == []


def test_deploy_refuses_before_any_host_when_the_load_balancer_and_bgkit_toml_disagree(
        tmp_path: Path) -> None:
    with FakeFleet(blue="1.0.0", green="2.0.0") as fleet:
        config = fleet.config(tmp_path)
        fleet.lb.addresses["green"].append("127.0.91.1")  # a blue host, unlisted in green
        # No host of the fake fleet has SSH: a deploy that reached one would fail otherwise.
        with pytest.raises(DeployError, match=r"green-3 \(127\.0\.91\.1:\d+\) serves the green "
                           r"pool in the load balancer.*no host was touched") as refused:
            deploy(config, kept="fake-2.0.0-0000000", lb=fleet.lb)
        assert refused.value.results == ()
        drifted = config.model_copy(update={"pools": config.pools.model_copy(
            update={"green": config.pools.blue})})  # bgkit.toml names blue's servers green
        fleet.lb.addresses["green"].pop()
        with pytest.raises(DeployError, match="is a host of pools.green in bgkit.toml but not"):
            deploy(drifted, kept="fake-2.0.0-0000000", lb=fleet.lb)


def test_deploy_refuses_a_pool_a_canary_split_still_sends_live_requests_to(
        tmp_path: Path) -> None:
    """A switch killed mid-canary (its lease released by force) leaves green taking 25 %
    of live requests: green is not idle, and a deploy must not restart it."""
    with FakeFleet(blue="1.0.0", green="2.0.0") as fleet:
        config = fleet.config(tmp_path)
        fleet.lb.split("green", 25, timeout_s=1)
        with pytest.raises(DeployError, match="a canary split sends 25% of live requests to "
                           "it, so it is not idle.*no host was touched") as refused:
            deploy(config, kept="fake-2.0.0-0000000", lb=fleet.lb)
        assert refused.value.results == () and fleet.lb.canary == 25
