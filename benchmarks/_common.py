"""Helpers the benchmark scripts share: free loopback ports, sandbox fault knobs."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def set_faults(config: Any, pool: str, **faults: object) -> None:
    """Set hello-c's [faults] on every sandbox host of ``pool``, then SIGHUP it."""
    for host in config.pools.get(pool).hosts:
        root = Path(host.deploy_root)
        ini = root / "shared" / "config.ini"
        head = ini.read_text().split("[faults]")[0]
        lines = [f"{key} = {value}" for key, value in faults.items()]
        ini.write_text(head + "[faults]\n" + "\n".join(lines) + "\n")
        os.kill(int((root / "shared/run/service.pid").read_text()), signal.SIGHUP)
