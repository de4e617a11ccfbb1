"""What each host serves, and what it served when its pool was last live.

Beside ``current``, every host keeps ``<root>/last-live`` (:mod:`bgkit.commands.remote`):
the release it served when its pool went live and since when, and when traffic left it.
The switch writes it (:meth:`Ledger.went_live` once a watch passed, :meth:`Ledger.left_live`
for the pool traffic left); rollback goes back to a pool only while its hosts still serve
that release (:func:`rollback_target`); a deploy leaves a pool alone for
``[deploy].min_idle_s`` after traffic left it.

:class:`Ledger` is what the switch, rollback and verify need of the hosts;
:class:`SshLedger` reads and writes over SSH (the one executor, :mod:`bgkit.hosts`);
:class:`bgkit.testing.FakeLedger` keeps it in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from bgkit.commands import remote
from bgkit.commands.remote import LastLive
from bgkit.config import Config
from bgkit.errors import UsageError
from bgkit.hosts import Fleet, Host, Session, hosts_of
from bgkit.release_check import CheckedRelease
from bgkit.words import PoolName

__all__ = [
    "HostServes",
    "LastLive",
    "Ledger",
    "RollbackTarget",
    "SshLedger",
    "judge_rollback",
    "kept_release",
    "rollback_target",
    "stamp",
]


def stamp(moment: datetime) -> str:
    """How a moment is written into ``last-live``: ISO 8601 with milliseconds."""
    return moment.isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class HostServes:
    """One host: the release ``current`` points at ("" if none), its manifest's version,
    its last-live record; ``error`` when none of it could be read."""

    pool: PoolName
    address: str
    label: str
    release: str = ""
    version: str | None = None
    last_live: LastLive | None = None
    error: str | None = None


class Ledger(Protocol):
    """What bgkit reads and records on the hosts about the releases they serve."""

    def serving(self, pools: Sequence[PoolName]) -> list[HostServes]:
        """Every host of ``pools``: what it serves and served when last live (never
        raises for one host: its ``error`` says why)."""
        ...

    def went_live(self, pool: PoolName, *, at: datetime) -> list[str]:
        """Record on every host of ``pool`` that it went live at ``at`` with the release
        it serves; the problems (one per host that could not record it)."""
        ...

    def left_live(self, pool: PoolName, *, at: datetime) -> list[str]:
        """Record on every host of ``pool`` that traffic left it at ``at``; the problems."""
        ...

    def kept_version(self, pool: PoolName, release: str) -> str | None:
        """The version of ``release`` when every host of ``pool`` keeps it installed
        (``releases/<id>``, read from its manifest there); None otherwise."""
        ...


class SshLedger:
    """The :class:`Ledger` over SSH, one command per host."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def serving(self, pools: Sequence[PoolName]) -> list[HostServes]:
        hosts = [host for pool in pools for host in hosts_of(self.config, pool)]

        def read(session: Session) -> remote.Served:
            return remote.parse_served(session.run(remote.served(session.host.root)).stdout)

        found = []
        for result in Fleet(self.config).each(hosts, read):
            host, value = result.host, result.value
            pool: PoolName = "blue" if host.pool == "blue" else "green"
            if value is None:
                found.append(HostServes(pool, host.address, host.label,
                                        error=result.error or "no answer"))
            else:
                found.append(HostServes(pool, host.address, host.label, value.release,
                                        value.version, value.last_live))
        return found

    def went_live(self, pool: PoolName, *, at: datetime) -> list[str]:
        return self._mark(pool, lambda root: remote.mark_live(root, at=stamp(at)))

    def left_live(self, pool: PoolName, *, at: datetime) -> list[str]:
        return self._mark(pool, lambda root: remote.mark_left(root, at=stamp(at)))

    def kept_version(self, pool: PoolName, release: str) -> str | None:
        def kept(session: Session) -> remote.KeptRelease:
            layout = remote.Layout(session.host.root, release)
            return remote.parse_kept_release(session.run(remote.kept_release(layout)).stdout)

        results = Fleet(self.config).each(hosts_of(self.config, pool), kept)
        versions = {str(r.value.manifest.get("version")) if r.value.sha256 and r.value.manifest
                    else None for r in results if r.value is not None}
        if len(versions) != 1 or any(not r.ok for r in results):
            return None
        return versions.pop()

    def _mark(self, pool: PoolName, command: _Command) -> list[str]:
        results = Fleet(self.config).each(
            hosts_of(self.config, pool), lambda session: session.run(command(session.host.root)))
        return [f"{r.host.label}: {r.error}" for r in results if not r.ok]


class _Command(Protocol):
    def __call__(self, root: str) -> str: ...


@dataclass(frozen=True, slots=True)
class RollbackTarget:
    """Where a rollback to ``pool`` would go: ``release`` (and its ``version``), the
    release its hosts served when it was last live and still serve; else ``refusal``
    says why not, and ``kept`` names the release it served live (to redeploy), if any."""

    pool: PoolName
    release: str = ""
    version: str = ""
    refusal: str = ""
    kept: str = ""

    @property
    def ok(self) -> bool:
        return not self.refusal


