"""The embedded default: a local fleet of sshd hosts on loopback addresses behind HAProxy.

``sandbox_up`` / ``sandbox_down`` / ``sandbox_status`` / ``reload_haproxy`` are the
library API behind ``bgkit sandbox up | down | status``; see ``bgkit.sandbox.fleet``.
"""

from bgkit.sandbox.fleet import reload_haproxy, sandbox_down, sandbox_status, sandbox_up
from bgkit.sandbox.processes import ProcessState, StoppedProcess
from bgkit.sandbox.results import SandboxHostStatus, SandboxInfo, SandboxStatus

__all__ = [
    "ProcessState",
    "SandboxHostStatus",
    "SandboxInfo",
    "SandboxStatus",
    "StoppedProcess",
    "reload_haproxy",
    "sandbox_down",
    "sandbox_status",
    "sandbox_up",
]
