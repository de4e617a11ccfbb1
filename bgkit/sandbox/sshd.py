"""The sandbox's OpenSSH: keys, known_hosts, sshd configs, start and readiness.

OpenSSH's sshd listens on at most 16 addresses (``MAX_LISTEN_SOCKS``), so the fleet's
addresses are split into shards of 16, each served by one sshd with its own config,
pid file and log; two pools of up to 8 hosts need a single sshd. Every shard shares
the host key, so one known_hosts line per address covers them all.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bgkit.errors import SandboxError
from bgkit.sandbox.processes import ProcessSpec, ensure_free, probe, wait_until
from bgkit.sandbox.render import render_template
from bgkit.sandbox.state import Layout, write_if_changed

__all__ = [
    "MAX_LISTEN_ADDRESSES",
    "SSHD",
    "check_login",
    "ensure_keys",
    "host_public_key",
    "render_sshd_config",
    "shards",
    "sshd_spec",
    "start_sshd",
]

SSHD = Path("/usr/sbin/sshd")
MAX_LISTEN_ADDRESSES = 16
LOG_TAIL = 15


def shards(addresses: Sequence[str]) -> list[list[str]]:
    """The addresses cut into groups one sshd can listen on; shard n is index n-1."""
    return [list(addresses[start:start + MAX_LISTEN_ADDRESSES])
            for start in range(0, len(addresses), MAX_LISTEN_ADDRESSES)]


def ensure_keys(layout: Layout) -> None:
    """Create the host key and the client key once; (re)write authorized_keys.

    Raises:
        SandboxError: ssh-keygen is missing or failed.
    """
    layout.host_key.parent.mkdir(parents=True, exist_ok=True)
    for key, comment in ((layout.host_key, "bgkit-sandbox-host"),
                         (layout.client_key, "bgkit-sandbox-client")):
        if not key.exists():
            _keygen(key, comment)
    public = layout.client_key.with_suffix(".pub").read_text(encoding="ascii")
    write_if_changed(layout.authorized_keys, public, mode=0o600)


def _keygen(key: Path, comment: str) -> None:
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)]
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as error:
        raise SandboxError("ssh-keygen is not installed (apt-get install openssh-client)") \
            from error
    except subprocess.CalledProcessError as error:
        raise SandboxError(f"ssh-keygen failed for {key}: {error.stderr.strip()}") from error


def host_public_key(layout: Layout) -> str:
    """``ssh-ed25519 AAAA...`` of the sandbox's host key (without the comment)."""
    text = layout.host_key.with_suffix(".pub").read_text(encoding="ascii")
    return " ".join(text.split()[:2])


def sshd_spec(layout: Layout, shard: int) -> ProcessSpec:
    return ProcessSpec(role=f"sshd-{shard}", pid_file=layout.sshd_pid(shard), program=SSHD,
                       marker=str(layout.sshd_config(shard)))


def render_sshd_config(layout: Layout, shard: int, addresses: Sequence[str], *, port: int,
                      user: str) -> str:
    """Render shard ``shard``'s sshd config (the caller writes it)."""
    return render_template(
        "sshd_config", shard=shard, state_dir=layout.root, port=port, addresses=addresses,
        host_key=layout.host_key, pid_file=layout.sshd_pid(shard),
        authorized_keys=layout.authorized_keys, user=user, as_root=os.geteuid() == 0)


def start_sshd(layout: Layout, shard: int, addresses: Sequence[str], *, port: int, user: str,
               timeout_s: float, key: Path | None = None) -> int:
    """Start shard ``shard``'s sshd (config already written); return its pid once a key
    login with host-key checking works on its first address.

    Raises:
        SandboxError: a port is taken, sshd refused its config, or no login in time.
    """
    ensure_free(((address, port) for address in addresses), what="SSH, --ssh-port")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
    log = layout.sshd_log(shard)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("", encoding="utf-8")
    argv = [str(SSHD), "-f", str(layout.sshd_config(shard)), "-E", str(log)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError as error:
        raise SandboxError(f"cannot run {SSHD}: {error} (apt-get install openssh-server)") \
            from error
    if done.returncode != 0:
        raise SandboxError(f"sshd-{shard} refused to start: "
                           f"{(done.stderr or _tail(log)).strip()}")
    spec = sshd_spec(layout, shard)

    def ready() -> int | None:
        _fail_on_fatal(log, shard)
        pid = probe(spec).pid
        if pid is None or not probe(spec).alive:
            return None
        return pid if check_login(addresses[0], port=port, user=user, layout=layout,
                                  key=key) else None

    pid = wait_until(ready, timeout_s=timeout_s, failure=lambda: (
        f"sshd-{shard} did not accept a key login on {addresses[0]}:{port} within "
        f"{timeout_s:g} s; its log {log} ends with:\n{_tail(log)}"))
    _fail_on_fatal(log, shard, also="Bind to port")
    return pid


def _fail_on_fatal(log: Path, shard: int, also: str = "fatal:") -> None:
    text = _tail(log, lines=200)
    if "fatal:" in text or also in text:
        raise SandboxError(f"sshd-{shard} failed; its log {log} ends with:\n{_tail(log)}")


def _tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace")
                         .splitlines()[-lines:])
    except OSError:
        return "(no log)"


def check_login(address: str, *, port: int, user: str, layout: Layout,
                key: Path | None = None) -> bool:
    """True once ``user`` logs in with the sandbox key, the host key checked against the
    sandbox known_hosts, and ``true`` runs; False while sshd is not answering yet.

    Raises:
        SandboxError: sshd answers but the host key or the login is refused.
    """
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(str(layout.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(address, port=port, username=user,
                       key_filename=str(key or layout.client_key),
                       look_for_keys=False, allow_agent=False, timeout=2, banner_timeout=2,
                       auth_timeout=2)
        _, stdout, _ = client.exec_command("true", timeout=5)
        return bool(stdout.channel.recv_exit_status() == 0)
    except (paramiko.BadHostKeyException, paramiko.AuthenticationException) as error:
        raise SandboxError(
            f"sshd on {address}:{port} refused the sandbox login for {user}: {error}; "
            f"see {layout.log_dir}/sshd-*.log (a locked account cannot log in with "
            "UsePAM no)") from error
    except paramiko.SSHException as error:
        if "known_hosts" in str(error):
            raise SandboxError(f"{address}:{port} is missing from {layout.known_hosts}: "
                               f"{error}") from error
        return False
    except OSError:
        return False
    finally:
        client.close()
