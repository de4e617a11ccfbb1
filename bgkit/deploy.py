"""Deploy a release to the idle pool, never touching the live one.

Phases, each across every host of the target pool before the next begins:

0. **refusals** — the target must be the idle pool, and the load balancer's servers of
   both pools must be bgkit.toml's hosts (:mod:`bgkit.drift`); no host is touched else.
1. **preflight** — reachable, writable, enough disk for the upload plus everything it
   unpacks to, same CPU architecture, and (``manager = "systemd"``) the installed unit
   is the one the config renders. No changes.
2. **stage** — upload, verify sha256 on the host, unpack into ``releases/<release>``,
   check the unpacked tree is the one checked locally and that ``ldd`` finds every
   shared library. An installed release is not re-uploaded.
   Nothing serves from it yet; ``current`` is untouched on every host.
3. **activate** — drain (below), swap ``current`` atomically, restart the service, wait
   until the health path answers 200 with the release's version.
4. **prune** — keep ``[deploy].keep_releases``, never the current or previous one.

**Drain.** A host is restarted only once traffic left its pool ``[deploy].min_idle_s``
ago (``last-live``, recorded by the switch) and neither the load balancer (when it can
see sessions: :meth:`~bgkit.lb.base.LoadBalancer.open_sessions`) nor the host itself
(``ss``) counts a connection open to the service — waiting at most
``[deploy].drain_timeout_s``. Connections still open then are cut by the restart, and
counted in the result (``cut``).

``deploy(config, kept=ID)`` deploys a release the hosts keep under ``releases/<id>``
(installed, the same tarball on every host): nothing is uploaded.

A failure in phases 1-2 leaves every host as it was serving. A failure in phase 3 is
reported with the hosts that moved. Either way the live pool and the load balancer
are never touched, and :class:`bgkit.errors.DeployError` carries every host's result.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from bgkit import lock as locking
from bgkit.commands import remote, service
from bgkit.config import Config
from bgkit.drain import Drain
from bgkit.drift import drift
from bgkit.errors import DeployError, HostError, UsageError
from bgkit.health import health_url, wait_healthy
from bgkit.hooks import HookResult, hook_environment, post_hook, pre_hook
from bgkit.host_files import file_digest, render_file
from bgkit.host_setup import setup_hint
from bgkit.hosts import Fleet, Host, HostResult, Progress, Session, hosts_of
from bgkit.lb.base import LoadBalancer, PoolName, other_pool
from bgkit.ledger import kept_release
from bgkit.parity import libc_problem
from bgkit.release_check import CheckedRelease, artifact_for, check_release_name
from bgkit.version_signal import VersionSource

__all__ = ["DeployResult", "HostDeploy", "PublishedFile", "deploy", "hosts_table"]



@dataclass(frozen=True, slots=True)
class PublishedFile:
    """One ``[[service.files]]`` on one host: where, its sha256, whether it changed."""

    path: str
    sha256: str
    changed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "changed": self.changed}


@dataclass(frozen=True, slots=True)
class HostDeploy:
    """One host's part of a deploy."""

    host: Host
    phase: str  # the last phase it reached: preflight | stage | activate | prune | done
    previous: str  # the release current pointed at before
    current: str  # the release current points at now
    uploaded: bool
    restarted: bool
    error: str | None
    duration_s: float
    files: tuple[PublishedFile, ...] = ()
    facts: remote.HostFacts | None = None  # CPUs, memory, kernel, arch, libc at preflight
    cut: int = 0  # connections still open when the service restarted

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def moved(self) -> bool:
        return self.current != self.previous


