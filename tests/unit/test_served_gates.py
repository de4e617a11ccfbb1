"""The release, not the label: the release gate, the drift gate, and builds on the wire."""

from __future__ import annotations

import pytest

from bgkit.analysis.served import HostRelease, release_gate, servers_gate
from bgkit.probe import Target, _answer_error
from bgkit.version_signal import answers_release, build_of

HOSTS = ["127.0.2.1", "127.0.2.2"]
RELEASE = "app-2.0.0-1a2b3c4"


def gate(releases: dict[str, HostRelease] | None, expected: str | None = RELEASE) -> tuple[
        str, str]:
    result = release_gate(expected_release=expected, expected_version="2.0.0", hosts=HOSTS,
                          releases=releases)
    return result.verdict, result.reason


def test_every_idle_host_serving_the_release_passes() -> None:
    verdict, reason = gate({h: HostRelease(RELEASE, "2.0.0") for h in HOSTS})
    assert verdict == "pass" and RELEASE in reason


def test_another_build_of_the_same_version_fails_naming_both_builds() -> None:
    verdict, reason = gate({HOSTS[0]: HostRelease(RELEASE, "2.0.0"),
                            HOSTS[1]: HostRelease("app-2.0.0-1a2b3c4-dirty5e6f", "2.0.0")})
    assert verdict == "fail"
    assert "127.0.2.2 serves app-2.0.0-1a2b3c4-dirty5e6f (another build of 2.0.0)" in reason
    assert f"not serving {RELEASE}" in reason and "127.0.2.1" not in reason


def test_a_release_that_cannot_be_read_is_inconclusive_never_pass() -> None:
    verdict, reason = gate({HOSTS[0]: HostRelease(RELEASE, "2.0.0"),
                            HOSTS[1]: HostRelease(None, error="ssh: connection refused")})
    assert verdict == "inconclusive" and "127.0.2.2 (ssh: connection refused)" in reason
    assert gate(None)[0] == "inconclusive"


def test_without_a_release_id_the_gate_says_it_did_not_check() -> None:
    verdict, reason = gate(None, expected=None)
    assert verdict == "pass" and "not checked" in reason


def test_drift_fails_the_servers_gate_naming_each_difference() -> None:
    result = servers_gate(["green-9 (127.0.1.1:8080) serves the green pool ..."])
    assert result.verdict == "fail" and "green-9 (127.0.1.1:8080)" in result.reason
    assert servers_gate([]).verdict == "pass" and servers_gate(None).reason == "not compared"


def test_a_build_on_the_wire_is_the_release_only_when_it_is_this_build() -> None:
    build = build_of(RELEASE, name="app", version="2.0.0")
    assert build == "1a2b3c4"
    assert build_of(RELEASE, name="other", version="2.0.0") is None
    assert build_of(None, name="app", version="2.0.0") is None
    assert answers_release("2.0.0", version="2.0.0", build=build)  # the label alone
    assert answers_release("2.0.0+1a2b3c4", version="2.0.0", build=build)
    assert not answers_release("2.0.0+9f9f9f9", version="2.0.0", build=build)
    assert answers_release("2.0.0+9f9f9f9", version="2.0.0", build=None)
    assert not answers_release("2.0.1", version="2.0.0", build=None)
    assert not answers_release(None, version="2.0.0", build=None)


@pytest.mark.parametrize(("said", "error"), [
    ("2.0.0", ""), ("2.0.0+1a2b3c4", ""), ("2.0.0+0000000", "wrong_version"),
    ("1.0.0", "wrong_version"),
])
def test_an_answer_naming_another_build_is_from_another_release(said: str, error: str) -> None:
    target = Target(pool="green", host="127.0.2.1", target="host", url="http://x/health",
                    expected_version="2.0.0", expected_build="1a2b3c4")
    assert _answer_error(200, said, target, None) == error
