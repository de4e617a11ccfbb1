"""Where the sandbox keeps everything, and the options it was brought up with.

Everything lives in one state directory::

    sandbox.json            the options of the last `up` (the fleet's shape)
    bgkit.toml              the config bgkit uses against this fleet
    ssh/                    host key, client key, authorized_keys, known_hosts, sshd-<n>.conf
    haproxy/                haproxy.cfg, live.map
    ovh/emulator.json       with --lb ovh-iplb or ovh-cloud-lb: the OVH API emulator's
                            config (0600)
    ovh.conf                with either: python-ovh credentials for it (0600)
    run/                    pid files, the runtime API socket
    log/                    sshd and haproxy output
    s3/                     with --shared s3: SeaweedFS's data, config and credentials (0600)
    hosts/<pool>-<i>/       one deploy root per host: shared/{config.ini,run,log}, releases/
    dist/, runs/            build output and the run archive (kept by `down`)
"""

from __future__ import annotations

import getpass
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bgkit.errors import SandboxError, UsageError
from bgkit.words import PROVIDERS as LB_PROVIDERS
from bgkit.words import PoolName

__all__ = [
    "LB_PROVIDERS",
    "MAX_HOSTS",
    "OVH_PROVIDERS",
    "SHARED_STORES",
    "Layout",
    "SandboxHost",
    "SandboxOptions",
    "fleet_hosts",
    "read_options",
    "write_if_changed",
    "write_options",
]

MAX_HOSTS = 254
OVH_PROVIDERS = ("ovh-iplb", "ovh-cloud-lb")  # the ones the OVH API emulator stands for
SHARED_STORES = ("file", "s3")  # where the lock and the archive live (--shared)
POOL_SUBNETS: dict[PoolName, str] = {"blue": "127.0.1", "green": "127.0.2"}
# Paths go unquoted into haproxy.cfg, sshd_config and HAProxy's runtime API.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+@=-]*")
_UNIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")  # as bgkit.config's HostConfig.user


@dataclass(frozen=True, slots=True)
class SandboxOptions:
    """The shape of a fleet: two fleets with equal options are the same fleet."""

    hosts: int
    app_port: int
    public_port: int
    ssh_port: int
    source: str
    runs_dir: str
    user: str
    lb: str = "haproxy"  # what bgkit talks to: HAProxy, or the OVH API emulator before it
    manager: str = "sandbox"  # start-stop-daemon, or "systemd": nspawn containers
    bastion: bool = False  # hosts reached only through a bastion sshd (ProxyJump)
    shared: str = "file"  # lock and archive: files here, or "s3": a local SeaweedFS

    def validate(self) -> SandboxOptions:
        """Return self, or raise UsageError naming the bad option."""
        if self.manager not in ("sandbox", "systemd"):
            raise UsageError(f"--manager must be sandbox or systemd, got {self.manager!r}")
        if self.bastion and self.manager != "sandbox":
            raise UsageError("--bastion works with --manager sandbox only")
        if self.shared not in SHARED_STORES:
            raise UsageError(f"--shared must be one of {', '.join(SHARED_STORES)}, got "
                             f"{self.shared!r}")
        if self.lb not in LB_PROVIDERS:
            raise UsageError(f"--lb must be one of {', '.join(LB_PROVIDERS)}, got {self.lb!r}")
        if not 1 <= self.hosts <= MAX_HOSTS:
            raise UsageError(f"--hosts must be 1-{MAX_HOSTS}, got {self.hosts}")
        ports = {"--app-port": self.app_port, "--public-port": self.public_port,
                 "--ssh-port": self.ssh_port}
        for option, port in ports.items():
            if not 1 <= port <= 65535:
                raise UsageError(f"{option} must be 1-65535, got {port}")
        if len(set(ports.values())) != len(ports):
            raise UsageError("--app-port, --public-port and --ssh-port must be three "
                             f"different ports, got {self.app_port}, {self.public_port}, "
                             f"{self.ssh_port}")
        if not _UNIX_USER.fullmatch(self.user):
            raise UsageError(f"the sandbox logs in as the current user {self.user!r}, but "
                             "bgkit.toml only takes user names of lower-case letters, digits, "
                             "'_' and '-'; run it as another user")
        if not (Path(self.source) / "CMakeLists.txt").is_file():
            raise UsageError(f"--source {self.source} is not a CMake project "
                             "(no CMakeLists.txt)")
        return self

    def differences(self, other: SandboxOptions) -> list[str]:
        """``name: old -> new`` for every option that differs."""
        mine, theirs = asdict(self), asdict(other)
        return [f"{key}: {mine[key]} -> {theirs[key]}" for key in mine
                if mine[key] != theirs[key]]


