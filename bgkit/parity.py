"""Pool parity: the runbook's "ensure both Blue and Green environments have identical
resource allocations", checked rather than assumed.

Every host answers one read-only SSH command (:func:`bgkit.commands.remote.host_facts`):
CPU count, memory, kernel, architecture and libc. :func:`compare` (pure) sets the pools
side by side; ``[gates] parity`` decides what a difference does to the verdict: ``"warn"``
shows it, ``"fail"`` fails the gate. Memory is compared in whole GiB: two hosts of one
model report ``MemTotal`` a few MiB apart (the kernel's own reservations), which is no
difference an operator would act on.

A separate rule is not a matter of taste: a release linked against a newer glibc than a
host has does not load there. :func:`glibc_required` reads what a release needs from
``objdump -p`` at build time (the highest ``GLIBC_x.y`` symbol version among its ELF
files, kept in its manifest) and :func:`libc_problem` is the preflight check.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from bgkit.commands.remote import HostFacts, glibc_version, host_facts, parse_host_facts

if TYPE_CHECKING:
    from bgkit.analysis import GateResult
    from bgkit.config import Config
    from bgkit.hosts import Progress

__all__ = ["FACTS", "Difference", "ParityReport", "collect", "compare", "glibc_required",
           "libc_problem", "release_glibc"]

ParitySetting = Literal["warn", "fail"]
# the facts compared, with how each is shown; memory is compared in GiB (module docstring)
FACTS: tuple[tuple[str, str], ...] = (("cpus", "CPUs"), ("memory_gib", "memory (GiB)"),
                                      ("kernel", "kernel"), ("arch", "architecture"),
                                      ("libc", "libc"))
COLUMNS = ["pool", "host", "cpus", "memory_mib", "memory_gib", "kernel", "arch", "libc",
           "error"]


@dataclass(frozen=True, slots=True)
class Difference:
    """One fact on which the pools differ: the values each pool's hosts reported."""

    fact: str
    blue: tuple[str, ...]
    green: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.fact}: blue {', '.join(self.blue)}; green {', '.join(self.green)}"


@dataclass(frozen=True, eq=False)
class ParityReport:
    """Both pools' host facts and how they compare.

    ``table``: one row per host, :data:`COLUMNS` (``error`` set where a host could not be
    read). ``differences``: one per fact whose values differ between the pools.
    """

    table: pd.DataFrame
    differences: tuple[Difference, ...]
    setting: ParitySetting
    unread: tuple[str, ...] = ()  # "pool host: why" for each host that could not be read

    @property
    def verdict(self) -> Literal["pass", "fail", "inconclusive"]:
        """The parity gate: fail on a difference under ``"fail"``; inconclusive when a host
        could not be read (under ``"fail"``); pass otherwise (a ``"warn"`` shows it)."""
        if self.setting == "warn":
            return "pass"
        if self.differences:
            return "fail"
        return "inconclusive" if self.unread else "pass"

    def gate(self) -> GateResult:
        """The parity gate's result, for :meth:`bgkit.analysis.Verdict.with_gates`."""
        from bgkit.analysis import GateResult

        observed = ("identical" if not self.differences else
                    "; ".join(d.describe() for d in self.differences))
        if self.unread:
            observed += f" ({len(self.unread)} host(s) not read)"
        reasons = {
            "fail": (f"the pools differ ({observed}); [gates] parity = \"fail\" refuses "
                     "pools that differ" if self.differences else
                     f"could not read {'; '.join(self.unread)}"),
            "pass": ("the pools' hosts report the same CPUs, memory, kernel, architecture "
                     "and libc" if not self.differences else
                     f"the pools differ ({observed}); shown only ([gates] parity = "
                     "\"warn\")"),
        }
        verdict = self.verdict
        reason = reasons["fail" if verdict != "pass" else "pass"]
        return GateResult(gate="parity", verdict=verdict, observed=observed,
                          threshold=f"identical pools ({self.setting})", reason=reason)

    def differences_table(self) -> pd.DataFrame:
        """One row per differing fact: fact, blue, green (values comma-joined)."""
        return pd.DataFrame([{"fact": d.fact, "blue": ", ".join(d.blue),
                              "green": ", ".join(d.green)} for d in self.differences],
                            columns=["fact", "blue", "green"])

    def to_dict(self) -> dict[str, Any]:
        return {"setting": self.setting, "verdict": self.verdict,
                "differences": [{"fact": d.fact, "blue": list(d.blue), "green": list(d.green)}
                                for d in self.differences],
                "unread": list(self.unread),
                "hosts": self.table.astype(object).where(self.table.notna(), None)
                .to_dict("records")}


