"""``bgkit sandbox up | down | status``: a local fleet that behaves like real servers.

``sandbox_up`` writes every file into one state directory, then starts what is not
running yet: the sshd shard(s) serving every host address, then HAProxy, then (with
``lb="ovh-iplb"`` or ``"ovh-cloud-lb"``) the OVH API emulator in front of HAProxy, see
``bgkit.sandbox.ovh``.
It is idempotent: with the same options and everything running it starts nothing. Each host
is a loopback address with its own deploy root; bgkit's deploy starts the service
there with ``start-stop-daemon`` (pid file ``<root>/shared/run/service.pid``), exactly
as it would over SSH on a real server.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bgkit.config import load_config
from bgkit.errors import ConfigError, SandboxError, UsageError
from bgkit.sandbox import bastion, ovh, seaweed, sshd, systemd_hosts
from bgkit.sandbox import haproxy as proxy
from bgkit.sandbox.processes import (
    ProcessSpec,
    StoppedProcess,
    ensure_free,
    free_port,
    probe,
    stop,
    wait_until,
)
from bgkit.sandbox.render import (
    AppFacts,
    CloudFacts,
    OvhFacts,
    S3Facts,
    app_facts,
    render_bgkit_toml,
    render_known_hosts,
    render_service_ini,
)
from bgkit.sandbox.results import SandboxHostStatus, SandboxInfo, SandboxStatus
from bgkit.sandbox.state import (
    OVH_PROVIDERS,
    Layout,
    SandboxHost,
    SandboxOptions,
    current_user,
    fleet_hosts,
    read_options,
    write_if_changed,
    write_options,
)

__all__ = [
    "DEFAULT_SOURCE",
    "DEFAULT_STATE_DIR",
    "reload_haproxy",
    "sandbox_down",
    "sandbox_status",
    "sandbox_up",
]

DEFAULT_STATE_DIR = Path(".sandbox")
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "examples" / "hello-c"
S3_BUCKET = "bgkit-sandbox"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


def sandbox_up(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, *, hosts: int = 2,
               app_port: int = 8080, public_port: int = 8000, ssh_port: int = 2222,
               source: str | os.PathLike[str] | None = None,
               runs_dir: str | os.PathLike[str] | None = None,
               lb: str = "haproxy", manager: str = "sandbox",
               bastion: bool = False, shared: str = "file") -> SandboxInfo:
    """Bring the fleet up (or find it up) and return how to reach it.

    ``lb`` is what the written bgkit.toml talks to: ``haproxy``, or ``ovh-iplb`` /
    ``ovh-cloud-lb`` (the OVH API emulator as IP Load Balancing or as a Public Cloud
    Load Balancer, with HAProxy behind it as its data plane). ``manager`` is
    ``sandbox`` (start-stop-daemon, hosts share one sshd) or ``systemd`` (each host a
    systemd-nspawn container with its own systemd and sshd, set up by ``bgkit host
    setup``'s script; needs root), see :mod:`bgkit.sandbox.systemd_hosts`. ``bastion``
    puts a bastion sshd before the hosts, reached by ProxyJump (:mod:`bgkit.sandbox.bastion`).
    ``shared="s3"`` starts a SeaweedFS S3 server (:mod:`bgkit.sandbox.seaweed`) with a
    bucket ``bgkit-sandbox`` (Object Lock on) holding the lock and the run archive, as
    OVHcloud Object Storage would for a team; the default keeps both as files here.

    Raises:
        UsageError: an option is out of range.
        SandboxError: the sandbox runs with other options (run ``down`` first), a port
            is taken, or sshd/HAProxy/the emulator would not start; what this call
            started is stopped.
    """
    layout = Layout.at(state_dir)
    options = SandboxOptions(
        hosts=hosts, app_port=app_port, public_port=public_port, ssh_port=ssh_port,
        source=str(Path(source or DEFAULT_SOURCE).resolve()),
        runs_dir=str(Path(runs_dir).resolve()) if runs_dir else str(layout.runs_dir),
        user=current_user(), lb=lb, manager=manager, bastion=bastion,
        shared=shared).validate()
    if shared == "s3" and runs_dir:
        raise UsageError("--runs-dir names a folder archive; with --shared s3 the archive is "
                         "in the sandbox's S3 store")
    saved = read_options(layout)
    _refuse_other_shape(layout, options, saved[0] if saved else None)
    fleet = fleet_hosts(layout, options.hosts)
    haproxy_running = probe(proxy.haproxy_spec(layout)).alive
    runtime_api = proxy.choose_runtime_api(
        layout, previous=saved[1].get("runtime_api") if saved else None, keep=haproxy_running)
    facts = _read_facts(options)
    ovh_port = _ovh_port(layout, options, saved[1] if saved else {})
    s3_port = _s3_port(layout, options, saved[1] if saved else {})
    extra: dict[str, object] = {"runtime_api": runtime_api}
    if ovh_port is not None:
        extra["ovh_api_port"] = ovh_port
    if s3_port is not None:
        extra["s3_port"] = s3_port
    write_options(layout, options, extra)
    haproxy_changed = _write_files(layout, options, fleet, runtime_api, facts, ovh_port,
                                   s3_port)
    _preflight(layout, options, fleet, ovh_port, s3_port)
    started = _start_missing(layout, options, fleet, runtime_api, ovh_port, s3_port)
    if haproxy_running and haproxy_changed:
        proxy.reload_haproxy(layout, runtime_api=runtime_api, timeout_s=START_TIMEOUT_S)
        started.append("haproxy (reloaded with its new config)")
    return SandboxInfo(
        state_dir=layout.root, config_file=layout.config_file, options=options,
        public_url=f"http://127.0.0.1:{options.public_port}", runtime_api=runtime_api,
        processes=tuple(probe(spec) for spec in _core_specs(layout, options)),
        hosts=tuple(fleet), started=tuple(started),
        ovh_api=ovh.endpoint_url(ovh_port) if ovh_port is not None else None,
        s3_endpoint=_s3_endpoint(s3_port) if s3_port is not None else None)


def sandbox_down(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR, *,
                 purge: bool = False) -> list[StoppedProcess]:
    """Stop every process the sandbox started (services, HAProxy, sshd) by pid file.

    Keeps the state directory (keys, configs, hosts, ``dist/``, ``runs/``) unless
    ``purge``, which deletes it. A directory without ``sandbox.json`` is never deleted.

    Raises:
        SandboxError: a process could not be signalled, or ``purge`` of a directory that
            is not a sandbox's.
    """
    layout = Layout.at(state_dir)
    if not layout.root.exists():
        return []
    if purge and not layout.state_file.exists():
        raise SandboxError(f"{layout.root} has no sandbox.json, so it is not a sandbox "
                           "directory; refusing to delete it")
    stopped = stop(_all_specs(layout), timeout_s=STOP_TIMEOUT_S)
    layout.haproxy_socket.unlink(missing_ok=True)
    if purge:
        shutil.rmtree(layout.root)
    return stopped


def sandbox_status(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> SandboxStatus:
    """Every process (role, pid, alive) and host (deploy root, release, service).

    Raises:
        SandboxError: no sandbox was ever brought up in ``state_dir``.
    """
    layout = Layout.at(state_dir)
    options = _saved_options(layout)
    hosts = tuple(_host_status(host) for host in fleet_hosts(layout, options.hosts))
    return SandboxStatus(
        state_dir=layout.root, options=options, config_file=layout.config_file,
        processes=tuple(probe(spec) for spec in _core_specs(layout, options)), hosts=hosts)


def reload_haproxy(state_dir: str | os.PathLike[str] = DEFAULT_STATE_DIR) -> int:
    """Reload the sandbox's HAProxy hitlessly; return the new pid.

    Raises:
        SandboxError: no sandbox here, HAProxy not running, or the reload failed.
    """
    layout = Layout.at(state_dir)
    saved = read_options(layout)
    if saved is None:
        raise _no_sandbox(layout)
    runtime_api = str(saved[1].get("runtime_api", layout.haproxy_socket))
    return proxy.reload_haproxy(layout, runtime_api=runtime_api, timeout_s=START_TIMEOUT_S)


# --- up, step by step ------------------------------------------------------------------

def _refuse_other_shape(layout: Layout, options: SandboxOptions,
                        saved: SandboxOptions | None) -> None:
    if saved is None or saved == options:
        return
    running = [state.role for state in map(probe, _all_specs(layout)) if state.alive]
    if running:
        raise SandboxError(
            f"the sandbox in {layout.root} is running with other options "
            f"({'; '.join(saved.differences(options))}); run "
            f"`bgkit sandbox down --dir {layout.root}` first")


def _ovh_port(layout: Layout, options: SandboxOptions, extra: dict[str, object]) -> int | None:
    """The emulator's port: kept while it runs, else a free one; None without it."""
    if options.lb not in OVH_PROVIDERS:
        return None
    previous = extra.get("ovh_api_port")
    if isinstance(previous, int) and probe(ovh.emulator_spec(layout)).alive:
        return previous
    return free_port()


def _s3_port(layout: Layout, options: SandboxOptions, extra: dict[str, object]) -> int | None:
    """SeaweedFS's S3 port: kept while it runs, else a free one; None without it."""
    if options.shared != "s3":
        return None
    previous = extra.get("s3_port")
    if isinstance(previous, int) and probe(seaweed.weed_spec(layout.s3_dir)).alive:
        return previous
    return free_port()


def _s3_endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _read_facts(options: SandboxOptions) -> AppFacts:
    try:
        return app_facts(Path(options.source))
    except ValueError as error:
        raise SandboxError(f"{options.source}/bgkit.toml is not valid TOML: {error}") \
            from error


def _write_files(layout: Layout, options: SandboxOptions, fleet: list[SandboxHost],
                 runtime_api: str, facts: AppFacts, ovh_port: int | None,
                 s3_port: int | None) -> bool:
    """Write every generated file; return whether haproxy.cfg changed."""
    for folder in (layout.run_dir, layout.log_dir, layout.dist_dir, Path(options.runs_dir)):
        folder.mkdir(parents=True, exist_ok=True)
    for host in fleet:
        _write_host(host, options, facts)
    sshd.ensure_keys(layout)
    addresses = [host.address for host in fleet]
    if options.bastion:
        bastion.write_bastion_files(
            layout, port=options.ssh_port, user=options.user, host_addresses=addresses,
            client_public=layout.client_key.with_suffix(".pub").read_text(encoding="ascii"))
    known = [*addresses, bastion.BASTION_ADDRESS] if options.bastion else addresses
    write_if_changed(layout.known_hosts, render_known_hosts(
        known, port=options.ssh_port, host_key=sshd.host_public_key(layout)))
    if options.manager == "systemd":
        for host in fleet:
            write_if_changed(_container_sshd_config(layout, host), render_container_sshd(
                layout, host, port=options.ssh_port))
    else:
        for shard, group in enumerate(sshd.shards(addresses), start=1):
            write_if_changed(layout.sshd_config(shard), sshd.render_sshd_config(
                layout, shard, group, port=options.ssh_port, user=options.user))
    haproxy_changed = write_if_changed(layout.haproxy_cfg, proxy.render_haproxy_cfg(
        layout, runtime_api=runtime_api, public_port=options.public_port,
        app_port=options.app_port, hosts=fleet, health_path=facts.health_path))
    if not layout.map_file.exists():  # it holds the live pool: never reset it
        write_if_changed(layout.map_file, "live blue\n")
    ovh_facts: OvhFacts | CloudFacts | None = None
    if ovh_port is not None:
        ovh_facts = ovh.write_ovh_files(layout, options=options, hosts=fleet, port=ovh_port,
                                        runtime_api=runtime_api, health_path=facts.health_path)
    s3_facts: S3Facts | None = None
    if s3_port is not None:
        seaweed.write_identity(layout.s3_dir)
        s3_facts = S3Facts(endpoint=_s3_endpoint(s3_port), bucket=S3_BUCKET,
                           credentials_file=str(layout.s3_dir / "credentials"),
                           profile=seaweed.PROFILE)
    write_if_changed(layout.config_file, render_bgkit_toml(
        layout=layout, options=options, hosts=fleet, runtime_api=runtime_api, facts=facts,
        ovh=ovh_facts, s3=s3_facts))
    try:
        load_config(layout.config_file)
    except ConfigError as error:
        raise SandboxError(f"the generated {layout.config_file} is invalid (a bgkit bug):\n"
                           f"{error}") from error
    return haproxy_changed


def _write_host(host: SandboxHost, options: SandboxOptions, facts: AppFacts) -> None:
    """The host's deploy root; its config.ini only if missing (tests may edit faults)."""
    for folder in ("shared/run", "shared/log", "releases"):
        (host.root / folder).mkdir(parents=True, exist_ok=True)
    ini = host.root / "shared" / "config.ini"
    if not ini.exists():
        write_if_changed(ini, render_service_ini(
            host, app_port=options.app_port, drain_timeout_s=facts.drain_timeout_s))


def _preflight(layout: Layout, options: SandboxOptions, fleet: list[SandboxHost],
               ovh_port: int | None, s3_port: int | None) -> None:
    """Fail before starting anything if a port the fleet needs is taken."""
    addresses = [host.address for host in fleet]
    if options.manager == "systemd":
        ensure_free(((h.address, options.ssh_port) for h in fleet
                     if not probe(systemd_hosts.container_spec(layout, h)).alive),
                    what="SSH, --ssh-port")
    for shard, group in enumerate(sshd.shards(addresses), start=1):
        if options.manager == "systemd":
            break
        if not probe(sshd.sshd_spec(layout, shard)).alive:
            ensure_free(((address, options.ssh_port) for address in group),
                        what="SSH, --ssh-port")
    if not probe(proxy.haproxy_spec(layout)).alive:
        ensure_free([("127.0.0.1", options.public_port)], what="public, --public-port")
    if ovh_port is not None and not probe(ovh.emulator_spec(layout)).alive:
        ensure_free([("127.0.0.1", ovh_port)], what="OVH API emulator")
    if s3_port is not None and not probe(seaweed.weed_spec(layout.s3_dir)).alive:
        seaweed.weed_binary()  # says how to install it, before anything starts
        ensure_free([("127.0.0.1", s3_port)], what="S3 (SeaweedFS)")
    idle = [host for host in fleet if not probe(_service_spec(host)).alive]
    ensure_free(((host.address, options.app_port) for host in idle),
                what=f"the service of a sandbox host, --app-port {options.app_port}")


def _start_missing(layout: Layout, options: SandboxOptions, fleet: list[SandboxHost],
                   runtime_api: str, ovh_port: int | None, s3_port: int | None) -> list[str]:
    """Start every sshd shard, HAProxy and the emulator not running; on failure stop them."""
    started: list[ProcessSpec] = []
    addresses = [host.address for host in fleet] if options.manager == "sandbox" else []
    try:
        if options.manager == "systemd":
            started += _boot_systemd_hosts(layout, options, fleet)
        for shard, group in enumerate(sshd.shards(addresses), start=1):
            spec = sshd.sshd_spec(layout, shard)
            if not probe(spec).alive:
                started.append(spec)
                sshd.start_sshd(layout, shard, group, port=options.ssh_port,
                                user=options.user, timeout_s=START_TIMEOUT_S,
                                key=bastion.admin_key(layout) if options.bastion else None)
        spec = bastion.bastion_spec(layout)
        if options.bastion and not probe(spec).alive:
            started.append(spec)
            bastion.start_bastion(layout, port=options.ssh_port, user=options.user,
                                  timeout_s=START_TIMEOUT_S)
        spec = proxy.haproxy_spec(layout)
        if not probe(spec).alive:
            started.append(spec)
            proxy.start_haproxy(layout, runtime_api=runtime_api,
                             public_port=options.public_port, timeout_s=START_TIMEOUT_S)
        spec = ovh.emulator_spec(layout)
        if ovh_port is not None and not probe(spec).alive:
            started.append(spec)
            ovh.start_emulator(layout, port=ovh_port, timeout_s=START_TIMEOUT_S)
        spec = seaweed.weed_spec(layout.s3_dir)
        if s3_port is not None:
            if not probe(spec).alive:
                started.append(spec)
            server = seaweed.start(layout.s3_dir, s3_port=s3_port)
            seaweed.create_bucket(server, S3_BUCKET, object_lock=True)
    except BaseException:
        stop(started, timeout_s=STOP_TIMEOUT_S)
        raise
    return [spec.role for spec in started]


# --- what runs ---------------------------------------------------------------------------

def _core_specs(layout: Layout, options: SandboxOptions) -> list[ProcessSpec]:
    fleet = fleet_hosts(layout, options.hosts)
    emulator = [ovh.emulator_spec(layout)] if options.lb in OVH_PROVIDERS else []
    if options.shared == "s3":
        emulator.append(seaweed.weed_spec(layout.s3_dir))
    if options.manager == "systemd":
        return [*(systemd_hosts.container_spec(layout, h) for h in fleet),
                proxy.haproxy_spec(layout), *emulator]
    shard_count = len(sshd.shards([h.address for h in fleet]))
    jump = [bastion.bastion_spec(layout)] if options.bastion else []
    return [*(sshd.sshd_spec(layout, shard) for shard in range(1, shard_count + 1)),
            *jump, proxy.haproxy_spec(layout), *emulator]


def _container_sshd_config(layout: Layout, host: SandboxHost) -> Path:
    return layout.root / "ssh" / f"sshd-{host.name}.conf"


def render_container_sshd(layout: Layout, host: SandboxHost, *, port: int) -> str:
    """sshd_config of a systemd host's own sshd: its address, the deploy user only, PAM
    (for the deploy user's umask 077), keys from the container's /etc."""
    return "\n".join([
        f"# sshd of systemd sandbox host {host.name}; written by `bgkit sandbox up`.",
        f"Port {port}", "AddressFamily inet", f"ListenAddress {host.address}",
        f"HostKey {layout.host_key}", "PidFile none",
        "AuthorizedKeysFile /etc/ssh/bgkit_authorized_keys/%u",
        f"AllowUsers {systemd_hosts.DEPLOY_USER}", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM yes",
        "PermitRootLogin no", "StrictModes no", "MaxStartups 200:30:300", "MaxSessions 100",
        "UseDNS no", "PrintMotd no", "X11Forwarding no", "AllowTcpForwarding no",
        "Subsystem sftp internal-sftp", ""])


def _boot_systemd_hosts(layout: Layout, options: SandboxOptions,
                        fleet: list[SandboxHost]) -> list[ProcessSpec]:
    """Boot every container not running (in parallel), then set each up as an
    administrator would: users, sshd, and the script of `bgkit host setup`."""
    from concurrent.futures import ThreadPoolExecutor

    from bgkit.host_setup import host_setups

    missing = [h for h in fleet if not probe(systemd_hosts.container_spec(layout, h)).alive]
    specs = [systemd_hosts.container_spec(layout, h) for h in missing]
    with ThreadPoolExecutor(max_workers=max(1, len(missing))) as pool:
        list(pool.map(lambda host: systemd_hosts.boot_container(layout, host), missing))
    config = load_config(layout.config_file)
    scripts = {(s.host.pool, s.host.address): s.script for s in host_setups(config)}
    public = layout.client_key.with_suffix(".pub").read_text(encoding="ascii").strip()
    for host in missing:
        systemd_hosts.provision(
            layout, host, service_user=config.service.systemd.user,
            sshd_config=_container_sshd_config(layout, host), public_key=public,
            setup_script=scripts[(host.pool, host.address)])
    for host in missing:
        wait_until(lambda host=host: sshd.check_login(  # type: ignore[misc]
            host.address, port=options.ssh_port, user=systemd_hosts.DEPLOY_USER,
            layout=layout) or None, timeout_s=START_TIMEOUT_S,
            failure=lambda host=host: f"the sshd of systemd host {host.name} did not "  # type: ignore[misc]
            "accept the deploy user's key login")
    return specs


def _service_spec(host: SandboxHost) -> ProcessSpec:
    return ProcessSpec(role=f"service {host.name}", pid_file=host.pid_file,
                       program_under=host.root)


def _all_specs(layout: Layout) -> list[ProcessSpec]:
    """Every process with a pid file in the state directory: the emulator, services,
    HAProxy, sshd."""
    services = [ProcessSpec(role=f"service {pid_file.parents[2].name}", pid_file=pid_file,
                            program_under=pid_file.parents[2])
                for pid_file in sorted(layout.hosts_dir.glob("*/shared/run/service.pid"))]
    shards = sorted(int(path.stem.removeprefix("sshd-"))
                    for path in layout.run_dir.glob("sshd-*.pid")
                    if path.stem.removeprefix("sshd-").isdigit())
    containers = [ProcessSpec(role=f"systemd host {path.stem.removeprefix('nspawn-')}",
                              pid_file=path, program=systemd_hosts.NSPAWN, marker="bgkit-")
                  for path in sorted(layout.run_dir.glob("nspawn-*.pid"))]
    return [ovh.emulator_spec(layout), *services, proxy.haproxy_spec(layout),
            *(sshd.sshd_spec(layout, shard) for shard in shards), *containers,
            bastion.bastion_spec(layout), seaweed.weed_spec(layout.s3_dir)]


def _host_status(host: SandboxHost) -> SandboxHostStatus:
    state = probe(_service_spec(host))
    try:
        release: str | None = (host.root / "current").readlink().name
    except OSError:
        release = None
    return SandboxHostStatus(pool=host.pool, name=host.name, address=host.address,
                      deploy_root=host.root, current_release=release,
                      service_pid=state.pid, service_alive=state.alive)


def _saved_options(layout: Layout) -> SandboxOptions:
    saved = read_options(layout)
    if saved is None:
        raise _no_sandbox(layout)
    return saved[0]


def _no_sandbox(layout: Layout) -> SandboxError:
    return SandboxError(f"no sandbox in {layout.root} (no sandbox.json); run "
                        f"`bgkit sandbox up --dir {layout.root}` first")
