"""Placeholders, host files, release contents, version_from and OpenSSH's resolution."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bgkit.commands import remote, ssh
from bgkit.commands.build import cmake_install, ctest
from bgkit.config import parse_config
from bgkit.errors import ConfigError
from bgkit.version_signal import VersionSource
from tests.conftest import example_data, merge


def problems(changes: dict[str, object], tmp_path: Path | None = None) -> list[str]:
    data = merge(example_data(), changes)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, path=(tmp_path or Path("/x")) / "bgkit.toml")
    return caught.value.problems


def test_an_unknown_placeholder_lists_every_placeholder() -> None:
    (problem,) = problems({"service": {"args": ["--listen={adress}:{port}"]}})
    assert problem.startswith('service.args[0]: unknown placeholder {adress} in "--listen=')
    for name in ("address", "port", "host", "pool", "version", "release", "root", "shared",
                 "current"):
        assert "{" + name + "}" in problem


def test_a_systemd_unit_cannot_hold_what_changes_with_each_release() -> None:
    (problem,) = problems({"service": {"args": ["--tag={version}"]}})
    assert "uses {version}, which changes with every release" in problem
    assert "[[service.files]]" in problem


@pytest.mark.parametrize(("root", "setting"), [
    ("/home/deploy/app", "ProtectHome=yes"), ("/tmp/app", "PrivateTmp=yes")])
def test_a_deploy_root_the_unit_hides_is_refused_at_config_check(root: str,
                                                                  setting: str) -> None:
    data = example_data()
    data["pools"]["blue"]["hosts"][0]["deploy_root"] = root
    with pytest.raises(ConfigError) as caught:
        parse_config(data, path="/x/bgkit.toml")
    (problem,) = caught.value.problems
    assert problem.startswith(f"pools.blue.hosts[0].deploy_root {root}: {setting}")


def test_an_undefined_template_variable_fails_at_config_check(tmp_path: Path) -> None:
    (tmp_path / "app.conf.j2").write_text("listen {{ address }}:{{ prot }}\n")
    (problem,) = problems({"service": {"files": [{"template": "app.conf.j2",
                                                  "path": "app.conf"}]}}, tmp_path)
    assert problem.startswith("service.files[0].template: app.conf.j2 uses undefined "
                              "variable(s) prot")


def test_a_missing_template_is_named(tmp_path: Path) -> None:
    (problem,) = problems({"service": {"files": [{"template": "nope.j2", "path": "a"}]}},
                          tmp_path)
    assert "nope.j2 does not exist" in problem


def test_version_from_takes_a_header_a_json_pointer_or_none() -> None:
    (problem,) = problems({"service": {"version_from": "body:/v"}})
    assert problem.startswith('service.version_from: expected "header:<HTTP header>"')
    response = httpx.Response(200, json={"build": {"version": "1.2"}},
                              headers={"X-V": "9"})
    assert VersionSource.parse("json:/build/version").read(response) == "1.2"
    assert VersionSource.parse("header:X-V").read(response) == "9"
    assert VersionSource.parse("none").read(response) is None
    assert VersionSource.parse("json:/missing").read(httpx.Response(200, text="no")) is None


def test_ctest_and_install_components_become_argv() -> None:
    assert ctest(build_dir=Path("/b"), jobs=2, extra=["-E", "network"])[-2:] == [
        "-E", "network"]
    assert cmake_install(build_dir=Path("/b"), component="server") == [
        "cmake", "--install", "/b", "--component", "server"]


def test_ssh_g_output_gives_hostname_user_port_keys_and_jump_hops() -> None:
    target = ssh.parse_resolved(
        "user deploy\nhostname 10.0.0.5\nport 2200\nidentityfile ~/.ssh/a\n"
        "identityfile /k/b\nproxyjump jump@[127.0.9.1]:2201,ssh://x@y\n")
    assert (target.hostname, target.user, target.port) == ("10.0.0.5", "deploy", 2200)
    assert target.identity_files == ("~/.ssh/a", "/k/b")
    assert target.proxy_jump == (ssh.Hop("127.0.9.1", "jump", 2201), ssh.Hop("y", "x", None))
    assert ssh.parse_resolved("hostname h\nuser u\nport 22\nproxyjump none\n").proxy_jump == ()
    assert ssh.resolve_argv("web1", port=None, user="d", config_file=Path("/c")) == [
        "ssh", "-G", "-F", "/c", "-l", "d", "--", "web1"]


def test_access_problems_name_what_the_service_user_cannot_reach() -> None:
    text = ("uid=998\ngids=998\ndir 700 1000 1000 /srv/a\ndir 755 1000 1000 /srv/a/releases\n"
            "dir 2775 1000 998 /srv/a/shared\nmissing /var/lib/x\n")
    found = remote.access_problems(text, user="svc", root="/srv/a", writable=["/var/lib/x"])
    assert len(found) == 2
    assert found[0].startswith("/srv/a is not searchable by the service user svc")
    assert "/var/lib/x does not exist on the host" in found[1]
    assert remote.access_problems("uid=\ngids=\n", user="svc", root="/r", writable=[]) == [
        "the service user svc does not exist on the host (create it, then run the host setup)"]