@dataclass(frozen=True, slots=True)
class SandboxHost:
    """One sandbox host: a loopback address and its own deploy root."""

    pool: PoolName
    index: int  # from 1
    address: str
    root: Path

    @property
    def name(self) -> str:
        return f"{self.pool}-{self.index}"

    @property
    def pid_file(self) -> Path:
        """Where the service's supervisor keeps its pid (the fixed sandbox contract)."""
        return self.root / "shared" / "run" / "service.pid"


@dataclass(frozen=True, slots=True)
class Layout:
    """Every path of one sandbox state directory (absolute)."""

    root: Path

    @classmethod
    def at(cls, state_dir: str | os.PathLike[str]) -> Layout:
        """The layout of ``state_dir``; raises UsageError for paths unsafe in configs."""
        root = Path(state_dir).expanduser().resolve()
        if not _SAFE_PATH.fullmatch(str(root)):
            raise UsageError(
                f"sandbox directory {str(root)!r} holds characters that HAProxy and sshd "
                "configs cannot take unquoted; use letters, digits and . _ - + @ = only")
        return cls(root)

    def __post_init__(self) -> None:
        if not self.root.is_absolute():
            raise ValueError("Layout.root must be absolute")

    @property
    def state_file(self) -> Path:
        return self.root / "sandbox.json"

    @property
    def config_file(self) -> Path:
        return self.root / "bgkit.toml"

    @property
    def hosts_dir(self) -> Path:
        return self.root / "hosts"

    @property
    def dist_dir(self) -> Path:
        return self.root / "dist"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    # ssh/
    @property
    def host_key(self) -> Path:
        return self.root / "ssh" / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.root / "ssh" / "id_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "ssh" / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.root / "ssh" / "known_hosts"

    def sshd_config(self, shard: int) -> Path:
        return self.root / "ssh" / f"sshd-{shard}.conf"

    def sshd_pid(self, shard: int) -> Path:
        return self.run_dir / f"sshd-{shard}.pid"

    def sshd_log(self, shard: int) -> Path:
        return self.log_dir / f"sshd-{shard}.log"

    # haproxy/
    @property
    def haproxy_cfg(self) -> Path:
        return self.root / "haproxy" / "haproxy.cfg"

    @property
    def map_file(self) -> Path:
        return self.root / "haproxy" / "live.map"

    @property
    def haproxy_pid(self) -> Path:
        return self.run_dir / "haproxy.pid"

    @property
    def haproxy_socket(self) -> Path:
        return self.run_dir / "haproxy.sock"

    @property
    def haproxy_log(self) -> Path:
        return self.log_dir / "haproxy.log"

    # s3/: the SeaweedFS of `--shared s3` (see bgkit.sandbox.seaweed)
    @property
    def s3_dir(self) -> Path:
        return self.root / "s3"

    # ovh/
    @property
    def ovh_emulator_config(self) -> Path:
        return self.root / "ovh" / "emulator.json"

    @property
    def ovh_conf(self) -> Path:
        return self.root / "ovh.conf"

    @property
    def ovh_emulator_pid(self) -> Path:
        return self.run_dir / "ovh-emulator.pid"

    @property
    def ovh_emulator_log(self) -> Path:
        return self.log_dir / "ovh-emulator.log"


def fleet_hosts(layout: Layout, count: int) -> list[SandboxHost]:
    """``count`` hosts per pool: blue i at 127.0.1.i, green i at 127.0.2.i (i from 1)."""
    return [SandboxHost(pool=pool, index=index, address=f"{subnet}.{index}",
                        root=layout.hosts_dir / f"{pool}-{index}")
            for pool, subnet in POOL_SUBNETS.items()
            for index in range(1, count + 1)]


def current_user() -> str:
    return getpass.getuser()


def read_options(layout: Layout) -> tuple[SandboxOptions, dict[str, Any]] | None:
    """The options and extra state saved by the last ``up``, or None if never brought up.

    Raises:
        SandboxError: the state file exists but is not one this version wrote.
    """
    try:
        data = json.loads(layout.state_file.read_text(encoding="utf-8"))
        options = SandboxOptions(**data["options"])
        extra = dict(data.get("extra", {}))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SandboxError(f"{layout.state_file} is unreadable ({error}); run "
                           f"`bgkit sandbox down --purge --dir {layout.root}` and start over") \
            from error
    return options, extra


def write_options(layout: Layout, options: SandboxOptions, extra: dict[str, Any]) -> None:
    text = json.dumps({"options": asdict(options), "extra": extra}, indent=2) + "\n"
    write_if_changed(layout.state_file, text)


def write_if_changed(path: Path, text: str, *, mode: int = 0o644) -> bool:
    """Write ``text`` to ``path`` (atomically) unless it already holds exactly that.

    The file is created with ``mode`` from the start, so a secret is never readable by
    others, not even while it is being written.
    """
    try:
        if path.read_text(encoding="utf-8") == text:
            if path.stat().st_mode & 0o777 != mode:
                path.chmod(mode)
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.unlink(missing_ok=True)
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    staged.chmod(mode)  # the umask may have narrowed it
    staged.replace(path)
    return True
