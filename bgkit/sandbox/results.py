"""What the sandbox functions return: value objects, JSON-ready on request."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bgkit.sandbox.processes import ProcessState
from bgkit.sandbox.state import SandboxHost, SandboxOptions

__all__ = ["SandboxHostStatus", "SandboxInfo", "SandboxStatus"]


def _process_json(state: ProcessState) -> dict[str, Any]:
    return {"role": state.role, "pid": state.pid, "alive": state.alive,
            "pid_file": str(state.pid_file)}


@dataclass(frozen=True, slots=True)
class SandboxInfo:
    """A sandbox that is up: where its config is, what runs, what this call started."""

    state_dir: Path
    config_file: Path
    options: SandboxOptions
    public_url: str
    runtime_api: str
    processes: tuple[ProcessState, ...]
    hosts: tuple[SandboxHost, ...]
    started: tuple[str, ...]  # roles this call started; () when all was already running
    ovh_api: str | None = None  # the OVH API emulator's endpoint URL, with --lb ovh-*
    s3_endpoint: str | None = None  # SeaweedFS's S3 endpoint, with --shared s3

    def usage(self) -> str:
        """How to use the fleet, for a person at a terminal."""
        count = self.options.hosts
        state = ("started " + ", ".join(self.started)) if self.started else "already running"
        emulator = ([f"  OVH API emulator at {self.ovh_api} (keys in "
                     f"{self.state_dir / 'ovh.conf'}); bgkit switches through it"]
                    if self.ovh_api else [])
        if self.s3_endpoint:
            emulator.append(f"  S3 (SeaweedFS) at {self.s3_endpoint}: the lock and the run "
                            f"archive live there (keys in {self.state_dir / 's3/credentials'})")
        return "\n".join([
            f"sandbox in {self.state_dir}: {state}",
            f"  {count} host(s) per pool: blue 127.0.1.1-{count}, green 127.0.2.1-{count}, "
            f"SSH port {self.options.ssh_port}, app port {self.options.app_port}",
            f"  HAProxy at {self.public_url}, runtime API {self.runtime_api}",
            *emulator,
            "",
            "use it:",
            f"  export BGKIT_CONFIG={self.config_file}",
            "  bgkit build",
            "  bgkit deploy",
            "  bgkit status",
            "",
            f"stop it:  bgkit sandbox down --dir {self.state_dir}",
        ])


@dataclass(frozen=True, slots=True)
class SandboxHostStatus:
    """One sandbox host: its deploy root, current release and service process."""

    pool: str
    name: str
    address: str
    deploy_root: Path
    current_release: str | None  # the name `current` points to, None without a deploy
    service_pid: int | None
    service_alive: bool


@dataclass(frozen=True, slots=True)
class SandboxStatus:
    """Every process and host of one sandbox state directory."""

    state_dir: Path
    options: SandboxOptions
    config_file: Path
    processes: tuple[ProcessState, ...]
    hosts: tuple[SandboxHostStatus, ...]

    @property
    def running(self) -> bool:
        """True when sshd and HAProxy all run (services may or may not be deployed)."""
        return bool(self.processes) and all(state.alive for state in self.processes)

    def to_json(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "config_file": str(self.config_file),
            "running": self.running,
            "options": asdict(self.options),
            "processes": [_process_json(state) for state in self.processes],
            "hosts": [{**asdict(host), "deploy_root": str(host.deploy_root)}
                      for host in self.hosts],
        }
