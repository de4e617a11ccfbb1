"""HAProxy runtime API commands, asserted exactly, and parsers fed captured answers.

The fixtures were captured from HAProxy 2.6.12 running the sandbox's generated config:
blue-1 ran hello-c (UP), blue-2 had no service (DOWN, connection refused), green-1
answered /health with 503 (DOWN, wrong status) and green-2 was disabled (MAINT).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bgkit.commands import haproxy as cmd

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = ["x; rm -rf /", "two words", "new\nline", "tab\there", "back\\slash", "", "nul\x00"]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_set_map_names_the_map_the_key_and_the_value() -> None:
    assert cmd.set_map("/etc/haproxy/bgkit-live.map", "live", "green") == (
        "set map /etc/haproxy/bgkit-live.map live green")


def test_show_commands_are_exact() -> None:
    assert cmd.show_map("/srv/lb/live.map") == "show map /srv/lb/live.map"
    assert cmd.show_stat() == "show stat"
    assert cmd.show_backend() == "show backend"


@pytest.mark.parametrize("hostile", HOSTILE)
def test_values_haproxy_would_split_or_escape_are_refused(hostile: str) -> None:
    with pytest.raises(ValueError, match="runtime API"):
        cmd.set_map("/m.map", "live", hostile)
    with pytest.raises(ValueError, match="runtime API"):
        cmd.set_map(f"/m{hostile}.map" if hostile else "", "live", "green")
    with pytest.raises(ValueError, match="runtime API"):
        cmd.set_map("/m.map", hostile, "green")
    with pytest.raises(ValueError, match="runtime API"):
        cmd.show_map(hostile)


def test_parse_map_reads_key_and_value_of_a_captured_answer() -> None:
    assert cmd.parse_map(fixture("haproxy_show_map.txt")) == {"live": "blue"}


def test_parse_map_keeps_values_with_spaces_and_accepts_an_empty_map() -> None:
    assert cmd.parse_map("0x1 live blue\n0x2 note two words\n\n") == {
        "live": "blue", "note": "two words"}
    assert cmd.parse_map("\n") == {}


def test_parse_map_refuses_an_error_answer_and_quotes_it() -> None:
    with pytest.raises(ValueError, match="Unknown map identifier"):
        cmd.parse_map("Unknown map identifier. Please use #<id> or <file>.\n\n")


def test_parse_backend_list_reads_names_in_order() -> None:
    assert cmd.parse_backend_list(fixture("haproxy_show_backend.txt")) == ["blue", "green"]
    with pytest.raises(ValueError, match="Permission denied"):
        cmd.parse_backend_list("Permission denied\n\n")


def test_parse_stat_csv_returns_every_row_with_status_address_and_check() -> None:
    rows = cmd.parse_stat_csv(fixture("haproxy_show_stat.csv"))
    summary = [(r.proxy, r.name, r.status, r.address, r.check_status) for r in rows]
    assert summary == [
        ("app", "FRONTEND", "OPEN", "", ""),
        ("blue", "blue-1", "UP", "127.0.1.1:18081", "L7OK"),
        ("blue", "blue-2", "DOWN", "127.0.1.2:18081", "L4CON"),
        ("blue", "BACKEND", "UP", "", ""),
        ("green", "green-1", "DOWN", "127.0.2.1:18081", "L7STS"),
        ("green", "green-2", "MAINT", "127.0.2.2:18081", ""),
        ("green", "BACKEND", "DOWN", "", ""),
    ]
    assert [r.is_server for r in rows] == [False, True, True, False, True, True, False]


def test_parse_stat_csv_keeps_check_messages_and_every_column() -> None:
    rows = {r.name: r for r in cmd.parse_stat_csv(fixture("haproxy_show_stat.csv"))}
    assert rows["blue-2"].check_description == "Layer4 connection problem"
    assert rows["blue-2"].last_check == "Connection refused"
    assert rows["green-1"].last_check == "Service Unavailable"
    assert rows["green-1"].fields["check_code"] == "503"
    assert rows["blue-1"].fields["check_health"] == "3"


def test_parse_stat_csv_refuses_text_without_the_header() -> None:
    with pytest.raises(ValueError, match="not show stat CSV: Permission denied"):
        cmd.parse_stat_csv("Permission denied\n")


def test_parse_stat_csv_refuses_a_truncated_row() -> None:
    with pytest.raises(ValueError, match="line 2 has 3 columns"):
        cmd.parse_stat_csv("# pxname,svname,status,addr,\nblue,blue-1,UP\n")


def test_render_map_file_replaces_the_live_line_and_keeps_the_rest() -> None:
    existing = "# routed by bgkit\nlive blue\nother x\nlive stale\n"
    assert cmd.render_map_file(existing, "live", "green") == (
        "# routed by bgkit\nlive green\nother x\n")


def test_render_map_file_appends_a_missing_entry() -> None:
    assert cmd.render_map_file("", "live", "blue") == "live blue\n"
    with pytest.raises(ValueError):
        cmd.render_map_file("", "live", "green\nlive blue")