@dataclass(frozen=True, slots=True)
class DeployResult:
    """Where a release went and how every host fared."""

    release: str
    sha256: str
    pool: PoolName
    live_pool: PoolName
    hosts: tuple[HostDeploy, ...]
    lock_takeover: dict[str, Any] | None = None  # the stale lease this deploy took over
    hooks: tuple[dict[str, object], ...] = ()  # each hook that ran: exit code, output tail
    kept_on_hosts: bool = False  # deployed from releases/<id> on the hosts, no upload

    @property
    def ok(self) -> bool:
        return all(h.ok for h in self.hosts)

    @property
    def cut(self) -> int:
        """Connections still open when hosts restarted (``[deploy].drain_timeout_s`` ran
        out): each was cut."""
        return sum(h.cut for h in self.hosts)

    @property
    def moved(self) -> list[str]:
        return [h.host.label for h in self.hosts if h.moved]

    def table(self) -> pd.DataFrame:
        return hosts_table(self.hosts)

    def record(self) -> dict[str, object]:
        """What the archive keeps of a deploy."""
        return {"ok": True, "release": self.release, "sha256": self.sha256, "pool": self.pool,
                "live_pool": self.live_pool, "moved": self.moved, "cut": self.cut,
                "kept_on_hosts": self.kept_on_hosts, "lock_takeover": self.lock_takeover,
                "hooks": list(self.hooks),
                "facts": {h.host.address: asdict(h.facts) for h in self.hosts
                          if h.facts is not None}}

    def files_table(self) -> pd.DataFrame:
        """One row per host file per host: its path, sha256 and whether it changed."""
        return pd.DataFrame([{"pool": h.host.pool, "host": h.host.address, **f.to_dict()}
                             for h in self.hosts for f in h.files],
                            columns=["pool", "host", "path", "sha256", "changed"])


def hosts_table(hosts: Sequence[object]) -> pd.DataFrame:
    """One row per host of a deploy (``DeployError.results`` or ``DeployResult.hosts``)."""
    rows = [h for h in hosts if isinstance(h, HostDeploy)]
    return pd.DataFrame([{
        "pool": h.host.pool, "host": h.host.address, "ssh_port": h.host.port,
        "phase": h.phase, "previous": h.previous or "-", "current": h.current or "-",
        "uploaded": h.uploaded, "restarted": h.restarted, "cut": h.cut, "ok": h.ok,
        "files_changed": sum(f.changed for f in h.files),
        "seconds": round(h.duration_s, 2), "error": h.error or "",
    } for h in rows])


@dataclass(slots=True)
class _State:
    preflight: remote.Preflight | None = None
    uploaded: bool = False
    restarted: bool = False
    current: str = ""
    files: list[PublishedFile] = field(default_factory=list)
    facts: remote.HostFacts | None = None  # what pool parity compares (bgkit.parity)
    cut: int = 0


def deploy(config: Config, *, artifact: Path | None = None,
           release: CheckedRelease | None = None, kept: str | None = None,
           pool: PoolName | None = None, lb: LoadBalancer | None = None,
           progress: Progress | None = None) -> DeployResult:
    """Put a release on every host of the idle pool: ``release`` (already checked), else
    ``kept`` (the id of a release every host of the pool keeps installed: no upload),
    else the one in ``artifact`` (default: the newest in dist/), checked here.

    Raises:
        UsageError: the release is missing, corrupt or unsafe (``kept``: not installed on
            every host), or ``pool`` is the live one.
        DeployError: the load balancer's servers are not bgkit.toml's hosts, or a canary
            split still sends live requests to the target pool (no host was touched), or
            some host failed; ``results`` holds every host's HostDeploy.
        LoadBalancerError: the live pool could not be read.
        LockHeld: another deploy or switch holds the deployment lock, or a switch left it
            with a load-balancer change unfinished (run the switch again first).
    """
    checked = release or (None if kept else artifact_for(config, artifact))
    name = checked.release if checked else check_release_name(f"{kept}.tar.gz")
    with locking.held(locking.store_for(config), message=f"deploy {name}",
                      ttl_s=config.lock.ttl_s) as lease:
        result = _deploy(config, checked, name, pool=pool, lb=lb or _provider(config),
                         progress=progress)
        return replace(result, lock_takeover=lease.took_over)