def rollback_target(ledger: Ledger, pool: PoolName) -> RollbackTarget:
    """The release a rollback to ``pool`` would go back to (:func:`judge_rollback`), read
    from its hosts; a refusal says what to do, naming the release to redeploy when the
    hosts still keep it."""
    target = judge_rollback(pool, ledger.serving([pool]))
    if target.ok or not target.kept:
        return target
    version = ledger.kept_version(pool, target.kept)
    if version is not None:
        hint = (f"; `bgkit switch` to gate it, or redeploy {version} (kept on the hosts) "
                f"with `bgkit deploy --release {target.kept}` — no upload needed")
    else:
        hint = (f"; `bgkit switch` to gate it; {target.kept} is no longer kept on every "
                f"{pool} host: build it again and `bgkit deploy --artifact` it")
    return RollbackTarget(pool, refusal=target.refusal + hint, kept=target.kept)


def judge_rollback(pool: PoolName, hosts: Sequence[HostServes]) -> RollbackTarget:
    """The release a rollback to ``pool`` would go back to, judged from its hosts (pure):
    every host must still serve the one release they all served when ``pool`` was last
    live. Otherwise a refusal saying what the hosts serve now."""
    unreadable = [f"{h.label}: {h.error}" for h in hosts if h.error]
    if unreadable or not hosts:
        return RollbackTarget(pool, refusal=f"what the {pool} hosts serve cannot be read ("
                              + ("; ".join(unreadable) or "no hosts") + ")")
    lived = {h.last_live.release for h in hosts if h.last_live and h.last_live.release}
    if not lived or any(h.last_live is None or not h.last_live.release for h in hosts):
        return RollbackTarget(pool, refusal=(
            f"the {pool} pool has no record of the release it served when it was last live "
            f"on every host ({remote.LAST_LIVE} beside current, written when a pool goes "
            "live), so bgkit cannot tell what rolling back would serve; `bgkit switch` "
            "to put a release there through the gates"))
    if len(lived) > 1:
        return RollbackTarget(pool, refusal=(
            f"the {pool} hosts disagree on the release they served when last live "
            f"({', '.join(sorted(lived))}); `bgkit switch` to put one release there "
            "through the gates"))
    (release,) = lived
    moved = [h for h in hosts if h.release != release]
    if not moved:
        versions = {h.version for h in hosts}
        version = next(iter(versions)) if len(versions) == 1 else None
        if version is None:
            return RollbackTarget(pool, refusal=f"the {pool} hosts serve {release} but its "
                                  "manifest's version cannot be read on every host")
        return RollbackTarget(pool, release=release, version=version)
    now = sorted({_named(h, release) for h in moved})
    return RollbackTarget(pool, kept=release, refusal=(
        f"{pool} now serves {', '.join(now)}, which never went live since it was deployed "
        f"there (it served {release} when it was last live)"))


def _named(host: HostServes, lived: str) -> str:
    """A host's release as an operator reads it: its version, or the id when the version
    alone would not tell it from the release that was live."""
    if not host.release:
        return "no release"
    if host.version and f"-{host.version}-" not in lived:
        return host.version
    return host.release


def kept_release(fleet: Fleet, config: Config, hosts: Sequence[Host], release: str,
                  pool: PoolName) -> CheckedRelease:
    """``release`` as every host of ``pool`` keeps it installed under ``releases/``: the
    same tarball (its sha256 marker) everywhere, a manifest of this app with a version.

    Raises:
        UsageError: a host does not keep it (or cannot be read), or they disagree.
    """
    def read(session: Session) -> remote.KeptRelease:
        layout = remote.Layout(session.host.root, release)
        return remote.parse_kept_release(session.run(remote.kept_release(layout)).stdout)

    results = fleet.each(hosts, read)
    missing = [r.host.label + (f" ({r.error})" if r.error else "") for r in results
               if r.value is None or not r.value.sha256]
    if missing:
        raise UsageError(f"{release} is not kept on every host of the {pool} pool (not on "
                         f"{', '.join(missing)}); build it again and `bgkit deploy --artifact` "
                         "it")
    found = [r.value for r in results if r.value is not None]
    digests = {kept.sha256 for kept in found}
    manifest = found[0].manifest or {}
    if len(digests) > 1 or any(kept.manifest != manifest for kept in found):
        raise UsageError(f"the {pool} hosts keep different things under releases/{release} "
                         f"(sha256 {', '.join(sorted(digests))}); build it again and `bgkit "
                         "deploy --artifact` it")
    if manifest.get("name") != config.app.name or not isinstance(manifest.get("version"), str):
        raise UsageError(f"releases/{release} on the {pool} hosts is not a release of "
                         f"{config.app.name} with a version in its manifest.json")
    return CheckedRelease(path=Path(), release=release, sha256=digests.pop(),
                          manifest=dict(manifest), kept_on_hosts=True)
