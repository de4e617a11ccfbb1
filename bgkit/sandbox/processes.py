"""The sandbox's processes: found by pid file, recognised before signalling, stopped.

A pid file alone is not trusted: a pid can be reused by an unrelated program after a
crash or a reboot. A process counts as the sandbox's only while ``/proc/<pid>/exe`` is
the expected program (or lies under the expected folder) and its command line holds
the expected marker (a path inside the state directory).
"""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bgkit.errors import SandboxError

__all__ = [
    "ProcessSpec",
    "ProcessState",
    "StoppedProcess",
    "ensure_free",
    "free_port",
    "probe",
    "read_pid",
    "stop",
    "wait_until",
]

POLL_S = 0.02
KILL_GRACE_S = 3.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """A process the sandbox may have started, and how to recognise it."""

    role: str  # "sshd-1", "haproxy", "service blue-1"
    pid_file: Path
    program: Path | None = None  # /proc/<pid>/exe must be this file...
    program_under: Path | None = None  # ...or lie under this folder
    marker: str = ""  # text its command line must hold ("" = no check)


@dataclass(frozen=True, slots=True)
class ProcessState:
    """What a pid file says now; ``alive`` only if the pid is that very process."""

    role: str
    pid_file: Path
    pid: int | None
    alive: bool


@dataclass(frozen=True, slots=True)
class StoppedProcess:
    """A process ``stop`` ended; ``forced`` if it needed SIGKILL."""

    role: str
    pid: int
    forced: bool


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file``, or None if it is missing or holds no positive number."""
    try:
        text = pid_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _running(pid: int) -> bool:
    """The pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _exe(pid: int) -> Path | None:
    try:
        target = str(Path(f"/proc/{pid}/exe").readlink())
    except OSError:
        return None
    return Path(target.removesuffix(" (deleted)"))


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _is_expected(spec: ProcessSpec, pid: int) -> bool:
    exe = _exe(pid)
    if exe is None:
        return False
    if spec.program is not None and exe != spec.program.resolve():
        return False
    under = spec.program_under
    if under is not None and not exe.is_relative_to(under.resolve()):
        return False
    return spec.marker in _cmdline(pid)


def probe(spec: ProcessSpec) -> ProcessState:
    """Read ``spec``'s pid file and check the pid is alive and is the expected program."""
    pid = read_pid(spec.pid_file)
    alive = pid is not None and _running(pid) and _is_expected(spec, pid)
    return ProcessState(role=spec.role, pid_file=spec.pid_file, pid=pid, alive=alive)


def stop(specs: Sequence[ProcessSpec], *, timeout_s: float) -> list[StoppedProcess]:
    """SIGTERM every live expected process, SIGKILL those left after ``timeout_s``.

    Pid files are removed, whether their process was running or stale. Processes that
    are not the expected program are never signalled.

    Raises:
        SandboxError: a process could not be signalled (another user's), after the
            others were stopped.
    """
    signalled: dict[int, ProcessSpec] = {}
    refused: list[str] = []
    for spec in specs:
        state = probe(spec)
        if state.pid is not None and state.alive and _signal(state.pid, signal.SIGTERM,
                                                              spec, refused):
            signalled[state.pid] = spec
    left = _wait_gone(signalled, timeout_s)
    forced = {pid for pid in left if _signal(pid, signal.SIGKILL, signalled[pid], refused)}
    _wait_gone(forced, KILL_GRACE_S)
    for spec in specs:
        spec.pid_file.unlink(missing_ok=True)
    if refused:
        raise SandboxError("could not stop " + "; ".join(refused))
    return [StoppedProcess(role=spec.role, pid=pid, forced=pid in forced)
            for pid, spec in signalled.items()]


def _signal(pid: int, signum: signal.Signals, spec: ProcessSpec, refused: list[str]) -> bool:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        refused.append(f"{spec.role} (pid {pid}): permission denied; stop it as its owner")
        return False
    return True


def _wait_gone(pids: Iterable[int], timeout_s: float) -> set[int]:
    """Wait until none of ``pids`` runs; return those still running at the deadline."""
    deadline = time.monotonic() + timeout_s
    left = set(pids)
    while True:
        left = {pid for pid in left if _running(pid)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL_S)


def ensure_free(endpoints: Iterable[tuple[str, int]], *, what: str) -> None:
    """Raise SandboxError naming the first ``(address, port)`` that cannot be bound."""
    for address, port in endpoints:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as error:
                reason = ("in use by another program" if error.errno == errno.EADDRINUSE
                          else error.strerror or str(error))
                raise SandboxError(
                    f"port {port} on {address} ({what}) is not free: {reason}; stop what "
                    f"holds it (`ss -ltnp 'sport = :{port}'`) or choose another port") \
                    from error


PORT_RANGE_ENV = "BGKIT_PORT_RANGE"
# Ports this process picked from the range: never handed out twice, since a port picked for
# one service may not be bound yet when the next is picked (the kernel's own picks avoid
# that by spreading; a random pick from a small range does not)
_HANDED_OUT: set[int] = set()


def port_range() -> tuple[int, int] | None:
    """``$BGKIT_PORT_RANGE`` (``"LOW-HIGH"``, inclusive) as a pair; None when unset.

    Raises:
        SandboxError: set, but not two ports 1024 <= LOW < HIGH <= 65535.
    """
    text = os.environ.get(PORT_RANGE_ENV, "").strip()
    if not text:
        return None
    low, _, high = text.partition("-")
    if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
        raise SandboxError(f"{PORT_RANGE_ENV}={text!r}: expected LOW-HIGH, two ports "
                           "1024 <= LOW < HIGH <= 65535 (e.g. 20000-24999)")
    return int(low), int(high)


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port free on ``address`` right now: one the kernel picks, or, with
    ``$BGKIT_PORT_RANGE`` set, one from that range. A range below the kernel's ephemeral
    ports (``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 by default) is never
    taken by an outgoing connection between the pick and the bind, and disjoint ranges let
    sandboxes start side by side (the test workers each get one). A port picked from the
    range is never picked again by this process.

    Raises:
        SandboxError: a bad range, or no free port in it after 500 tries.
    """
    span = port_range()
    if span is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
            port: int = sock.getsockname()[1]
            return port
    for _ in range(500):
        candidate = random.randint(*span)  # noqa: S311 (a port, not a secret)
        if candidate in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, candidate))
            except OSError:
                continue
        _HANDED_OUT.add(candidate)
        return candidate
    raise SandboxError(f"no free port on {address} in {PORT_RANGE_ENV}="
                       f"{span[0]}-{span[1]} after 500 tries")


def wait_until(check: Callable[[], T | None], *, timeout_s: float,
               failure: Callable[[], str]) -> T:
    """Poll ``check`` until it returns a value; SandboxError(``failure()``) on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise SandboxError(failure())
        time.sleep(POLL_S)
