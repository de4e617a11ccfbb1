"""The sandbox's generated files, rendered without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgkit.config import load_config
from bgkit.errors import UsageError
from bgkit.sandbox.haproxy import choose_runtime_api, render_haproxy_cfg
from bgkit.sandbox.render import (
    AppFacts,
    app_facts,
    render_bgkit_toml,
    render_known_hosts,
    render_service_ini,
)
from bgkit.sandbox.sshd import render_sshd_config, shards
from bgkit.sandbox.state import Layout, SandboxOptions, fleet_hosts
from tests.conftest import EXAMPLE_DIR


def options(**changes: object) -> SandboxOptions:
    values: dict[str, object] = {
        "hosts": 2, "app_port": 8080, "public_port": 8000, "ssh_port": 2222,
        "source": str(EXAMPLE_DIR), "runs_dir": "/tmp/runs", "user": "deploy"}
    values.update(changes)
    return SandboxOptions(**values)  # type: ignore[arg-type]


def test_hosts_get_one_loopback_address_and_deploy_root_each() -> None:
    hosts = fleet_hosts(Layout(Path("/s")), 50)
    assert [(h.name, h.address) for h in hosts[:2]] == [
        ("blue-1", "127.0.1.1"), ("blue-2", "127.0.1.2")]
    assert (hosts[-1].name, hosts[-1].address) == ("green-50", "127.0.2.50")
    assert hosts[-1].root == Path("/s/hosts/green-50")
    assert hosts[-1].pid_file == Path("/s/hosts/green-50/shared/run/service.pid")


def test_the_written_bgkit_toml_round_trips_through_load_config(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "sbx")
    odd = tmp_path / 'runs "quoted" \\ back ünï'
    opts = options(runs_dir=str(odd), hosts=3)
    text = render_bgkit_toml(layout=layout, options=opts, hosts=fleet_hosts(layout, 3),
                             runtime_api="ipv4@127.0.0.1:4567", facts=app_facts(EXAMPLE_DIR))
    layout.root.mkdir()
    layout.config_file.write_text(text)
    config = load_config(layout.config_file)
    assert config.runs_dir == odd
    assert config.app.name == "hello-c"
    assert config.service.manager == "sandbox"
    assert config.service.args == ("--config={shared}/config.ini",)
    assert [h.address for h in config.pools.green.hosts] == [
        "127.0.2.1", "127.0.2.2", "127.0.2.3"]
    assert {h.port for h in config.pools.blue.hosts} == {2222}
    assert config.pools.blue.hosts[0].deploy_root == str(layout.root / "hosts" / "blue-1")
    assert config.lb.public_url == "http://127.0.0.1:8000"
    assert config.lb.haproxy is not None
    assert config.lb.haproxy.runtime_api == "ipv4@127.0.0.1:4567"
    assert config.lb.haproxy.map_file == str(layout.root / "haproxy" / "live.map")
    assert config.identity_file == layout.root / "ssh" / "id_ed25519"
    assert config.known_hosts == layout.root / "ssh" / "known_hosts"


def test_the_service_ini_binds_the_host_address_without_a_version() -> None:
    host = fleet_hosts(Layout(Path("/s")), 1)[1]
    assert render_service_ini(host, app_port=9000, drain_timeout_s=2.5).splitlines()[2:] == [
        "[server]", "bind = 127.0.2.1", "port = 9000", "drain_timeout_ms = 2500", "",
        "[faults]"]


def test_known_hosts_lines_carry_the_port_except_for_22() -> None:
    assert render_known_hosts(["127.0.1.1", "127.0.2.1"], port=2222, host_key="k AAA") == (
        "[127.0.1.1]:2222 k AAA\n[127.0.2.1]:2222 k AAA\n")
    assert render_known_hosts(["127.0.1.1"], port=22, host_key="k AAA") == "127.0.1.1 k AAA\n"


def test_addresses_are_split_into_shards_of_sixteen_for_sshd() -> None:
    addresses = [f"127.0.1.{i}" for i in range(1, 101)]
    groups = shards(addresses)
    assert [len(group) for group in groups] == [16] * 6 + [4]
    assert [address for group in groups for address in group] == addresses


def test_sshd_config_listens_on_its_shard_only_with_keys_from_the_state_dir() -> None:
    layout = Layout(Path("/s"))
    text = render_sshd_config(layout, 2, ["127.0.1.17", "127.0.1.18"], port=2222, user="dev")
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("ListenAddress")] == [
        "ListenAddress 127.0.1.17", "ListenAddress 127.0.1.18"]
    for expected in ("Port 2222", "PidFile /s/run/sshd-2.pid", "AllowUsers dev",
                     "AuthorizedKeysFile /s/ssh/authorized_keys", "PasswordAuthentication no",
                     "StrictModes no", "UsePAM no", "MaxStartups 200:30:300",
                     "MaxSessions 100", "HostKey /s/ssh/ssh_host_ed25519_key"):
        assert expected in lines


def test_haproxy_cfg_routes_by_the_live_map_and_checks_every_host() -> None:
    layout = Layout(Path("/s"))
    text = render_haproxy_cfg(layout, runtime_api="/s/run/haproxy.sock", public_port=8000,
                              app_port=8080, hosts=fleet_hosts(layout, 2),
                              health_path="/health")
    assert "    bind 127.0.0.1:8000" in text
    assert "    use_backend %[str(live),map(/s/haproxy/live.map,blue)]" in text
    assert "    use_backend %[str(idle),map(/s/haproxy/live.map,green)] if bgkit_canary" in text
    assert "stats socket /s/run/haproxy.sock mode 600 level admin expose-fd listeners" in text
    assert "    server green-2 127.0.2.2:8080 check" in text
    assert text.count("http-check expect status 200") == 2
    assert "uri /health" in text


def test_the_runtime_api_is_a_unix_socket_unless_its_path_is_too_long() -> None:
    assert choose_runtime_api(Layout(Path("/s")), previous=None, keep=False) == (
        "/s/run/haproxy.sock")
    deep = Layout(Path("/" + "d" * 90))
    chosen = choose_runtime_api(deep, previous=None, keep=False)
    assert chosen.startswith("ipv4@127.0.0.1:")
    assert choose_runtime_api(deep, previous="ipv4@127.0.0.1:4444", keep=True) == (
        "ipv4@127.0.0.1:4444")


def test_state_dirs_that_configs_cannot_hold_unquoted_are_refused() -> None:
    with pytest.raises(UsageError, match="characters"):
        Layout.at("/tmp/with space")
    with pytest.raises(UsageError, match="characters"):
        Layout.at("/tmp/semi;colon")


def test_options_are_checked_before_anything_starts() -> None:
    with pytest.raises(UsageError, match="three different ports"):
        options(app_port=2222).validate()
    with pytest.raises(UsageError, match="--hosts must be 1-254"):
        options(hosts=0).validate()
    with pytest.raises(UsageError, match="not a CMake project"):
        options(source="/").validate()


def test_app_facts_come_from_the_sample_service_or_defaults(tmp_path: Path) -> None:
    facts = app_facts(EXAMPLE_DIR)
    assert (facts.name, facts.executable, facts.health_path) == (
        "hello-c", "bin/hello-c", "/health")
    assert app_facts(tmp_path) == AppFacts()
