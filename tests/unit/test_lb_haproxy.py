"""The provider registry and the HAProxy provider's edges, against a scripted socket.

The real HAProxy is exercised in tests/integration/test_haproxy_provider.py; here a
tiny unix-socket server answers like HAProxy does so that refusals and failures that a
healthy HAProxy never produces can be checked quickly.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bgkit.config import HaproxySettings, load_config
from bgkit.errors import LoadBalancerError, UsageError
from bgkit.lb import get_provider, provider_names
from bgkit.lb.haproxy import HaproxyProvider, runtime_endpoint
from tests.conftest import WriteConfig

FIXTURES = Path(__file__).parent / "fixtures"
GUARD = ".live.map.bgkit-guard"  # the flock'ed guard: the only file bgkit adds


class FakeRuntimeApi:
    """Answers one command per connection from ``answers`` and records what it got."""

    def __init__(self, path: Path, answers: Callable[[str], str]) -> None:
        self.commands: list[str] = []
        self.answers = answers
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    data += conn.recv(4096)
                command = data.decode().strip()
                self.commands.append(command)
                conn.sendall(self.answers(command).encode())

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: unix socket paths are limited to 108 bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bgk") as name:
        yield Path(name)


def make_provider(folder: Path, answers: Callable[[str], str]) -> tuple[HaproxyProvider,
                                                                         FakeRuntimeApi]:
    (folder / "live.map").write_text("# bgkit\nlive blue\n")
    fake = FakeRuntimeApi(folder / "api.sock", answers)
    settings = HaproxySettings(runtime_api=str(folder / "api.sock"),
                               map_file=str(folder / "live.map"))
    return HaproxyProvider(settings, timeout_s=2), fake


def healthy_haproxy(live: list[str]) -> Callable[[str], str]:
    def answer(command: str) -> str:
        if command.startswith("show map"):
            return f"0x1 live {live[0]}\n\n"
        if command == "show backend":
            return "# name\nblue\ngreen\n\n"
        if command.startswith("set map"):
            live[0] = command.split()[-1]
            return "\n"
        return "Unknown command\n\n"
    return answer


def test_switch_sets_the_map_entry_and_rewrites_the_file_keeping_other_lines(
        short_dir: Path) -> None:
    provider, fake = make_provider(short_dir, healthy_haproxy(["blue"]))
    result = provider.switch("green", timeout_s=2)
    fake.close()
    assert (result.previous, result.live) == ("blue", "green")
    assert result.applied_s > 0
    assert f"set map {short_dir}/live.map live green" in fake.commands
    assert (short_dir / "live.map").read_text() == "# bgkit\nlive green\n"
    assert sorted(p.name for p in short_dir.iterdir()) == [GUARD, "api.sock", "live.map"]


def test_a_refused_set_map_leaves_the_map_file_as_it_was(short_dir: Path) -> None:
    def refuse(command: str) -> str:
        if command.startswith("set map"):
            return "Permission denied\n\n"
        return healthy_haproxy(["blue"])(command)

    provider, fake = make_provider(short_dir, refuse)
    with pytest.raises(LoadBalancerError, match="level admin"):
        provider.switch("green", timeout_s=2)
    fake.close()
    assert (short_dir / "live.map").read_text() == "# bgkit\nlive blue\n"
    assert sorted(p.name for p in short_dir.iterdir()) == [GUARD, "api.sock", "live.map"]


def test_a_failed_rename_sets_the_runtime_entry_back(
        short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live = ["blue"]
    provider, fake = make_provider(short_dir, healthy_haproxy(live))

    def broken_replace(self: Path, target: Path) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "replace", broken_replace)
    with pytest.raises(LoadBalancerError, match="set back to blue"):
        provider.switch("green", timeout_s=2)
    fake.close()
    assert live == ["blue"]
    assert [c.split()[-1] for c in fake.commands if c.startswith("set map")] == [
        "green", "blue"]
    assert (short_dir / "live.map").read_text() == "# bgkit\nlive blue\n"


def test_a_switch_interrupted_before_its_confirmation_is_repaired_on_the_next_read(
        short_dir: Path) -> None:
    live = ["green"]  # the runtime was set, then the switching process died
    provider, fake = make_provider(short_dir, healthy_haproxy(live))
    (short_dir / ".live.map.bgkit-switch").write_text("# bgkit\nlive green\n")
    state = provider.state()
    fake.close()
    assert state.live == "blue" and live == ["blue"]
    assert "interrupted before it was confirmed" in state.detail
    assert (short_dir / "live.map").read_text() == "# bgkit\nlive blue\n"
    assert sorted(p.name for p in short_dir.iterdir()) == [GUARD, "api.sock", "live.map"]


def test_a_runtime_changed_by_hand_is_refused_with_the_reason(short_dir: Path) -> None:
    live = ["green"]
    provider, fake = make_provider(short_dir, healthy_haproxy(live))
    with pytest.raises(LoadBalancerError, match="changed one of them by hand"):
        provider.live_pool()
    with pytest.raises(LoadBalancerError, match="by hand"):
        provider.switch("blue", timeout_s=2)
    fake.close()
    assert live == ["green"] and not any(c.startswith("set map") for c in fake.commands)


def test_a_journal_left_where_runtime_and_file_agree_is_only_removed(short_dir: Path) -> None:
    provider, fake = make_provider(short_dir, healthy_haproxy(["blue"]))
    (short_dir / ".live.map.bgkit-switch").write_text("# bgkit\nlive green\n")
    assert provider.live_pool() == "blue"
    fake.close()
    assert not any(c.startswith("set map") for c in fake.commands)
    assert sorted(p.name for p in short_dir.iterdir()) == [GUARD, "api.sock", "live.map"]


def test_switch_refuses_a_backend_haproxy_does_not_have(short_dir: Path) -> None:
    def only_blue(command: str) -> str:
        return "# name\nblue\n\n" if command == "show backend" else \
            healthy_haproxy(["blue"])(command)

    provider, fake = make_provider(short_dir, only_blue)
    with pytest.raises(LoadBalancerError, match="no backend named 'green'"):
        provider.switch("green", timeout_s=2)
    fake.close()
    assert not any(c.startswith("set map") for c in fake.commands)


def test_live_pool_refuses_a_backend_that_is_neither_pool(short_dir: Path) -> None:
    provider, fake = make_provider(short_dir, healthy_haproxy(["legacy"]))
    (short_dir / "live.map").write_text("live legacy\n")
    with pytest.raises(LoadBalancerError, match="'legacy', which is neither blue"):
        provider.live_pool()
    fake.close()


def test_live_pool_explains_an_unknown_map(short_dir: Path) -> None:
    provider, fake = make_provider(
        short_dir, lambda command: "Unknown map identifier. Please use #<id> or <file>.\n\n")
    with pytest.raises(LoadBalancerError, match="spelled exactly as in the map"):
        provider.live_pool()
    fake.close()


def test_backend_health_reads_servers_of_both_backends_from_show_stat(
        short_dir: Path) -> None:
    stat = (FIXTURES / "haproxy_show_stat.csv").read_text()
    provider, fake = make_provider(short_dir, lambda command: stat)
    servers = provider.backend_health()
    fake.close()
    assert [(s.pool, s.name, s.address, s.port, s.status, s.healthy) for s in servers] == [
        ("blue", "blue-1", "127.0.1.1", 18081, "UP", True),
        ("blue", "blue-2", "127.0.1.2", 18081, "DOWN", False),
        ("green", "green-1", "127.0.2.1", 18081, "DOWN", False),
        ("green", "green-2", "127.0.2.2", 18081, "MAINT", False),
    ]
    assert servers[1].detail == "L4CON Layer4 connection problem: Connection refused"
    assert servers[2].detail == "L7STS Layer7 wrong status: Service Unavailable"


def test_open_sessions_reads_each_servers_scur_from_show_stat(short_dir: Path) -> None:
    stat = (FIXTURES / "haproxy_show_stat.csv").read_text()
    stat = stat.replace("green,green-1,0,0,0,", "green,green-1,0,0,3,")
    provider, fake = make_provider(short_dir, lambda command: stat)
    assert provider.open_sessions("green") == {("127.0.2.1", 18081): 3,
                                               ("127.0.2.2", 18081): 0}
    assert provider.open_sessions("blue") == {("127.0.1.1", 18081): 0,
                                              ("127.0.1.2", 18081): 0}
    fake.close()


def test_a_missing_socket_says_what_to_check(tmp_path: Path) -> None:
    settings = HaproxySettings(runtime_api=str(tmp_path / "nope.sock"),
                               map_file=str(tmp_path / "live.map"))
    with pytest.raises(LoadBalancerError, match="is HAProxy running"):
        HaproxyProvider(settings).live_pool()


@pytest.mark.parametrize(("text", "family", "address"), [
    ("/run/haproxy/admin.sock", socket.AF_UNIX, "/run/haproxy/admin.sock"),
    ("unix@/run/a.sock", socket.AF_UNIX, "/run/a.sock"),
    ("127.0.0.1:9999", socket.AF_INET, ("127.0.0.1", 9999)),
    ("ipv4@127.0.0.1:9999", socket.AF_INET, ("127.0.0.1", 9999)),
    ("ipv6@[::1]:9999", socket.AF_INET6, ("::1", 9999)),
    ("lb.internal:9999", socket.AF_INET, ("lb.internal", 9999)),
    ("run/admin.sock", socket.AF_UNIX, "/etc/bgkit/run/admin.sock"),
])
def test_runtime_api_addresses_are_unix_paths_or_tcp(
        text: str, family: socket.AddressFamily, address: object) -> None:
    endpoint = runtime_endpoint(text, base_dir=Path("/etc/bgkit"))
    assert (endpoint.family, endpoint.address) == (family, address)


def test_the_registry_lists_its_providers() -> None:
    assert provider_names() == ["haproxy", "ovh-iplb", "ovh-cloud-lb"]


def test_an_unknown_provider_name_is_a_usage_error_listing_the_names(
        write_config: WriteConfig) -> None:
    config = load_config(write_config())
    renamed = config.model_copy(update={"lb": config.lb.model_copy(update={"provider": "x"})})
    with pytest.raises(UsageError, match=r'named "x" \(providers: haproxy, ovh-iplb, '
                                         r'ovh-cloud-lb\)'):
        get_provider(renamed)


def test_get_provider_builds_haproxy_with_paths_relative_to_the_config(
        write_config: WriteConfig, tmp_path: Path) -> None:
    config = load_config(write_config({"lb": {"haproxy": {
        "runtime_api": "run/admin.sock", "map_file": "live.map"}}}))
    provider = get_provider(config)
    assert isinstance(provider, HaproxyProvider)
    assert provider.name == "haproxy"
    assert provider.map_file == tmp_path / "live.map"
    assert provider.api.endpoint.address == str(tmp_path / "run" / "admin.sock")


def test_a_set_map_that_timed_out_but_was_applied_still_rewrites_the_file(
        short_dir: Path) -> None:
    live = ["blue"]
    normal = healthy_haproxy(live)

    def applies_then_says_nothing_useful(command: str) -> str:
        if command.startswith("set map"):
            normal(command)
            return "Timeout waiting for the reply\n\n"
        return normal(command)

    provider, fake = make_provider(short_dir, applies_then_says_nothing_useful)
    assert provider.switch("green", timeout_s=2).live == "green"
    fake.close()
    assert (short_dir / "live.map").read_text() == "# bgkit\nlive green\n"


def test_a_map_file_path_the_runtime_api_cannot_carry_is_refused_up_front() -> None:
    settings = HaproxySettings(runtime_api="/run/a.sock", map_file="/etc/my maps/live.map")
    with pytest.raises(LoadBalancerError, match=r"map_file: map file '/etc/my maps/live.map'"):
        HaproxyProvider(settings)


# --- the canary split: runtime and map file ----------------------------------------------

def map_haproxy(entries: dict[str, str]) -> Callable[[str], str]:
    """show/set/add map over one in-memory map, as HAProxy answers them."""
    def answer(command: str) -> str:
        words = command.split()
        if words[:2] == ["show", "map"]:
            return "".join(f"0x{i} {k} {v}\n" for i, (k, v) in enumerate(entries.items())) + "\n"
        if words[:2] in (["set", "map"], ["add", "map"]):
            entries[words[3]] = words[4]
            return "\n"
        return "Unknown command\n\n"
    return answer


def test_a_kill_while_ending_a_split_leaves_the_file_ended_and_the_next_read_ends_it(
        short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ending a split writes the file first: a kill after it leaves the runtime at 25%
    and the file at 0%, and state() ends the split on the runtime too."""
    from bgkit.lb import haproxy

    runtime = {"live": "blue"}
    provider, fake = make_provider(short_dir, map_haproxy(runtime))
    provider.split("green", 25, timeout_s=2)
    assert (runtime["canary"], runtime["idle"]) == ("25", "green")
    original = provider._set_split

    def killed(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # the process dies between the file and the runtime
    monkeypatch.setattr(provider, "_set_split", killed)
    with pytest.raises(KeyboardInterrupt):
        provider.split("green", 0, timeout_s=2)
    monkeypatch.setattr(provider, "_set_split", original)
    assert runtime["canary"] == "25"
    assert haproxy.cmd.map_file_value((short_dir / "live.map").read_text(), "canary") == "0"
    state = provider.state()
    fake.close()
    assert (state.live, state.canary, state.canary_pool) == ("blue", 0, None)
    assert "a canary split was interrupted between the two, so bgkit ended it" in state.detail
    assert runtime["canary"] == "0"


def test_a_kill_while_raising_a_split_leaves_the_file_lower_and_the_read_ends_it(
        short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgkit.lb import haproxy

    runtime = {"live": "blue"}
    provider, fake = make_provider(short_dir, map_haproxy(runtime))
    provider.split("green", 10, timeout_s=2)

    def killed(path: Path, text: str) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(haproxy, "_replace_file", killed)
    with pytest.raises(KeyboardInterrupt):
        provider.split("green", 40, timeout_s=2)
    monkeypatch.undo()
    assert runtime["canary"] == "40" and "canary 10" in (short_dir / "live.map").read_text()
    state = provider.state()
    fake.close()
    assert state.canary == 0 and runtime["canary"] == "0"
    assert "canary 0" in (short_dir / "live.map").read_text()


def test_an_unwritable_map_file_when_ending_a_split_says_the_split_stays(
        short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is written first: when it cannot be, nothing changed and it says so."""
    from bgkit.lb import haproxy

    runtime = {"live": "blue"}
    provider, fake = make_provider(short_dir, map_haproxy(runtime))
    provider.split("green", 25, timeout_s=2)

    def full(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(haproxy, "_replace_file", full)
    with pytest.raises(LoadBalancerError, match="the split of 25% was left as it was"):
        provider.split("green", 0, timeout_s=2)
    monkeypatch.undo()
    fake.close()
    assert runtime["canary"] == "25" and "canary 25" in (short_dir / "live.map").read_text()


def test_an_unwritable_map_file_when_raising_a_split_sets_the_runtime_back_to_the_file(
        short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgkit.lb import haproxy

    runtime = {"live": "blue"}
    provider, fake = make_provider(short_dir, map_haproxy(runtime))
    provider.split("green", 10, timeout_s=2)

    def full(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(haproxy, "_replace_file", full)
    with pytest.raises(LoadBalancerError, match=r"set back to what the file holds \(10%\)"):
        provider.split("green", 40, timeout_s=2)
    monkeypatch.undo()
    assert runtime["canary"] == "10"
    assert provider.state().canary == 10
    fake.close()


def test_a_failed_map_file_write_leaves_no_partial_file(short_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from bgkit.lb import haproxy

    (short_dir / "live.map").write_text("live blue\n")

    def no_space(self: Path, src: object = None) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Path, "replace", no_space)
    with pytest.raises(OSError):
        haproxy._replace_file(short_dir / "live.map", "live green\n")
    monkeypatch.undo()
    assert sorted(p.name for p in short_dir.iterdir()) == ["live.map"]
    assert (short_dir / "live.map").read_text() == "live blue\n"
