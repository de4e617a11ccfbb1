"""Gates on what the idle hosts are, beyond how they answer (pure): the release each one
serves, read over SSH (``release``), and whether the load balancer's servers are
bgkit.toml's hosts (``lb_servers``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bgkit.analysis._gate import GateResult, listing

__all__ = ["HostRelease", "release_gate", "servers_gate"]


@dataclass(frozen=True, slots=True)
class HostRelease:
    """What one host serves, read over SSH: the release ``current`` points at ("" for
    none) and its manifest's version; ``release`` None when it could not be read
    (``error`` says why)."""

    release: str | None
    version: str | None = None
    error: str = ""


def release_gate(*, expected_release: str | None, expected_version: str | None,
                 hosts: Sequence[str], releases: Mapping[str, HostRelease] | None) -> GateResult:
    """Every idle host in ``hosts`` serves ``expected_release`` (not just its version)."""
    if expected_release is None:
        return GateResult("release", "pass", "-", "not given", "not checked: no release id "
                          "was given (the version gate judged the version alone)")
    threshold = f"only {expected_release}"
    if releases is None:
        return GateResult("release", "inconclusive", "not read", threshold,
                          "the idle hosts' releases were not read")
    wrong, unread = [], []
    for host in hosts:
        found = releases.get(host)
        if found is None or found.release is None:
            unread.append(f"{host} ({found.error if found else 'not read'})")
        elif found.release != expected_release:
            what = found.release or "no release"
            if found.version and found.version == expected_version:
                what += f" (another build of {found.version})"
            wrong.append(f"{host} serves {what}")
    observed = f"{len(wrong)} host(s) serving another release"
    if wrong:
        return GateResult("release", "fail", observed, threshold,
                          f"idle host(s) not serving {expected_release}: {listing(wrong)}; "
                          "deploy that release to them, or verify the release they serve")
    if unread:
        return GateResult("release", "inconclusive", observed, threshold,
                          f"which release these idle hosts serve cannot be read over SSH: "
                          f"{listing(unread)}")
    return GateResult("release", "pass", observed, threshold,
                      f"every idle host serves {expected_release} (where current points)")


def servers_gate(drift: Sequence[str] | None) -> GateResult:
    """The load balancer's servers of both pools are bgkit.toml's hosts (``drift``: the
    differences, from :func:`bgkit.drift.server_drift`; None when not compared)."""
    threshold = "bgkit.toml's hosts"
    if drift is None:
        return GateResult("lb_servers", "pass", "-", threshold, "not compared")
    if drift:
        return GateResult("lb_servers", "fail", f"{len(drift)} difference(s)", threshold,
                          f"the load balancer and bgkit.toml disagree: {listing(list(drift))}; "
                          "a server bgkit does not know would take traffic it never verified: "
                          "make the two agree, then verify again")
    return GateResult("lb_servers", "pass", "0 differences", threshold,
                      "the load balancer's servers of both pools are bgkit.toml's hosts")
