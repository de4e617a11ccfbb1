"""Pool parity: one command's output parsed, the pools compared, the gate decided; a
release needing a newer glibc than a host has is refused before anything is uploaded."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgkit.commands.remote import (
    HostFacts,
    glibc_version,
    host_facts,
    missing_libraries,
    parse_host_facts,
)
from bgkit.parity import compare, glibc_required, libc_problem

SAID = "cpus=8\nmem_kib=32803524\nkernel=6.1.0-26-amd64\narch=x86_64\nlibc=glibc 2.36\n"


def facts(**changes: object) -> HostFacts:
    base = {"cpus": 8, "memory_mib": 32034, "kernel": "6.1.0-26-amd64", "arch": "x86_64",
            "libc": "glibc 2.36"}
    return HostFacts(**{**base, **changes})  # type: ignore[arg-type]


def test_the_facts_command_parses_on_this_machine() -> None:
    said = subprocess.run(["sh", "-c", host_facts()], capture_output=True, text=True,
                          check=True).stdout
    read = parse_host_facts(said)
    assert read.cpus >= 1 and read.memory_mib > 100 and read.arch and read.kernel
    assert read.glibc is not None and read.glibc >= (2, 17), read.libc


def test_parsing_names_what_is_wrong() -> None:
    assert parse_host_facts(SAID) == facts(memory_mib=32034)
    with pytest.raises(ValueError, match="unexpected host facts .*'cpus'"):
        parse_host_facts(SAID.replace("cpus=8\n", ""))
    with pytest.raises(ValueError, match="invalid literal"):
        parse_host_facts(SAID.replace("cpus=8", "cpus=eight"))
    with pytest.raises(ValueError, match="positive"):
        parse_host_facts(SAID.replace("cpus=8", "cpus=0"))


@given(st.text(max_size=300))
def test_the_parser_only_ever_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_host_facts(text)


def test_identical_pools_pass_and_a_different_host_is_shown_then_gated() -> None:
    same = [("blue", "127.0.1.1", facts()), ("green", "127.0.2.1", facts(memory_mib=32020))]
    assert compare(same, "fail").differences == ()  # MiB apart is the same GiB
    assert compare(same, "fail").gate().verdict == "pass"
    odd = [("blue", "127.0.1.1", facts()), ("blue", "127.0.1.2", facts()),
           ("green", "127.0.2.1", facts()), ("green", "127.0.2.2",
                                             facts(cpus=4, kernel="5.10.0-32-amd64"))]
    warned = compare(odd, "warn")
    assert [d.describe() for d in warned.differences] == [
        "CPUs: blue 8; green 4, 8",
        "kernel: blue 6.1.0-26-amd64; green 5.10.0-32-amd64, 6.1.0-26-amd64"]
    assert warned.gate().verdict == "pass" and "shown only" in warned.gate().reason
    failed = compare(odd, "fail").gate()
    assert failed.verdict == "fail" and 'parity = "fail"' in failed.reason
    assert list(warned.differences_table()["fact"]) == ["CPUs", "kernel"]


def test_a_host_that_cannot_be_read_is_reported_and_fails_nothing_silently() -> None:
    rows = [("blue", "127.0.1.1", facts()), ("green", "127.0.2.1", "connection refused")]
    report = compare(rows, "fail")
    assert report.unread == ("green 127.0.2.1: connection refused",)
    assert report.verdict == "inconclusive" and report.differences == ()
    assert compare(rows, "warn").verdict == "pass"
    assert report.to_dict()["hosts"][1]["error"] == "connection refused"


def test_a_verdict_takes_the_parity_gate_by_the_same_rule() -> None:
    from bgkit.analysis import GateResult
    from bgkit.analysis.gates import Verdict

    base = Verdict("pass", (GateResult("samples", "pass", "", "", ""),), None,  # type: ignore[arg-type]
                   None)  # type: ignore[arg-type]
    odd = compare([("blue", "a", facts()), ("green", "b", facts(arch="aarch64"))], "fail")
    judged = base.with_gates(odd.gate())
    assert judged.overall == "fail" and judged.reasons()[0].startswith("parity: the pools")


OBJDUMP = """
Dynamic Section:
  NEEDED               libc.so.6
