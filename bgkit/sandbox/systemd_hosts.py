"""Sandbox hosts under a real systemd (``bgkit sandbox up --manager systemd``).

Each host is a ``systemd-nspawn`` container booting the machine's own systemd as PID 1:

    systemd-nspawn --register=no --keep-unit --volatile=yes --overlay=/etc::/etc
        --bind=<state>/hosts/<name>:/srv --bind-ro=<state>/ssh -D / --machine=<machine>
        -b systemd.firstboot=off systemd.mask=<every unit this machine enables>...

- ``--volatile=yes`` gives the container this machine's ``/usr`` read-only under a tmpfs
  root, and ``--overlay=/etc::/etc`` its ``/etc`` under a tmpfs layer, so users, sudoers
  and units created inside never reach the machine. ``--volatile=overlay``/``state``
  refuse ``-D /`` here; the deploy root is a ``--bind`` of ``<state>/hosts/<name>`` at
  ``/srv`` so that releases outlive the container and tests can read them. It is not under
  /tmp or /home, which the rendered unit hides (PrivateTmp=, ProtectHome=).
- No private network: the container's sshd listens on the host's own loopback address
  and the service on its app port, where HAProxy reaches it.
- Every unit the machine itself enables (its ssh, haproxy, databases, timers) is masked
  with ``systemd.mask=``, so the container starts only what the sandbox needs.

Inside, as root through ``nsenter``: a deploy user (``deploy``, umask 077 through
pam_umask), the service user of ``[service.systemd].user``, an sshd unit, then the very
script ``bgkit host setup`` prints (unit, sudoers file, daemon-reload, enable).
Stopping is SIGTERM to ``systemd-nspawn``, which halts the container.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from bgkit.errors import SandboxError
from bgkit.sandbox.processes import ProcessSpec, read_pid, wait_until
from bgkit.sandbox.state import Layout, SandboxHost

__all__ = [
    "DEPLOY_USER",
    "NSPAWN",
    "boot_container",
    "container_spec",
    "inside",
    "machine_name",
    "masked_units",
    "nspawn_argv",
    "provision",
]

NSPAWN = Path("/usr/bin/systemd-nspawn")
DEPLOY_USER = "deploy"
BOOT_TIMEOUT_S = 120.0
_INIT = "/usr/lib/systemd/systemd"


def machine_name(layout: Layout, host: SandboxHost) -> str:
    """A machine name unique to this state directory (several sandboxes may run)."""
    digest = hashlib.sha256(str(layout.root).encode()).hexdigest()[:8]
    return f"bgkit-{digest}-{host.name}"


def pid_file(layout: Layout, host: SandboxHost) -> Path:
    return layout.run_dir / f"nspawn-{host.name}.pid"


def container_spec(layout: Layout, host: SandboxHost) -> ProcessSpec:
    return ProcessSpec(role=f"systemd host {host.name}", pid_file=pid_file(layout, host),
                       program=NSPAWN, marker=machine_name(layout, host))


def masked_units(etc: Path = Path("/etc/systemd/system")) -> list[str]:
    """Every unit this machine enables itself (its ssh, haproxy, timers...), and ssh's."""
    units = {path.name for path in etc.glob("*.wants/*")
             if path.suffix in (".service", ".timer", ".socket", ".path")}
    return sorted(units | {"ssh.service", "ssh.socket", "getty@tty1.service",
                           "console-getty.service", "systemd-timesyncd.service"})


def nspawn_argv(layout: Layout, host: SandboxHost) -> list[str]:
    return [str(NSPAWN), "--register=no", "--keep-unit", "--volatile=yes",
            "--overlay=/etc::/etc", f"--bind={host.root}:/srv",
            f"--bind-ro={layout.root / 'ssh'}", "-D", "/",
            f"--machine={machine_name(layout, host)}", "-b", "systemd.firstboot=off",
            *(f"systemd.mask={unit}" for unit in masked_units())]


