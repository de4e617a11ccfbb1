"""The privileged path for systemd hosts: the unit systemd reads back as meant, the sudoers
file visudo accepts, the setup script that installs both, and the drift a deploy refuses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgkit.cli import main
from bgkit.commands import host_setup, service
from bgkit.config import Config, parse_config
from bgkit.errors import UsageError
from bgkit.host_setup import host_setups
from tests.conftest import example_data, merge


def config_with(**service_changes: object) -> Config:
    return parse_config(merge(example_data(), {"service": service_changes}), path="bgkit.toml")


# --- the unit: what systemd reads back is what was meant ------------------------------

def systemd_words(value: str, *, command: bool) -> list[str]:
    """Split a list setting as systemd.syntax(7) does, for the forms bgkit writes.

    In a ``command``, '$$' stands for '$' in the arguments but not in the executable path.
    """
    words = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"|([^\s"\\]+)', value):
        quoted, bare = match.groups()
        word = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        words.append(unescape(word, command=command and bool(words)))
    assert " ".join(m.group(0) for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[^\s"\\]+',
                                                   value)) == value
    return words


def unescape(text: str, *, command: bool) -> str:
    """Specifiers: every '%' doubled; in a command, every '$' doubled too."""
    for sign in ("%", "$") if command else ("%",):
        assert re.fullmatch(rf"(?:[^{re.escape(sign)}]|{re.escape(sign * 2)})*", text), text
        text = text.replace(sign * 2, sign)
    return text


def setting(unit: str, key: str) -> str:
    (line,) = [line for line in unit.splitlines() if line.startswith(f"{key}=")]
    return line.removeprefix(f"{key}=")


printable = st.text(st.characters(blacklist_categories=("Cc", "Cs"),
                                  blacklist_characters="{}"), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(args=st.lists(printable, max_size=4), root_tail=printable)
def test_the_unit_reads_back_as_the_arguments_and_root_meant(args: list[str],
                                                             root_tail: str) -> None:
    root = "/srv/" + root_tail.replace("/", "_").replace("..", "__")
    config = parse_config(merge(example_data(), {"service": {"args": args}}),
                          path="bgkit.toml")
    unit = service.render_unit(config, root=root)
    plain = service.render_unit(config_with(args=[]), root="/srv/x")
    assert [line.split("=", 1)[0] for line in unit.splitlines()] == \
        [line.split("=", 1)[0] for line in plain.splitlines()]
    assert systemd_words(setting(unit, "ExecStart"), command=True) == \
        [f"{root}/current/bin/hello-c", *args]
    assert systemd_words(setting(unit, "ReadWritePaths"), command=False) == [f"{root}/shared"]
    assert unescape(setting(unit, "WorkingDirectory"), command=False) == f"{root}/current"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize(("root_name", "args"), [
    ("srv %h $HOME", ["--pct=50%", "$USER", "$PATH:x", ";", "a\\", 'q"uote', "it's"]),
    ("srv;x", ["--config={shared}/config.ini", "%n%%", "\\;"]),
])
def test_systemd_analyze_verify_accepts_units_with_hostile_roots_and_args(
        tmp_path: Path, root_name: str, args: list[str]) -> None:
    root = tmp_path / root_name
    binary = root / "current" / "bin" / "hello-c"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    (root / "shared").mkdir()
    unit = tmp_path / "hello-c.service"
    unit.write_text(service.render_unit(config_with(args=args), root=str(root)))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "hello-c.service" not in done.stderr, done.stderr


# --- the sudoers file: exactly the privileged commands, and valid ---------------------

def test_the_sudoers_file_grants_exactly_restart_stop_is_active_and_the_journal() -> None:
    text = host_setup.render_sudoers(config_with(), user="deploy")
    assert text.splitlines()[3:] == [
        "deploy ALL=(root) NOPASSWD: /usr/bin/systemctl restart hello-c.service, \\",
        "    /usr/bin/systemctl stop hello-c.service, \\",
        "    /usr/bin/systemctl is-active --quiet hello-c.service, \\",
        "    /usr/bin/journalctl -u hello-c.service -n 20 --no-pager",
    ]
    assert "install" not in text.split("\n", 3)[3] and "daemon-reload" not in text


def test_the_sudoers_file_is_named_so_that_sudo_reads_it() -> None:
    config = parse_config(merge(example_data(), {"service": {"systemd": {
        "unit": "hello.web-1.service"}}}), path="bgkit.toml")
    assert host_setup.sudoers_path(config) == "/etc/sudoers.d/bgkit-hello_web-1"


@pytest.mark.skipif(shutil.which("visudo") is None, reason="needs visudo (apt: sudo)")
@pytest.mark.parametrize("user", ["deploy", "ci.deploy", "_bgkit-1"])
def test_visudo_accepts_the_sudoers_file(tmp_path: Path, user: str) -> None:
    path = tmp_path / "bgkit-hello-c"
    path.write_text(host_setup.render_sudoers(config_with(), user=user))
    done = subprocess.run(["visudo", "-cf", str(path)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("visudo") is None, reason="needs visudo (apt: sudo)")
def test_visudo_catches_a_broken_sudoers_file(tmp_path: Path) -> None:
    path = tmp_path / "broken"
    path.write_text("deploy ALL=(root NOPASSWD /usr/bin/systemctl\n")
    assert subprocess.run(["visudo", "-cf", str(path)], capture_output=True,
                          check=False).returncode != 0


# --- the setup script, run for real against temporary folders ------------------------

@pytest.mark.skipif(shutil.which("visudo") is None, reason="needs visudo (apt: sudo)")
def test_the_setup_script_installs_the_unit_and_sudoers_then_enables_the_unit(
        tmp_path: Path) -> None:
    units, sudoers, root = tmp_path / "units", tmp_path / "sudoers.d", tmp_path / "srv" / "app"
    sudoers.mkdir()
    config = parse_config(merge(example_data(), {"service": {"systemd": {
        "user": "root", "unit_dir": str(units)}}}), path="bgkit.toml")
    user = os.environ.get("USER") or "root"
    script = host_setup.setup_script(config, root=str(root), user=user, label="blue[0]",
                                     sudoers_dir=str(sudoers))
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    calls = tmp_path / "systemctl.calls"
    (fake_bin / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (fake_bin / "systemctl").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    for _ in range(2):  # a second run is harmless
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                              env=env, check=False)
        assert done.returncode == 0, done.stderr
    assert (units / "hello-c.service").read_text() == service.render_unit(config,
                                                                          root=str(root))
    installed = sudoers / "bgkit-hello-c"
    assert installed.read_text() == host_setup.render_sudoers(config, user=user)
    assert installed.stat().st_mode & 0o777 == 0o440
    assert sorted(p.name for p in units.iterdir()) == ["hello-c.service"]
    assert sorted(p.name for p in sudoers.iterdir()) == ["bgkit-hello-c"]
    assert root.is_dir()
    assert calls.read_text() == "daemon-reload\nenable hello-c.service\n" * 2


def test_the_setup_script_stops_when_the_service_user_is_missing(tmp_path: Path) -> None:
    config = parse_config(merge(example_data(), {"service": {"systemd": {
        "user": "no-such-user-bgkit", "unit_dir": str(tmp_path / "units")}}}),
        path="bgkit.toml")
    script = host_setup.setup_script(config, root=str(tmp_path / "srv"), user="root",
                                     label="blue[0]", sudoers_dir=str(tmp_path))
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "create the service user no-such-user-bgkit first" in done.stderr
    assert not (tmp_path / "units").exists()


# --- host setup from the library and the command line -------------------------------

def test_host_setup_is_only_for_systemd_and_names_the_hosts(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match='is for \\[service\\] manager = "systemd"'):
        host_setups(config_with(manager="sandbox"))
    with pytest.raises(UsageError, match="no host of blue has the address 10.9.9.9; the "
                       "hosts are blue\\[0\\] deploy@127.0.1.1:2222"):
        host_setups(config_with(), pool="blue", address="10.9.9.9")


def test_bgkit_host_setup_prints_one_script_or_writes_every_host(
        write_config: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config()  # type: ignore[operator]
    assert main(["host", "setup", "--config", str(path), "--pool", "green"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("#!/bin/sh\n# bgkit host setup for green[0] deploy@127.0.2.1")
    assert main(["host", "setup", "--config", str(path)]) == 2
    assert "2 hosts match" in capsys.readouterr().err
    assert main(["host", "setup", "--config", str(path), "--out", str(tmp_path / "o")]) == 0
    assert sorted(p.relative_to(tmp_path / "o").as_posix()
                  for p in (tmp_path / "o").rglob("*") if p.is_file()) == [
        "blue-0/bgkit-hello-c", "blue-0/hello-c.service", "blue-0/setup.sh",
        "green-0/bgkit-hello-c", "green-0/hello-c.service", "green-0/setup.sh"]


# --- drift: a deploy compares the installed unit with the rendering -----------------

def test_unit_drift_says_missing_or_the_first_line_that_differs() -> None:
    rendered = service.render_unit(config_with(), root="/srv/a")
    assert service.unit_drift(rendered, rendered) is None
    assert service.unit_drift("", rendered) == "is not installed"
    changed = rendered.replace("User=hello", "User=root")
    assert service.unit_drift(changed, rendered) == (
        "differs from the one bgkit.toml renders at line 8: the host has 'User=root', "
        "bgkit.toml renders 'User=hello'")
    assert service.unit_drift(rendered + "ExecStartPre=+/bin/id\n", rendered) == (
        "differs from the one bgkit.toml renders: it has more lines")


def test_the_installed_unit_is_read_from_unit_dir() -> None:
    config = parse_config(merge(example_data(), {"service": {"systemd": {
        "unit_dir": "/run/units/"}}}), path="bgkit.toml")
    assert service.unit_path(config) == "/run/units/hello-c.service"
    assert service.unit_path(config_with()) == "/etc/systemd/system/hello-c.service"
