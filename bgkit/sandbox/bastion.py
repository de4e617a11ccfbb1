"""The sandbox's bastion (``bgkit sandbox up --bastion``): hosts reached only through it.

A bastion sshd listens on its own loopback address, :data:`BASTION_ADDRESS`, and
forwards (``direct-tcpip``, as ``ProxyJump`` asks) to the hosts' SSH ports only. Every
host accepts bgkit's deploy key only from that address (``from="..."`` in
authorized_keys), and the written ``ssh/config`` (through an ``Include``) says
``ProxyJump`` for the hosts: so a deploy, status or verify that works went through it.

On loopback every connection's source address is 127.0.0.1 (the kernel's route for
127.0.0.0/8), whoever makes it; a real bastion has an address of its own. So the
bastion sshd runs with a tiny preload library, compiled here, that binds its outgoing
TCP connections to its address before connecting. The sandbox's own readiness checks
log in with a separate admin key that the hosts accept from anywhere.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bgkit.errors import SandboxError
from bgkit.sandbox.processes import ProcessSpec, ensure_free, probe, wait_until
from bgkit.sandbox.sshd import SSHD, check_login
from bgkit.sandbox.state import Layout, write_if_changed

__all__ = ["BASTION_ADDRESS", "bastion_spec", "render_ssh_config", "start_bastion",
           "write_bastion_files"]

BASTION_ADDRESS = "127.0.9.1"
_SHIM = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>

/* Bind outgoing IPv4 TCP connections to $BGKIT_BIND_ADDRESS before connecting. */
int connect(int fd, const struct sockaddr *address, socklen_t size) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    const char *bind_to = getenv("BGKIT_BIND_ADDRESS");
    int type = 0;
    socklen_t type_size = sizeof type;
    if (!real) real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
    if (bind_to && address && address->sa_family == AF_INET &&
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_size) == 0 && type == SOCK_STREAM) {
        struct sockaddr_in local = {0};
        local.sin_family = AF_INET;
        if (inet_pton(AF_INET, bind_to, &local.sin_addr) == 1)
            bind(fd, (struct sockaddr *)&local, sizeof local);
    }
    return real(fd, address, size);
}
"""


def _dir(layout: Layout) -> Path:
    return layout.root / "bastion"


def admin_key(layout: Layout) -> Path:
    return layout.root / "ssh" / "admin_ed25519"


def bastion_spec(layout: Layout) -> ProcessSpec:
    return ProcessSpec(role="bastion sshd", pid_file=layout.run_dir / "sshd-bastion.pid",
                       program=SSHD, marker=str(_dir(layout) / "sshd.conf"))


def render_ssh_config(layout: Layout, *, port: int, user: str) -> dict[Path, str]:
    """The OpenSSH client config bgkit.toml points at, split by an ``Include``."""
    main = layout.root / "ssh" / "config"
    part = layout.root / "ssh" / "config.d" / "bastion.conf"
    return {
        main: f"# OpenSSH config of the sandbox in {layout.root} (bgkit reads it as ssh -G).\n"
              f"Include {part.parent}/*.conf\n",
        part: f"Host 127.0.1.* 127.0.2.*\n    ProxyJump {user}@{BASTION_ADDRESS}:{port}\n\n"
              f"Host {BASTION_ADDRESS}\n    IdentityFile {layout.client_key}\n",
    }


def write_bastion_files(layout: Layout, *, port: int, user: str, host_addresses: list[str],
                        client_public: str) -> None:
    """The bastion's sshd config and keys, the hosts' ``from=`` authorized_keys, the
    client config, and the preload library (compiled once)."""
    folder = _dir(layout)
    folder.mkdir(parents=True, exist_ok=True)
    if not admin_key(layout).exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        "bgkit-sandbox-admin", "-f", str(admin_key(layout))],
                       check=True, capture_output=True, timeout=30)
    admin_public = admin_key(layout).with_suffix(".pub").read_text(encoding="ascii").strip()
    write_if_changed(layout.authorized_keys,
                     f'from="{BASTION_ADDRESS}" {client_public.strip()}\n{admin_public}\n',
                     mode=0o600)
    write_if_changed(folder / "authorized_keys", client_public.strip() + "\n", mode=0o600)
    permit = " ".join(f"{address}:{port}" for address in host_addresses)
    write_if_changed(folder / "sshd.conf", "\n".join([
        f"# the bastion of the bgkit sandbox in {layout.root}; written by `bgkit sandbox up`.",
        f"Port {port}", "AddressFamily inet", f"ListenAddress {BASTION_ADDRESS}",
        f"HostKey {layout.host_key}", f"PidFile {bastion_spec(layout).pid_file}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", f"AllowUsers {user}",
        "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "StrictModes no", "UsePAM no",
        "PermitRootLogin prohibit-password" if os.geteuid() == 0 else "PermitRootLogin no",
        "AllowTcpForwarding yes", f"PermitOpen {permit}", "PermitTTY no",
        "MaxStartups 200:30:300", "MaxSessions 100", "UseDNS no", ""]))
    for path, text in render_ssh_config(layout, port=port, user=user).items():
        write_if_changed(path, text)
    shim = folder / "bindshim.so"
    if not shim.exists():
        source = folder / "bindshim.c"
        source.write_text(_SHIM, encoding="utf-8")
        done = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(source),
                               "-ldl"], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise SandboxError(f"could not compile the bastion's preload: {done.stderr[-500:]}")


def start_bastion(layout: Layout, *, port: int, user: str, timeout_s: float) -> int:
    """Start the bastion sshd; return its pid once a key login works on it.

    Raises:
        SandboxError: its port is taken, sshd refused the config, or no login in time.
    """
    ensure_free([(BASTION_ADDRESS, port)], what="the bastion's SSH port")
    folder = _dir(layout)
    env = {**os.environ, "LD_PRELOAD": str(folder / "bindshim.so"),
           "BGKIT_BIND_ADDRESS": BASTION_ADDRESS}
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    done = subprocess.run([str(SSHD), "-f", str(folder / "sshd.conf"), "-E",
                           str(layout.log_dir / "sshd-bastion.log")], env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise SandboxError(f"the bastion sshd refused to start: {done.stderr.strip()}")
    spec = bastion_spec(layout)

    def ready() -> int | None:
        state = probe(spec)
        if not state.alive or state.pid is None:
            return None
        return state.pid if check_login(BASTION_ADDRESS, port=port, user=user,
                                        layout=layout) else None

    return wait_until(ready, timeout_s=timeout_s, failure=lambda: (
        f"the bastion sshd did not accept a key login on {BASTION_ADDRESS}:{port}"))