def boot_container(layout: Layout, host: SandboxHost) -> int:
    """Start the container; return the nspawn pid once its systemd finished booting.

    Raises:
        SandboxError: not root, systemd-nspawn missing, or no boot in time (with the
            console's last lines).
    """
    if os.geteuid() != 0:
        raise SandboxError("--manager systemd boots containers with systemd-nspawn, which "
                           "needs root")
    if shutil.which(str(NSPAWN)) is None:
        raise SandboxError("systemd-nspawn is not installed (apt-get install "
                           "systemd-container, or `make deps`)")
    host.root.mkdir(parents=True, exist_ok=True)
    log = layout.log_dir / f"nspawn-{host.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as console:
        process = subprocess.Popen(nspawn_argv(layout, host), stdin=subprocess.DEVNULL,
                                   stdout=console, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    pid_file(layout, host).write_text(f"{process.pid}\n", encoding="ascii")

    def booted() -> int | None:
        if process.poll() is not None:
            raise SandboxError(f"systemd-nspawn for {host.name} exited with "
                               f"{process.returncode}:\n{_tail(log)}")
        init = init_pid(process.pid)
        if init is None:
            return None
        state = _run_inside(init, "systemctl is-system-running", check=False).strip()
        return process.pid if state in ("running", "degraded") else None

    return wait_until(booted, timeout_s=BOOT_TIMEOUT_S, failure=lambda: (
        f"{host.name}'s systemd did not finish booting in {BOOT_TIMEOUT_S:g} s; its console "
        f"({log}) ends with:\n{_tail(log)}"))


def init_pid(nspawn_pid: int) -> int | None:
    """The container's PID 1 as this machine sees it: a descendant of systemd-nspawn."""
    pending = [nspawn_pid]
    while pending:
        pid = pending.pop()
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                children = [int(c) for c in task.read_text().split()]
            except OSError:
                continue
            for child in children:
                try:
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmdline[0].decode(errors="replace") == _INIT:
                    return child
                pending.append(child)
    return None


def inside(layout: Layout, host: SandboxHost, script: str, *, check: bool = True) -> str:
    """Run a shell script as root inside the host's container (nsenter); its output.

    Raises:
        SandboxError: the container is not running, or (``check``) the script failed.
    """
    nspawn = read_pid(pid_file(layout, host))
    init = init_pid(nspawn) if nspawn is not None else None
    if init is None:
        raise SandboxError(f"the systemd host {host.name} is not running")
    return _run_inside(init, script, check=check)


def _run_inside(init: int, script: str, *, check: bool) -> str:
    argv = ["nsenter", "-t", str(init), "-a", "--", "/bin/sh", "-c", script]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if check and done.returncode != 0:
        raise SandboxError(f"inside the container (exit {done.returncode}): {script[:200]}\n"
                           f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return done.stdout


def provision(layout: Layout, host: SandboxHost, *, service_user: str, sshd_config: Path,
              public_key: str, setup_script: str) -> None:
    """Users, the deploy user's umask and key, sshd, then the host setup script."""
    q = shlex.quote
    keys = f"/etc/ssh/bgkit_authorized_keys/{DEPLOY_USER}"
    inside(layout, host, "; ".join([
        "set -e",
        f"id -u {DEPLOY_USER} >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "
        f"--comment umask=077 {DEPLOY_USER}",
        f"id -u {q(service_user)} >/dev/null 2>&1 || useradd --system --user-group "
        f"--no-create-home --shell /usr/sbin/nologin {q(service_user)}",
        "grep -q pam_umask /etc/pam.d/sshd || echo 'session optional pam_umask.so' "
        ">> /etc/pam.d/sshd",
        "mkdir -p /etc/ssh/bgkit_authorized_keys",
        f"printf '%s\\n' {q(public_key)} > {keys}",
        f"chmod 0644 {keys}",
        f"printf '%s\\n' {q(_sshd_unit(sshd_config))} > /etc/systemd/system/bgkit-sshd.service",
        "systemctl daemon-reload",
        "systemctl start bgkit-sshd.service",
    ]))
    inside(layout, host, setup_script)


def _sshd_unit(config: Path) -> str:
    return "\n".join([
        "[Unit]", "Description=sshd of a bgkit sandbox host", "",
        "[Service]", f"ExecStart=/usr/sbin/sshd -D -f {config}",
        "RuntimeDirectory=sshd", "RuntimeDirectoryPreserve=yes", ""])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console log)"


def wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
