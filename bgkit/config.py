"""bgkit.toml -> a frozen, typed :class:`Config`, validated once at the edge.

``load_config(path)`` is the only way in. Every problem is reported at once, each
naming the file, the key path and what was expected, e.g.::

    bgkit.toml: pools.green.hosts[1].port: expected an integer 1-65535, got "22x"

Relative paths in the file are resolved against the file's own folder.
"""

from __future__ import annotations

import itertools
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    model_validator,
)

from bgkit import _validators as v
from bgkit.errors import ConfigError
from bgkit.words import PoolName, ProviderName

__all__ = [
    "AppConfig",
    "Config",
    "DeployConfig",
    "GatesConfig",
    "HaproxySettings",
    "HooksConfig",
    "HostConfig",
    "IncludeConfig",
    "LbConfig",
    "LockConfig",
    "OvhCloudLbSettings",
    "OvhIplbSettings",
    "PoolConfig",
    "PoolsConfig",
    "RunsConfig",
    "ServiceConfig",
    "ServiceFile",
    "SshConfig",
    "StoreAccess",
    "SwitchConfig",
    "SystemdConfig",
    "find_config",
    "load_config",
    "parse_config",
]

CONFIG_ENV = "BGKIT_CONFIG"
DEFAULT_NAME = "bgkit.toml"

