"""The files ``bgkit sandbox up --lb ovh-iplb`` writes, without starting anything."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bgkit.commands.ovh_iplb import access_rules
from bgkit.config import load_config
from bgkit.errors import UsageError
from bgkit.lb.ovh_api import find_credentials
from bgkit.sandbox import ovh
from bgkit.sandbox.ovh_api.dataplane import MemoryDataPlane
from bgkit.sandbox.ovh_api.seed import load_emulator
from bgkit.sandbox.render import app_facts, render_bgkit_toml
from bgkit.sandbox.state import Layout, SandboxOptions, fleet_hosts
from tests.conftest import EXAMPLE_DIR


def options(**changes: object) -> SandboxOptions:
    values: dict[str, object] = {
        "hosts": 2, "app_port": 8080, "public_port": 8000, "ssh_port": 2222,
        "source": str(EXAMPLE_DIR), "runs_dir": "/tmp/runs", "user": "deploy",
        "lb": "ovh-iplb"}
    values.update(changes)
    return SandboxOptions(**values)  # type: ignore[arg-type]


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / "sbx")
    layout.map_file.parent.mkdir(parents=True)
    layout.map_file.write_text("live blue\n")
    return layout


def write(layout: Layout, port: int = 8765) -> ovh.OvhFacts:
    return ovh.write_ovh_files(layout, options=options(), hosts=fleet_hosts(layout, 2),
                               port=port, runtime_api="/x/haproxy.sock", health_path="/health")


def test_the_bgkit_toml_names_the_emulator_and_never_a_key(layout: Layout) -> None:
    facts = write(layout)
    text = render_bgkit_toml(layout=layout, options=options(), hosts=fleet_hosts(layout, 2),
                             runtime_api="/x/haproxy.sock", facts=app_facts(EXAMPLE_DIR),
                             ovh=facts)
    layout.config_file.write_text(text)
    config = load_config(layout.config_file)
    settings = config.lb.ovh_iplb
    assert config.lb.provider == "ovh-iplb" and config.lb.haproxy is None
    assert settings is not None
    assert (settings.endpoint, settings.service_name, settings.frontend_id) == (
        "http://127.0.0.1:8765/1.0", "loadbalancer-sandbox", 70089)
    assert (settings.farm_ids.blue, settings.farm_ids.green) == (77212, 77213)
    assert settings.config_file == str(layout.ovh_conf)
    emulator = json.loads(layout.ovh_emulator_config.read_text())
    for secret in [*emulator["applications"].values(), emulator["consumer_keys"][0]["key"]]:
        assert secret not in text


def test_secret_files_are_private_from_the_start_and_keys_are_kept(layout: Layout) -> None:
    write(layout)
    for path in (layout.ovh_conf, layout.ovh_emulator_config):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = layout.ovh_conf.read_text()
    write(layout, port=9999)
    again = layout.ovh_conf.read_text()
    assert again != first and again.splitlines()[4:] == first.splitlines()[4:]
    assert "[http://127.0.0.1:9999/1.0]" in again


def test_python_ovh_reads_the_keys_from_the_endpoints_section(layout: Layout,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    for name in ("OVH_APPLICATION_KEY", "OVH_APPLICATION_SECRET", "OVH_CONSUMER_KEY"):
        monkeypatch.delenv(name, raising=False)
    facts = write(layout)
    found = find_credentials(facts.endpoint, config_file=layout.ovh_conf)
    emulator = json.loads(layout.ovh_emulator_config.read_text())
    assert found.missing() == []
    assert emulator["applications"] == {found.application_key: found.application_secret}
    assert emulator["consumer_keys"][0]["key"] == found.consumer_key


def test_the_emulator_config_seeds_bgkits_rules_and_the_live_pool_of_haproxys_map(
        layout: Layout) -> None:
    layout.map_file.write_text("live green\n")
    write(layout)
    config = json.loads(layout.ovh_emulator_config.read_text())
    assert config["listen"] == {"host": "127.0.0.1", "port": 8765}
    assert config["consumer_keys"][0]["rules"] == access_rules(
        "loadbalancer-sandbox", frontend_id=70089, farm_ids=[77212, 77213])
    service = config["services"][0]
    assert service["frontends"][0]["defaultFarmId"] == 77213
    assert service["frontends"][0]["port"] == "8000"
    assert [(s["displayName"], s["address"], s["backendId"]) for s in service["servers"]] == [
        ("blue-1", "127.0.1.1", 77212), ("blue-2", "127.0.1.2", 77212),
        ("green-1", "127.0.2.1", 77213), ("green-2", "127.0.2.2", 77213)]
    assert service["data_plane"]["farm_pools"] == {"77212": "blue", "77213": "green"}
    emulator, host, port = load_emulator(config, data_plane=lambda data: MemoryDataPlane())
    assert (host, port, list(emulator.services)) == ("127.0.0.1", 8765,
                                                     ["loadbalancer-sandbox"])


def test_the_lb_option_takes_only_known_providers() -> None:
    assert options(lb="haproxy").validate().lb == "haproxy"
    with pytest.raises(UsageError, match="--lb must be one of haproxy, ovh-iplb, ovh-cloud-lb"):
        options(lb="nginx").validate()


def test_the_lb_option_takes_the_cloud_provider() -> None:
    assert options(lb="ovh-cloud-lb").validate().lb == "ovh-cloud-lb"


def write_cloud(layout: Layout, port: int = 8765) -> object:
    return ovh.write_ovh_files(layout, options=options(lb="ovh-cloud-lb"),
                               hosts=fleet_hosts(layout, 2), port=port,
                               runtime_api="/x/haproxy.sock", health_path="/health")


def test_with_ovh_cloud_lb_the_bgkit_toml_names_the_listener_and_pools_never_a_key(
        layout: Layout) -> None:
    facts = write_cloud(layout)
    text = render_bgkit_toml(layout=layout, options=options(lb="ovh-cloud-lb"),
                             hosts=fleet_hosts(layout, 2), runtime_api="/x/haproxy.sock",
                             facts=app_facts(EXAMPLE_DIR), ovh=facts)  # type: ignore[arg-type]
    layout.config_file.write_text(text)
    config = load_config(layout.config_file)
    settings = config.lb.ovh_cloud_lb
    assert config.lb.provider == "ovh-cloud-lb" and config.lb.ovh_iplb is None
    assert settings is not None
    assert (settings.endpoint, settings.service_name, settings.region) == (
        "http://127.0.0.1:8765/1.0", ovh.PROJECT, "GRA11")
    assert (settings.loadbalancer_id, settings.listener_id) == (ovh.LOADBALANCER_ID,
                                                                ovh.LISTENER_ID)
    assert (settings.pool_ids.blue, settings.pool_ids.green) == (ovh.POOL_IDS["blue"],
                                                                  ovh.POOL_IDS["green"])
    emulator = json.loads(layout.ovh_emulator_config.read_text())
    for secret in [*emulator["applications"].values(), emulator["consumer_keys"][0]["key"]]:
        assert secret not in text
    assert "--lb ovh-cloud-lb" in layout.ovh_conf.read_text()


def test_the_cloud_seed_follows_haproxys_map_carries_bgkits_rules_and_is_stable(
        layout: Layout) -> None:
    from bgkit.commands import ovh_cloud_lb

    layout.map_file.write_text("live green\n")
    write_cloud(layout)
    first = layout.ovh_emulator_config.read_text()
    write_cloud(layout)
    assert layout.ovh_emulator_config.read_text() == first  # nothing to rewrite
    config = json.loads(first)
    assert config["consumer_keys"][0]["rules"] == ovh_cloud_lb.access_rules(
        ovh.PROJECT, region="GRA11", loadbalancer_id=ovh.LOADBALANCER_ID,
        listener_id=ovh.LISTENER_ID, pool_ids=list(ovh.POOL_IDS.values()))
    (region,) = config["clouds"]
    assert region["listeners"][0]["defaultPoolId"] == ovh.POOL_IDS["green"]
    assert region["listeners"][0]["port"] == 8000
    assert {pool: [(m["name"], m["address"], m["protocolPort"]) for m in members]
            for pool, members in region["members"].items()} == {
        ovh.POOL_IDS["blue"]: [("blue-1", "127.0.1.1", 8080), ("blue-2", "127.0.1.2", 8080)],
        ovh.POOL_IDS["green"]: [("green-1", "127.0.2.1", 8080),
                                ("green-2", "127.0.2.2", 8080)]}
    assert region["data_plane"]["pool_colours"] == {ovh.POOL_IDS["blue"]: "blue",
                                                    ovh.POOL_IDS["green"]: "green"}
    emulator, _, _ = load_emulator(config, data_plane=lambda data: MemoryDataPlane())
    assert list(emulator.clouds) == [(ovh.PROJECT, "GRA11")] and emulator.services == {}