def _deploy(config: Config, checked: CheckedRelease | None, name: str, *,
            pool: PoolName | None, lb: LoadBalancer, progress: Progress | None) -> DeployResult:
    live = lb.live_pool()
    target = pool or other_pool(live)
    if target == live:
        raise UsageError(f"refusing to deploy to the {target} pool: it is live. bgkit only "
                         f"deploys to the idle pool ({other_pool(live)})")
    split = lb.state() if lb.split_refusal() is None else None
    if split is not None and split.canary and split.canary_pool == target:
        raise DeployError(
            f"refusing to deploy to the {target} pool: a canary split sends "
            f"{split.canary}% of live requests to it, so it is not idle (a switch that "
            "ended without ending its split left it); `bgkit switch` or `bgkit rollback`, "
            "approved or not, ends a split left behind first; no host was touched")
    problems = drift(config, lb.backend_health())
    if problems:
        raise DeployError("refusing to deploy: the load balancer's servers are not "
                          "bgkit.toml's hosts, so bgkit cannot tell which hosts take traffic: "
                          + "; ".join(problems) + "; no host was touched")
    hosts = hosts_of(config, target)
    states = {host: _State() for host in hosts}
    began = time.monotonic()
    results: list[HostResult[Any]] = []
    with Fleet(config, progress=progress) as fleet:
        release = checked or kept_release(fleet, config, hosts, name, target)
        environment = hook_environment(config, "pre_deploy", pool=target, live_pool=live,
                                       release=release.release, version=release.version)
        ran: list[HookResult | None] = []
        phases: list[tuple[str, Callable[[Session], Any]]] = [
            ("preflight", lambda s: _preflight(s, config, release, states[s.host])),
            ("stage", lambda s: _stage(s, config, release, states[s.host])),
            ("activate", lambda s: _activate(s, config, release, states[s.host],
                                             drain=Drain(lb, began))),
            ("prune", lambda s: _prune(s, config, release)),
        ]
        for phase, work in phases:
            if phase == "stage":  # every host passed its preflight; HookFailed: no host
                ran.append(pre_hook(config, "pre_deploy", environment))  # was changed
            results = fleet.each(hosts, work)
            if not all(r.ok for r in results):
                outcome = _result(release, target, live, hosts, states, results, phase)
                raise DeployError(_failure_message(outcome, phase), results=outcome.hosts)
    ran.append(post_hook(config, "post_deploy", {**environment, "BGKIT_HOOK": "post_deploy"}))
    return replace(_result(release, target, live, hosts, states, results, "done"),
                   hooks=tuple(hook.to_dict() for hook in ran if hook is not None))


def _provider(config: Config) -> LoadBalancer:
    from bgkit.lb import get_provider

    return get_provider(config)


def _preflight(session: Session, config: Config, checked: CheckedRelease,
               state: _State) -> None:
    session.step("preflight")
    layout = remote.Layout(session.host.root, checked.release)
    said = session.run(f"{remote.preflight(layout)}; {remote.host_facts()}").stdout
    answer = remote.parse_preflight(said)
    state.preflight, state.current = answer, answer.current
    if checked.arch and answer.arch != checked.arch:
        raise HostError(session.host.label, f"CPU architecture {answer.arch} does not match "
                        f"the release's {checked.arch}")
    state.facts = remote.parse_host_facts(said)
    if (problem := libc_problem(state.facts, checked.glibc)) is not None:
        raise HostError(session.host.label, problem)
    if not answer.writable:
        raise HostError(session.host.label, f"{layout.root} is not writable by "
                        f"{session.host.user}")
    installed = answer.installed_sha256 == checked.sha256
    if checked.kept_on_hosts and not installed:
        raise HostError(session.host.label, f"{checked.release} is no longer kept here "
                        "installed as the other hosts keep it")
    needed_kb = 0 if installed else _needed_space_kb(config, checked)
    if answer.free_kb < needed_kb:
        raise HostError(session.host.label, f"only {answer.free_kb // 1024} MiB free under "
                        f"{layout.root}, {needed_kb // 1024} MiB needed (the upload, "
                        f"{checked.unpacked_bytes >> 20} MiB unpacked and "
                        f"[deploy].min_free_mb = {config.deploy.min_free_mb})")
    if config.service.manager == "systemd":
        _check_unit(session, config)
        _check_service_access(session, config)