Port = Annotated[int, BeforeValidator(v.port)]
Address = Annotated[str, BeforeValidator(v.address)]
Name = Annotated[str, BeforeValidator(v.name)]
Version = Annotated[str, BeforeValidator(v.version)]
UnixUser = Annotated[str, BeforeValidator(v.unix_user)]
AbsPath = Annotated[str, BeforeValidator(v.absolute_path)]
RelPath = Annotated[str, BeforeValidator(v.relative_path)]
AnyPath = Annotated[str, BeforeValidator(v.any_path)]
UrlPath = Annotated[str, BeforeValidator(v.url_path)]
HeaderName = Annotated[str, BeforeValidator(v.header_name)]
CmakeOption = Annotated[str, BeforeValidator(v.cmake_option)]
Seconds = Annotated[float, BeforeValidator(v.positive_seconds)]
Ratio = Annotated[float, BeforeValidator(v.ratio)]
PositiveNumber = Annotated[float, BeforeValidator(v.positive_number)]
Count = Annotated[int, BeforeValidator(v.count)]
Uuid = Annotated[str, BeforeValidator(v.uuid)]
LoopbackOrUrl = Annotated[str, BeforeValidator(v.http_url)]
StoreEndpoint = Annotated[str, BeforeValidator(v.store_endpoint)]
LockUrl = Annotated[str, BeforeValidator(v.lock_url)]
RunsUrl = Annotated[str, BeforeValidator(v.runs_url)]
RetentionDays = Annotated[int, BeforeValidator(v.retention_days)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IncludeConfig(_Model):
    """One ``[app].include`` entry: repository files (``from``, relative to ``source_dir``)
    added to the release at ``to``."""

    from_: RelPath = Field(alias="from")
    to: RelPath


class AppConfig(_Model):
    """``[app]``: what is built.

    CMake installs with ``CMAKE_INSTALL_PREFIX=/`` into a staging folder, which is the
    release: ``install(TARGETS x DESTINATION bin)`` and GNUInstallDirs'
    ``${CMAKE_INSTALL_BINDIR}`` both give ``bin/x``. ``install_components`` installs only
    those CMake components; ``include`` adds repository files; ``ctest = false`` builds a
    project without tests, ``ctest_args`` are passed to ctest (e.g. ``["-E", "network"]``).
    """

    name: Name
    version: Version
    source_dir: AnyPath = "."
    cmake_options: tuple[CmakeOption, ...] = ()
    build_type: Literal["Release", "RelWithDebInfo", "MinSizeRel", "Debug"] = "Release"
    dist_dir: AnyPath = "dist"
    include: tuple[IncludeConfig, ...] = ()
    install_components: tuple[Name, ...] = ()
    ctest: StrictBool = True
    ctest_args: tuple[Annotated[str, BeforeValidator(v.ctest_arg)], ...] = ()


class SystemdConfig(_Model):
    """``[service.systemd]``: the unit rendered for real servers.

    An administrator installs it once with ``bgkit host setup``; a deploy only reads it
    from ``unit_dir`` and refuses a host whose installed unit differs from the rendering.
    """

    unit: Annotated[str, BeforeValidator(v.unit_name)] | None = None
    user: UnixUser = "bgkit"
    group: UnixUser | None = None
    restart: Literal["on-failure", "always"] = "on-failure"
    limit_nofile: Count = 65536
    read_write_paths: tuple[AbsPath, ...] = ()
    unit_dir: AbsPath = "/etc/systemd/system"


class ServiceFile(_Model):
    """One ``[[service.files]]``: a Jinja2 template of the repository (``template``,
    relative to bgkit.toml) rendered for each host and published atomically at
    ``<root>/shared/<path>`` with ``mode`` before the service restarts."""

    template: AnyPath
    path: RelPath
    mode: Annotated[int, BeforeValidator(v.file_mode)] = 0o644


class ServiceConfig(_Model):
    """``[service]``: how the deployed program runs and answers health checks.

    ``args`` and ``files`` templates may use the placeholders of
    :data:`bgkit._validators.SERVICE_PLACEHOLDERS`: the host's deploy ``root``, its
    ``shared/`` folder, the ``current`` release link, the host's ``address``, the service
    ``port``, the host's name (``host``), its ``pool``, and the release's ``version`` and
    ``release`` id (not in the args of a systemd unit, which is installed once).
    ``version_from`` is where a health answer says its version: ``header:<name>``,
    ``json:<pointer>`` or ``none`` (then the release is read over SSH and the pool from
    the load balancer's header). ``manager`` is ``systemd`` on real servers; ``sandbox``
    is the start-stop-daemon supervisor of ``bgkit sandbox``.
    """

    port: Port
    executable: RelPath
    args: tuple[Annotated[str, BeforeValidator(v.service_arg)], ...] = ()
    manager: Literal["systemd", "sandbox"] = "systemd"
    health_path: UrlPath = "/health"
    version_header: HeaderName = "X-App-Version"
    version_from: Annotated[str, BeforeValidator(v.version_from)] | None = None
    drain_timeout_s: Seconds = 10.0
    files: tuple[ServiceFile, ...] = ()
    systemd: SystemdConfig = SystemdConfig()

    @model_validator(mode="after")
    def _systemd_args_are_per_host(self) -> ServiceConfig:
        if self.manager != "systemd":
            return self
        for index, arg in enumerate(self.args):
            used = v.placeholders_in(arg) & set(v.PER_RELEASE_PLACEHOLDERS)
            if used:
                raise ValueError(
                    f"args[{index}] uses {{{sorted(used)[0]}}}, which changes with every "
                    "release; a systemd unit is installed once per host (bgkit host setup), "
                    "so its ExecStart cannot hold it: put it in a [[service.files]] template")
        return self

    @model_validator(mode="after")
    def _one_version_setting(self) -> ServiceConfig:
        if self.version_from is not None and "version_header" in self.model_fields_set:
            raise ValueError("set version_from or version_header, not both "
                             '(version_header = "X" means version_from = "header:X")')
        return self

    @property
    def version_source(self) -> str:
        """``version_from``, or ``header:<version_header>`` when it is not set."""
        return self.version_from or f"header:{self.version_header}"


class DeployConfig(_Model):
    """``[deploy]``: how releases reach the hosts of the idle pool.

    A release whose members take more than ``max_unpacked_mb`` MiB unpacked is refused
    before any host is touched; preflight wants that much (plus the upload) free on each
    host, and ``min_free_mb`` on top.

    Drain: a host is restarted only once traffic left its pool ``min_idle_s`` ago (the
    switch records when) and then neither the load balancer (where it can see sessions)
    nor the host itself counts an open connection to the service, waiting at most
    ``drain_timeout_s``; what is still open then is cut, and reported.
    """

    fanout: Annotated[int, BeforeValidator(v.fanout)] = 10
    keep_releases: Annotated[int, BeforeValidator(v.keep_releases)] = 5
    health_timeout_s: Seconds = 30.0
    min_free_mb: Count = 100
    min_idle_s: Annotated[float, BeforeValidator(v.non_negative_number)] = 30.0
    drain_timeout_s: Seconds = 300.0
    max_unpacked_mb: Annotated[int, BeforeValidator(v.megabytes)] = 512
    connect_timeout_s: Seconds = 10.0
    command_timeout_s: Seconds = 120.0


class SshConfig(_Model):
    """``[ssh]``: where host keys, the client key and OpenSSH's config are (paths only,
    never key material).

    Host keys are always verified against ``known_hosts``; an unknown host is refused.
    Each host is resolved as ``ssh -G`` resolves it: ``config_file`` (like ``ssh -F``),
    else ``~/.ssh/config`` and ``/etc/ssh/ssh_config`` give HostName, User, Port,
    IdentityFile and ProxyJump (Include and Match too). ``identity_file`` is tried first.
    """

    known_hosts: AnyPath = "~/.ssh/known_hosts"
    identity_file: AnyPath | None = None
    config_file: AnyPath | None = None


class HostConfig(_Model):
    """One server: where to reach it over SSH and where releases live.

    ``port`` and ``user``, when given, win over the SSH config (as ``ssh -p -l`` do);
    else the SSH config decides (default 22 and the local user). ``name`` is the host's
    ``{host}`` placeholder (default: its address).
    """

    address: Address
    port: Port | None = None
    user: UnixUser | None = None
    deploy_root: AbsPath
    name: Name | None = None


class PoolConfig(_Model):
    hosts: tuple[HostConfig, ...] = Field(min_length=1)


class PoolsConfig(_Model):
    """``[pools.blue]`` and ``[pools.green]``; no host may sit in both."""

    blue: PoolConfig
    green: PoolConfig

    @model_validator(mode="after")
    def _hosts_are_distinct(self) -> PoolsConfig:
        seen: dict[tuple[str, int | None, str], str] = {}
        pool_of: dict[str, str] = {}
        named: dict[str, str] = {}
        for pool_name in ("blue", "green"):
            pool: PoolConfig = getattr(self, pool_name)
            for index, host in enumerate(pool.hosts):
                key = (host.address, host.port, host.deploy_root)
                where = f"{pool_name}.hosts[{index}]"
                if key in seen:
                    raise ValueError(
                        f"{where} is the same host and deploy root as {seen[key]}; "
                        "expected every host to appear once"
                    )
                other = pool_of.get(host.address)
                if other is not None and not other.startswith(pool_name):
                    raise ValueError(
                        f"{where} has the address {host.address} of {other}: the load "
                        "balancer tells servers apart by address and port, so one server "
                        "in both pools would take live traffic while it is deployed to as "
                        "idle; expected each address in one pool only")
                if host.name is not None:
                    if host.name in named:
                        raise ValueError(f"{where} is named {host.name!r} like "
                                         f"{named[host.name]}; expected distinct names")
                    named[host.name] = where
                seen[key] = where
                pool_of.setdefault(host.address, where)
        return self

    def get(self, pool: PoolName) -> PoolConfig:
        return self.blue if pool == "blue" else self.green


# The unit bgkit renders hides these from the service (ProtectHome=yes, PrivateTmp=yes).
_HIDDEN_FROM_UNIT = {"/home": "ProtectHome=yes", "/root": "ProtectHome=yes",
                     "/run/user": "ProtectHome=yes", "/tmp": "PrivateTmp=yes",  # noqa: S108
                     "/var/tmp": "PrivateTmp=yes"}  # noqa: S108


def _hidden_by_unit(path: str) -> str | None:
    """The unit setting that would hide ``path`` from a systemd service, if any."""
    for prefix, setting in _HIDDEN_FROM_UNIT.items():
        if path == prefix or path.startswith(prefix + "/"):
            return f"{setting} in the unit hides {prefix} from the service"
    return None


class PoolBackends(_Model):
    blue: Name = "blue"
    green: Name = "green"


class HaproxySettings(_Model):
    """``[lb.haproxy]``: HAProxy's runtime API and the map that names the live backend.

    The frontend routes with ``use_backend %[str(live),map(<map_file>,<blue backend>)]``;
    switching sets the ``live`` entry through the runtime API and rewrites ``map_file``
    so that a reload keeps the switch. ``runtime_api`` is a socket path or ``host:port``.
    """

    runtime_api: AnyPath
    map_file: AnyPath
    frontend: Name = "app"
    backends: PoolBackends = PoolBackends()


class FarmIds(_Model):
    blue: Count
    green: Count


class OvhIplbSettings(_Model):
    """``[lb.ovh_iplb]``: which IP Load Balancing service, frontend and farms.

    ``endpoint`` is a python-ovh endpoint name or the http(s) URL of an API root (e.g.
    ``http://127.0.0.1:8765/1.0``). Keys are never set here: they come from the
    ``OVH_*`` variables or python-ovh's ovh.conf files, in the section named by the
    endpoint; ``config_file`` adds one such file (a path, relative to bgkit.toml).
    """

    endpoint: Annotated[str, BeforeValidator(v.ovh_endpoint)] = "ovh-eu"
    service_name: Name
    frontend_id: Count
    farm_ids: FarmIds
    config_file: AnyPath | None = None


class PoolIds(_Model):
    blue: Uuid
    green: Uuid


class OvhCloudLbSettings(_Model):
    """``[lb.ovh_cloud_lb]``: which Public Cloud Load Balancer (Octavia), listener and pools.

    ``service_name`` is the Public Cloud project id (OVHcloud's ``serviceName``),
    ``region`` the load balancer's region (e.g. ``GRA11``); the listener's
    ``defaultPoolId`` names the live pool, one of ``pool_ids``. ``endpoint`` and
    ``config_file`` are as for ``[lb.ovh_iplb]``: keys come only from the ``OVH_*``
    variables or python-ovh's ovh.conf files.
    """

    endpoint: Annotated[str, BeforeValidator(v.ovh_endpoint)] = "ovh-eu"
    service_name: Name
    region: Name
    loadbalancer_id: Uuid
    listener_id: Uuid
    pool_ids: PoolIds
    config_file: AnyPath | None = None

    @model_validator(mode="after")
    def _two_pools(self) -> OvhCloudLbSettings:
        if self.pool_ids.blue == self.pool_ids.green:
            raise ValueError(f"pool_ids: blue and green must be two different pools, both "
                             f"are {self.pool_ids.blue}")
        return self


class LbConfig(_Model):
    """``[lb]``: the load balancer provider and its settings (never secrets).

    ``pool_header`` is the response header the load balancer adds naming the pool
    (backend) that served a request (HAProxy: ``http-response set-header X-Bgkit-Pool
    %b``); the post-switch watch checks it when answers carry it.
    """

    provider: ProviderName
    public_url: LoopbackOrUrl
    pool_header: HeaderName = "X-Bgkit-Pool"
    haproxy: HaproxySettings | None = None
    ovh_iplb: OvhIplbSettings | None = None
    ovh_cloud_lb: OvhCloudLbSettings | None = None

    @model_validator(mode="after")
    def _provider_has_settings(self) -> LbConfig:
        section = self.provider.replace("-", "_")
        if getattr(self, section) is None:
            raise ValueError(f'provider "{self.provider}" needs a [lb.{section}] table')
        return self


class GatesConfig(_Model):
    """``[gates]``: thresholds the verify step judges a pool by."""

    min_samples_per_host: Count = 50
    max_error_ratio: Ratio = 0.0
    max_p99_ms: PositiveNumber = 500.0
    max_p95_ratio: PositiveNumber = 1.5
    min_p95_delta_ms: Annotated[float, BeforeValidator(v.non_negative_number)] = 5.0
    require_version: StrictBool = True
    max_consecutive_failures: Count = 3
    parity: Literal["warn", "fail"] = "warn"  # pools whose hosts differ (CPU, memory...)


HookArgv = tuple[Annotated[str, BeforeValidator(v.hook_arg)], ...]


class HooksConfig(_Model):
    """``[hooks]``: commands bgkit runs on this machine around its steps.

    Each is an argv list (no shell: ``["sh", "-c", "..."]`` when one is wanted), run in
    bgkit.toml's folder with ``BGKIT_*`` variables describing the step (README "Hooks"),
    for at most ``timeout_s`` seconds. A failing ``pre_*`` hook stops its step before
    anything changes; every hook's exit code, duration and output tail are recorded.
    """

    pre_deploy: HookArgv = ()
    post_deploy: HookArgv = ()
    pre_switch: HookArgv = ()
    post_switch: HookArgv = ()
    post_rollback: HookArgv = ()
    timeout_s: Seconds = 600.0


CanaryPercent = Annotated[int, BeforeValidator(v.canary_percent)]


class CanaryStep(_Model):
    """One canary step: ``percent`` of requests to the idle pool for ``hold_s`` seconds
    (default ``[switch].canary_hold_s``)."""

    percent: CanaryPercent
    hold_s: Seconds | None = None


def _canary_step(value: object) -> object:
    """``5`` is ``{percent = 5}``: a bare number is a step with the default hold."""
    return {"percent": value} if isinstance(value, int | float | str) else value


class SwitchConfig(_Model):
    """``[switch]``: the evidence taken right before a switch and the watch after it.

    ``timeout_s`` bounds one load-balancer change; when it passes with the change still
    being applied (an OVH refresh task), bgkit follows it ``apply_grace_s`` more before
    it calls the state unknown. The watch polls the load balancer every ``lb_poll_s``.
    ``canary`` (e.g. ``[5, 25]`` or ``[{percent = 5, hold_s = 120}]``, percents rising)
    sends that share of requests to the idle pool for each step's hold before the full
    switch, watching the answers of each pool; empty: no canary.
    """

    samples_per_host: Count = 100
    sample_rate_per_s: PositiveNumber = 200.0
    watch_s: Seconds = 10.0
    watch_rate_per_s: PositiveNumber = 50.0
    lb_poll_s: Seconds = 0.25
    timeout_s: Seconds = 60.0
    apply_grace_s: Seconds = 120.0
    canary: tuple[Annotated[CanaryStep, BeforeValidator(_canary_step)], ...] = ()
    canary_hold_s: Seconds = 30.0

    @model_validator(mode="after")
    def _rising(self) -> SwitchConfig:
        percents = [step.percent for step in self.canary]
        if any(b <= a for a, b in itertools.pairwise(percents)):
            raise ValueError(f"canary: the steps' percents must rise, got {percents}")
        return self

    def canary_steps(self, override: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """(percent, hold in seconds) per step: ``override`` (percents, held
        ``canary_hold_s`` each; ``[]`` for none) or the configured steps."""
        if override is not None:
            return [(percent, self.canary_hold_s) for percent in override]
        return [(step.percent, step.hold_s if step.hold_s is not None else self.canary_hold_s)
                for step in self.canary]


class StoreAccess(_Model):
    """How bgkit reaches S3-compatible object storage, for an ``s3://`` ``url``.

    Credentials never go here: boto3 reads them where every AWS tool does
    (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, the shared
    credentials file, a profile). ``endpoint`` (OVHcloud:
    ``https://s3.<region>.io.cloud.ovh.net``) wins over ``AWS_ENDPOINT_URL``; without
    either, AWS itself. ``credentials_file`` names a shared credentials file (its path,
    never its keys), else ``AWS_SHARED_CREDENTIALS_FILE`` or ``~/.aws/credentials``;
    ``profile`` a section of it, else ``AWS_PROFILE``.
    """

    endpoint: StoreEndpoint | None = None
    region: Name | None = None
    profile: Name | None = None
    credentials_file: AnyPath | None = None


class LockConfig(StoreAccess):
    """``[lock]``: the deployment lease every operator and CI job shares.

    ``url`` is ``file:///absolute/path`` or ``s3://bucket/key`` (a lease object in
    S3-compatible storage, written only with conditional requests). Without it, ``path``
    (default ``bgkit.lock`` beside bgkit.toml) is the lease file: ``path = "x"`` and
    ``url = "file:///abs/x"`` are the same backend; give one. The holder renews the lease
    every ``ttl_s / 3`` while it works; a lease not renewed for ``ttl_s`` may be taken over
    (never while its process is seen alive on the same machine), and that is recorded in
    the new lease.
    """

    path: AnyPath = "bgkit.lock"
    url: LockUrl | None = None
    ttl_s: Seconds = 60.0

    @model_validator(mode="after")
    def _one_place(self) -> LockConfig:
        _one_of(self, "path", "lock")
        return self


class RunsConfig(StoreAccess):
    """``[runs]``: where executed notebooks are archived and how long a cell may run.

    ``url``: ``s3://bucket/prefix`` puts the archive in S3-compatible object storage
    (published write-once, the index appended by compare-and-swap), read through a local
    copy in ``cache_dir`` (default ``~/.cache/bgkit/archives/<endpoint>/<bucket>/<prefix>``);
    ``file:///folder`` is the same as ``dir``. ``retain_days``: on a bucket with Object
    Lock, every new run (and index version) is retained that long, in ``retain_mode``.

    ``iopub_timeout_s`` is how long, after a cell finished, its remaining output may take
    to arrive (a cell that prints a flood of output on a busy machine). Notebooks always
    run on a kernel of bgkit's own interpreter (there is no kernel to choose).
    """

    dir: AnyPath = "runs"
    url: RunsUrl | None = None
    cache_dir: AnyPath | None = None
    retain_days: RetentionDays | None = None
    retain_mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    cell_timeout_s: Seconds = 1800.0
    iopub_timeout_s: Seconds = 120.0

    @model_validator(mode="after")
    def _one_place(self) -> RunsConfig:
        _one_of(self, "dir", "runs")
        remote = bool(self.url and self.url.startswith("s3://"))
        for key in ("cache_dir", "retain_days"):
            if key in self.model_fields_set and not remote:
                raise ValueError(f"{key}: only for an archive in object storage "
                                 "(url = \"s3://bucket/prefix\")")
        return self


def _one_of(table: LockConfig | RunsConfig, local_key: str, name: str) -> None:
    if table.url is not None and local_key in table.model_fields_set:
        raise ValueError(f"{local_key} and url both say where the "
                         f"{'lock' if name == 'lock' else 'archive'} is: give one")
    if table.url is None or table.url.startswith("file://"):
        accessed = sorted(key for key in StoreAccess.model_fields
                          if key in table.model_fields_set)
        if accessed:
            raise ValueError(f"{accessed[0]}: only for object storage "
                             "(url = \"s3://...\")")


class Config(_Model):
    """The whole of bgkit.toml. ``path`` is the file it came from."""

    app: AppConfig
    service: ServiceConfig
    pools: PoolsConfig
    lb: LbConfig
    gates: GatesConfig = GatesConfig()
    runs: RunsConfig = RunsConfig()
    deploy: DeployConfig = DeployConfig()
    ssh: SshConfig = SshConfig()
    switch: SwitchConfig = SwitchConfig()
    lock: LockConfig = LockConfig()
    hooks: HooksConfig = HooksConfig()
    path: Path = Path(DEFAULT_NAME)

    @model_validator(mode="after")
    def _systemd_can_see_the_deploy_roots(self) -> Config:
        if self.service.manager != "systemd":
            return self
        for pool_name in ("blue", "green"):
            pool = self.pools.blue if pool_name == "blue" else self.pools.green
            for index, host in enumerate(pool.hosts):
                hidden = _hidden_by_unit(host.deploy_root)
                if hidden:
                    raise ValueError(
                        f"pools.{pool_name}.hosts[{index}].deploy_root {host.deploy_root}: "
                        f"{hidden}, so it could not run from there; put the deploy root "
                        "elsewhere (/srv/<app> or /opt/<app>)")
        return self

    def resolve(self, relative: str) -> Path:
        """A path from the file, made absolute against the file's folder."""
        return (self.path.parent / relative).resolve()

    @property
    def source_dir(self) -> Path:
        return self.resolve(self.app.source_dir)

    @property
    def dist_dir(self) -> Path:
        return self.resolve(self.app.dist_dir)

    @property
    def runs_url(self) -> str | None:
        """The archive in object storage (``s3://bucket/prefix``), or None for a folder."""
        url = self.runs.url
        return url if url is not None and url.startswith("s3://") else None

    @property
    def runs_dir(self) -> Path:
        """The archive folder bgkit reads: the archive itself, or for ``s3://`` its local
        copy (see :func:`bgkit.runbook.backends.open_archive`)."""
        url = self.runs.url
        if url is None:
            return self.resolve(self.runs.dir)
        if url.startswith("file://"):
            return Path(url.removeprefix("file://"))
        if self.runs.cache_dir is not None:
            return self.resolve(str(Path(self.runs.cache_dir).expanduser())) / "archive"
        return _cache_home() / "bgkit" / "archives" / _cache_slug(url, self.runs.endpoint) \
            / "archive"

    @property
    def lock_url(self) -> str:
        """Where the lease is: ``file:///...`` (the default, from ``[lock].path``) or
        ``s3://bucket/key``."""
        return self.lock.url or f"file://{self.resolve(self.lock.path)}"

    @property
    def lock_path(self) -> Path:
        """The lease file of the file backend (``[lock].path`` or a ``file://`` url)."""
        url = self.lock.url
        if url is not None and url.startswith("file://"):
            return Path(url.removeprefix("file://"))
        return self.resolve(self.lock.path)

    @property
    def known_hosts(self) -> Path:
        return self.resolve(str(Path(self.ssh.known_hosts).expanduser()))

    @property
    def identity_file(self) -> Path | None:
        if self.ssh.identity_file is None:
            return None
        return self.resolve(str(Path(self.ssh.identity_file).expanduser()))

    @property
    def ssh_config_file(self) -> Path | None:
        if self.ssh.config_file is None:
            return None
        return self.resolve(str(Path(self.ssh.config_file).expanduser()))



def _cache_home() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME")
    return Path(cache) if cache and Path(cache).is_absolute() else Path.home() / ".cache"


def _cache_slug(url: str, endpoint: str | None) -> Path:
    """``<endpoint host>/<bucket>/<prefix>``: one local copy per archive."""
    where = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or \
        os.environ.get("AWS_ENDPOINT_URL") or "aws"
    host = where.split("://", 1)[-1].split("/", 1)[0]
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in host) or "aws"
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return Path(safe) / bucket / (prefix.replace("/", "_") or "_")


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: ``explicit``, else ``$BGKIT_CONFIG``, else ./bgkit.toml."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return Path(DEFAULT_NAME)


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate bgkit.toml.

    Raises:
        ConfigError: the file is missing, is not TOML, or breaks the schema; the
            message lists every problem with its key path.
    """
    config_path = find_config(path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            config_path,
            [f"no such file (pass --config PATH or set {CONFIG_ENV})"],
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(config_path, [f"cannot read: {error}"]) from error
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(config_path, [f"not valid TOML: {error}"]) from error
    return parse_config(data, path=config_path)


def parse_config(data: Mapping[str, Any], *, path: str | os.PathLike[str]) -> Config:
    """Validate already-parsed TOML data; ``path`` names it in errors and anchors paths."""
    source = Path(path)
    if not isinstance(data, Mapping):
        raise ConfigError(source, ["expected a table at the top level"])
    if "path" in data:
        raise ConfigError(source, ["path: unknown key (the file's own location is implied)"])
    try:
        config = Config.model_validate({**data, "path": source.absolute()})
    except ValidationError as error:
        raise ConfigError(source, v.describe_errors(error, Config)) from None
    problems = _template_problems(config)
    if problems:
        raise ConfigError(source, problems)
    return config


def _template_problems(config: Config) -> list[str]:
    """Every ``[[service.files]]`` template must exist and render with the placeholders."""
    from bgkit.host_files import check_template

    return [f"service.files[{index}].template: {problem}"
            for index, item in enumerate(config.service.files)
            if (problem := check_template(config.resolve(item.template)))]