def compare(rows: Iterable[tuple[str, str, HostFacts | str]],
            setting: ParitySetting = "warn") -> ParityReport:
    """Compare the pools from ``(pool, host, facts or the error reading them)`` rows."""
    records: list[dict[str, Any]] = []
    unread: list[str] = []
    for pool, host, facts in rows:
        if isinstance(facts, HostFacts):
            records.append({"pool": pool, "host": host, "cpus": facts.cpus,
                            "memory_mib": facts.memory_mib,
                            "memory_gib": round(facts.memory_mib / 1024),
                            "kernel": facts.kernel, "arch": facts.arch, "libc": facts.libc,
                            "error": None})
        else:
            records.append({"pool": pool, "host": host, "error": facts})
            unread.append(f"{pool} {host}: {facts}")
    table = pd.DataFrame(records, columns=COLUMNS)
    read = table[table["error"].isna()]
    differences = []
    for fact, label in FACTS:
        values = {pool: tuple(sorted({str(v) for v in read.loc[read["pool"] == pool, fact]}))
                  for pool in ("blue", "green")}
        if values["blue"] and values["green"] and values["blue"] != values["green"]:
            differences.append(Difference(label, values["blue"], values["green"]))
    return ParityReport(table, tuple(differences), setting, tuple(unread))


def collect(config: Config, *, progress: Progress | None = None) -> ParityReport:
    """Read every host of both pools (one read-only SSH command each) and compare them
    under ``[gates] parity``. A host that cannot be read is reported, never raised."""
    from bgkit.hosts import Fleet, Session, hosts_of

    hosts = [*hosts_of(config, "blue"), *hosts_of(config, "green")]

    def read(session: Session) -> HostFacts:
        return parse_host_facts(session.run(host_facts()).stdout)

    results = Fleet(config, progress=progress).each(hosts, read)
    return compare(((r.host.pool, r.host.address, r.value if r.value is not None
                     else str(r.error)) for r in results), config.gates.parity)


_REQUIRED_GLIBC = re.compile(r"\bGLIBC_(\d+\.\d+(?:\.\d+)?)\b")


def glibc_required(objdump_outputs: Iterable[str]) -> str | None:
    """The highest ``GLIBC_x.y`` version the ``Version References`` of ``objdump -p``
    outputs require (``"2.34"``); None when none requires glibc (static, or another libc).
    Source: the GNU symbol-versioning scheme (``.gnu.version_r``), as objdump prints it."""
    found = [version for text in objdump_outputs
             for version in _REQUIRED_GLIBC.findall(_references(text))]
    if not found:
        return None
    return str(max(found, key=lambda text: glibc_version(text) or ()))


def _references(objdump_output: str) -> str:
    """The ``Version References`` section of ``objdump -p`` output ("" when absent)."""
    head, marker, rest = objdump_output.partition("Version References:")
    del head
    return rest if marker else ""


def release_glibc(elf_files: Sequence[Path]) -> str | None:
    """What :func:`glibc_required` says of these files; None when ``objdump`` (binutils,
    beside every C toolchain) is not installed — then only the host's ``ldd`` judges."""
    objdump = shutil.which("objdump")
    if objdump is None or not elf_files:
        return None
    outputs = [subprocess.run([objdump, "-p", str(path)], capture_output=True, text=True,
                              check=False, timeout=60).stdout for path in elf_files]
    return glibc_required(outputs)


def libc_problem(facts: HostFacts, required: str | None) -> str | None:
    """Why a release needing glibc ``required`` would not load on this host (None: it
    would, or the release needs no particular glibc)."""
    if required is None:
        return None
    needed = glibc_version(required)
    have = facts.glibc
    if needed is None:
        return None
    if have is None:
        return (f"the release needs glibc {required} or newer, the host's libc is "
                f"{facts.libc!r}: the release would not load; build on a machine with the "
                "hosts' libc")
    if have < needed:
        return (f"the release needs glibc {required} or newer, the host has "
                f"{facts.libc}: the release would not load; build on a machine with glibc "
                f"{facts.libc.removeprefix('glibc ')} or older (or link statically)")
    return None