def _needed_space_kb(config: Config, checked: CheckedRelease) -> int:
    """Free space a host needs for a release: upload + unpacked members + the margin."""
    upload = checked.path.stat().st_size
    return config.deploy.min_free_mb * 1024 + -(-(upload + checked.unpacked_bytes) // 1024)


def _check_unit(session: Session, config: Config) -> None:
    """The host's installed unit must be the one the config renders (bgkit never writes it)."""
    path = service.unit_path(config)
    installed = session.run(remote.read_file(path)).stdout
    rendered = service.render_unit(config, root=session.host.root,
                                   values=session.host.values(config))
    drift = service.unit_drift(installed, rendered)
    if drift is not None:
        raise HostError(session.host.label, f"the systemd unit {path} {drift}",
                        hint=setup_hint(config, session.host))


def _check_service_access(session: Session, config: Config) -> None:
    """The service user can run the release and write where the unit lets it."""
    user, root = config.service.systemd.user, session.host.root
    writable = config.service.systemd.read_write_paths
    answer = session.run(remote.service_access(root, user, writable)).stdout
    problems = remote.access_problems(answer, user=user, root=root, writable=writable)
    if problems:
        raise HostError(session.host.label, "; ".join(problems),
                        hint=setup_hint(config, session.host))


def _stage(session: Session, config: Config, checked: CheckedRelease, state: _State) -> None:
    layout = remote.Layout(session.host.root, checked.release)
    assert state.preflight is not None
    session.run(remote.make_root(layout))
    if state.preflight.installed_sha256 == checked.sha256:
        session.step("already installed")
        return
    session.step("upload")
    session.put(checked.path, layout.incoming)
    state.uploaded = True
    session.step("verify, unpack, ldd")
    answer = session.run(remote.stage(layout, sha256=checked.sha256,
                                      executable=config.service.executable,
                                      tree=remote.tree_digest(checked.members)), check=False)
    found, missing = remote.parse_stage(answer.exit_code, answer.stdout)
    if answer.exit_code == remote.STAGE_BAD_CHECKSUM:
        raise HostError(session.host.label, f"checksum mismatch after upload: the host has "
                        f"{found}, expected {checked.sha256}", hint="the upload was corrupted")
    if answer.exit_code == remote.STAGE_UNEXPECTED_TREE:
        raise HostError(session.host.label, "tar on the host unpacked other files than the "
                        "release check saw; nothing was installed",
                        hint="the host's tar reads the archive differently: rebuild it with "
                        "`bgkit build`")
    if answer.exit_code == remote.STAGE_MISSING_LIBRARIES:
        raise HostError(session.host.label, f"shared libraries not found on the host: "
                        f"{', '.join(missing)}", hint="install them, or link them statically")
    if not answer.ok:
        session.run(remote.discard(layout), check=False)
        raise HostError(session.host.label, f"unpacking failed (exit {answer.exit_code}): "
                        f"{answer.tail(5)}")


def _activate(session: Session, config: Config, checked: CheckedRelease,
              state: _State, *, drain: Drain) -> None:
    host = session.host
    values = host.values(config, version=checked.version, release=checked.release)
    commands = service.service_commands(config, root=host.root, values=values)
    url = health_url(host.address, config.service.port, config.service.health_path)
    layout = remote.Layout(host.root, checked.release)
    changed = _publish_files(session, config, values, state)
    if state.current == checked.release and not changed and \
            session.run(commands.is_running, check=False).ok:
        session.step("check health")
        if _healthy(url, config, checked, timeout_s=2.0, still_running=None).ok:
            return
    state.cut = drain.wait(session, config, state.preflight.last_live if state.preflight
                           else None)
    session.step("swap current, restart")
    answer = session.run(remote.activate(layout, commands.restart), check=False)
    if answer.exit_code == remote.ACTIVATE_SWAP_FAILED:
        raise HostError(host.label, f"could not swap current: {answer.tail(5)}")
    state.current = checked.release
    if not answer.ok:
        raise HostError(host.label, f"restart failed (exit {answer.exit_code}): "
                        f"{answer.tail(5)}{_service_log(session, commands)}")
    state.restarted = True
    session.step("wait healthy")
    answer = _healthy(url, config, checked, timeout_s=config.deploy.health_timeout_s,
                      still_running=lambda: session.run(commands.is_running, check=False).ok)
    if not answer.ok:
        raise HostError(host.label, f"{url}: {answer.problem}{_service_log(session, commands)}")


def _service_log(session: Session, commands: service.ServiceCommands) -> str:
    """The service's log tail (the journal under systemd), for a failure message."""
    log = session.run(commands.log_tail, check=False).stdout.strip()
    return f"; service log:\n{log}" if log else ""


def _publish_files(session: Session, config: Config, values: dict[str, str],
                   state: _State) -> bool:
    """Render each ``[[service.files]]`` for this host and publish the changed ones
    atomically into ``<root>/shared/``; True if any changed (the service must restart)."""
    state.files.clear()
    for item in config.service.files:
        try:
            text = render_file(config.resolve(item.template), values)
        except ValueError as error:
            raise HostError(session.host.label, f"cannot render {item.template}: {error}") \
                from error
        final = f"{session.host.root}/shared/{item.path}"
        digest = file_digest(text)
        found, mode = remote.parse_file_state(session.run(remote.file_state(final)).stdout)
        changed = (found, mode) != (digest, item.mode)
        if changed:
            session.step(f"publish shared/{item.path}")
            _upload_text(session, text, remote.staged_name(final))
            session.run(remote.publish_file(remote.staged_name(final), final, item.mode))
        state.files.append(PublishedFile(path=final, sha256=digest, changed=changed))
    return any(f.changed for f in state.files)


def _upload_text(session: Session, text: str, remote_path: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bgkit-file-") as folder:
        local = Path(folder) / "file"
        local.write_text(text, encoding="utf-8")
        session.put(local, remote_path)


def _healthy(url: str, config: Config, checked: CheckedRelease, *, timeout_s: float,
             still_running: Callable[[], bool] | None) -> Any:
    return wait_healthy(url, version_from=VersionSource.parse(config.service.version_source),
                        expected_version=checked.version, timeout_s=timeout_s,
                        still_running=still_running)


def _prune(session: Session, config: Config, checked: CheckedRelease) -> list[str]:
    session.step("prune")
    layout = remote.Layout(session.host.root, checked.release)
    releases, current, previous = remote.parse_releases(
        session.run(remote.list_releases(layout)).stdout)
    doomed = remote.releases_to_prune(releases, keep=config.deploy.keep_releases,
                                      current=current, previous=previous)
    if doomed:
        session.run(remote.prune(layout, doomed))
    return doomed


def _result(checked: CheckedRelease, target: PoolName, live: PoolName, hosts: Sequence[Host],
            states: dict[Host, _State], results: Sequence[HostResult[Any]],
            phase: str) -> DeployResult:
    by_host = {r.host: r for r in results}
    rows = []
    for host in hosts:
        state, result = states[host], by_host[host]
        before = state.preflight.current if state.preflight else ""
        rows.append(HostDeploy(host=host, phase=phase, previous=before, current=state.current,
                               uploaded=state.uploaded, restarted=state.restarted,
                               error=result.error, duration_s=result.duration_s,
                               files=tuple(state.files), facts=state.facts, cut=state.cut))
    return DeployResult(release=checked.release, sha256=checked.sha256, pool=target,
                        live_pool=live, hosts=tuple(rows), kept_on_hosts=checked.kept_on_hosts)


def _failure_message(outcome: DeployResult, phase: str) -> str:
    failed = [h for h in outcome.hosts if not h.ok]
    lines = [f"deploy of {outcome.release} to the {outcome.pool} pool failed at {phase} "
             f"on {len(failed)} of {len(outcome.hosts)} host(s); the live pool "
             f"({outcome.live_pool}) and the load balancer were not touched"]
    lines += [f"  {h.host.label}: {h.error}" for h in failed]
    moved = outcome.moved
    lines.append(f"  hosts that moved to {outcome.release}: {', '.join(moved)}" if moved
                 else "  no host changed the release it serves")
    return "\n".join(lines)