Version References:
  required from libm.so.6:
    0x06969194 0x00 04 GLIBC_2.29
  required from libc.so.6:
    0x06969188 0x00 12 GLIBC_2.3.4
    0x06969194 0x00 11 GLIBC_2.34
    0x0d696914 0x00 08 GLIBC_2.4
"""


def test_what_a_release_needs_is_the_newest_symbol_version() -> None:
    assert glibc_required([OBJDUMP]) == "2.34"  # not "2.4": compared as numbers
    assert glibc_required(["GLIBC_2.99 mentioned outside the references"]) is None
    assert glibc_version("GLIBC_2.3.4") == (2, 3, 4) and glibc_version("2.x") is None


@pytest.mark.skipif(shutil.which("objdump") is None or shutil.which("cc") is None,
                    reason="needs a C toolchain")
def test_a_real_binary_needs_at_most_this_machines_glibc(tmp_path: Path) -> None:
    from bgkit.parity import release_glibc

    source = tmp_path / "a.c"
    source.write_text('#include <stdio.h>\nint main(void){puts("hi");return 0;}\n')
    subprocess.run(["cc", "-o", str(tmp_path / "a"), str(source)], check=True)
    needed = release_glibc([tmp_path / "a"])
    here = parse_host_facts(subprocess.run(["sh", "-c", host_facts()], capture_output=True,
                                           text=True, check=True).stdout)
    assert needed is not None and here.glibc is not None
    assert glibc_version(needed) <= here.glibc  # type: ignore[operator]
    assert libc_problem(here, needed) is None


def test_an_older_or_other_libc_on_a_host_is_a_preflight_error() -> None:
    problem = libc_problem(facts(libc="glibc 2.31"), "2.34")
    assert problem is not None and "needs glibc 2.34 or newer, the host has glibc 2.31" in \
        problem and "would not load" in problem
    assert "musl" in (libc_problem(facts(libc="musl libc (x86_64)"), "2.17") or "")
    assert libc_problem(facts(libc="glibc 2.36"), "2.36") is None
    assert libc_problem(facts(libc="musl libc (x86_64)"), None) is None  # static


def test_ldd_reports_missing_symbol_versions_as_missing() -> None:
    said = ("\t/srv/x/bin/app: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not "
            "found (required by /srv/x/bin/app)\n\tlibfoo.so.1 => not found\n"
            "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n")
    assert missing_libraries(said) == ["libc.so.6 (GLIBC_2.38)", "libfoo.so.1"]


def test_parity_fail_refuses_a_switch_to_a_pool_that_differs_and_warn_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bgkit.verify
    from bgkit.switch import switch
    from bgkit.testing import FakeFleet

    reads: list[str] = []

    def fake_collect(config: object) -> object:  # a host reporting other values
        reads.append("read")
        return compare([("blue", "127.0.91.1", facts()),
                        ("green", "127.0.92.1", facts(memory_mib=16017))],
                       config.gates.parity)  # type: ignore[attr-defined]

    monkeypatch.setattr(bgkit.verify, "collect", fake_collect)
    with FakeFleet(blue="1.0.0", green="2.0.0") as fleet:
        strict = fleet.config(tmp_path, gates={"parity": "fail"})
        refused = switch(strict, lb=fleet.lb,
                         ledger=fleet.ledger, expected_version="2.0.0", approve=True)
        assert refused.ended == "refused" and fleet.lb.applied == "blue"
        assert "parity: the pools differ (memory (GiB): blue 31; green 16)" in refused.reason
        lenient = fleet.config(tmp_path)  # parity = "warn": not even read by a switch
        went = switch(lenient, lb=fleet.lb,
                      ledger=fleet.ledger, expected_version="2.0.0", approve=True)
        assert went.ended == "switched", went.reason
    assert reads == ["read"]
