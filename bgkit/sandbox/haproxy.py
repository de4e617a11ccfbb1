"""The sandbox's HAProxy: its generated config, start, hitless reload, readiness.

HAProxy runs as the current user (no ``user``/``group``/``chroot``), daemonised with a
pid file in the state directory. Its runtime API is a unix socket in the state
directory when the path is short enough (HAProxy binds ``<path>.<pid>.tmp`` first, and
``sun_path`` holds 108 bytes), else TCP on a free loopback port.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from bgkit.commands import haproxy as cmd
from bgkit.errors import LoadBalancerError, SandboxError
from bgkit.lb.haproxy import RuntimeApi, runtime_endpoint
from bgkit.sandbox.processes import ProcessSpec, ensure_free, free_port, probe, wait_until
from bgkit.sandbox.render import render_template
from bgkit.sandbox.state import Layout, SandboxHost

__all__ = [
    "choose_runtime_api",
    "haproxy_program",
    "haproxy_spec",
    "reload_haproxy",
    "render_haproxy_cfg",
    "start_haproxy",
]

UNIX_SOCKET_MAX_BYTES = 90
TCP_PREFIX = "ipv4@127.0.0.1:"
BACKENDS: Mapping[str, str] = {"blue": "blue", "green": "green"}


def haproxy_program() -> Path:
    """The installed haproxy binary, resolved; SandboxError if there is none."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise SandboxError("haproxy is not installed (apt-get install haproxy)")
    return Path(found).resolve()


def haproxy_spec(layout: Layout) -> ProcessSpec:
    return ProcessSpec(role="haproxy", pid_file=layout.haproxy_pid, program=haproxy_program(),
                       marker=str(layout.haproxy_cfg))


def choose_runtime_api(layout: Layout, *, previous: str | None, keep: bool) -> str:
    """The runtime API address: the unix socket if its path is short, else TCP.

    ``keep`` (HAProxy is running) reuses ``previous`` so the config does not change.
    """
    if len(str(layout.haproxy_socket).encode()) <= UNIX_SOCKET_MAX_BYTES:
        return str(layout.haproxy_socket)
    if keep and previous and previous.startswith(TCP_PREFIX):
        return previous
    return f"{TCP_PREFIX}{free_port()}"


def render_haproxy_cfg(layout: Layout, *, runtime_api: str, public_port: int, app_port: int,
                       hosts: Sequence[SandboxHost], health_path: str) -> str:
    """haproxy.cfg for the fleet, following bgkit's map routing contract."""
    servers = {pool: [host for host in hosts if host.pool == pool] for pool in BACKENDS}
    return render_template(
        "haproxy.cfg", state_dir=layout.root, stats_socket=runtime_api,
        expose_fd=runtime_api.startswith("/"), frontend="app", public_port=public_port,
        map_file=layout.map_file, backends=BACKENDS, servers=servers, app_port=app_port,
        health_path=health_path)


def _run(argv: Sequence[str], what: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SandboxError(f"{what}: {error}") from error
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise SandboxError(f"{what} (exit {done.returncode}):\n{output}")
    return output


def _check_config(layout: Layout) -> None:
    _run([str(haproxy_program()), "-c", "-q", "-f", str(layout.haproxy_cfg)],
         f"haproxy rejected its generated config {layout.haproxy_cfg}")


def _answers(runtime_api: str) -> bool:
    api = RuntimeApi(runtime_endpoint(runtime_api), timeout_s=2.0)
    try:
        cmd.parse_backend_list(api.run(cmd.show_backend()))
    except (LoadBalancerError, ValueError):
        return False
    return True


def start_haproxy(layout: Layout, *, runtime_api: str, public_port: int,
                  timeout_s: float) -> int:
    """Check the written config, start HAProxy, return its pid once the API answers.

    Raises:
        SandboxError: a port is taken, the config is rejected, or no answer in time.
    """
    ensure_free([("127.0.0.1", public_port)], what="public, --public-port")
    if runtime_api.startswith(TCP_PREFIX):
        ensure_free([("127.0.0.1", int(runtime_api.rpartition(":")[2]))],
                    what="HAProxy runtime API")
    _check_config(layout)
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    output = _run([str(haproxy_program()), "-f", str(layout.haproxy_cfg), "-D",
                   "-p", str(layout.haproxy_pid)], "haproxy did not start")
    _log(layout, output)
    return _wait_ready(layout, runtime_api, timeout_s, previous=None)


def reload_haproxy(layout: Layout, *, runtime_api: str, timeout_s: float) -> int:
    """Start a new HAProxy that takes over from the running one (``-sf``, and ``-x`` to
    inherit the listening sockets); return the new pid once its API answers.

    Raises:
        SandboxError: HAProxy is not running, the config is rejected, or no answer in time.
    """
    state = probe(haproxy_spec(layout))
    if not state.alive or state.pid is None:
        raise SandboxError(f"HAProxy of the sandbox in {layout.root} is not running; "
                           "run `bgkit sandbox up` first")
    _check_config(layout)
    argv = [str(haproxy_program()), "-f", str(layout.haproxy_cfg), "-D",
            "-p", str(layout.haproxy_pid)]
    if runtime_api.startswith("/"):
        argv += ["-x", runtime_api]
    output = _run([*argv, "-sf", str(state.pid)], "haproxy did not reload")
    _log(layout, output)
    return _wait_ready(layout, runtime_api, timeout_s, previous=state.pid)


def _wait_ready(layout: Layout, runtime_api: str, timeout_s: float,
                previous: int | None) -> int:
    spec = haproxy_spec(layout)

    def ready() -> int | None:
        state = probe(spec)
        if not state.alive or state.pid is None or state.pid == previous:
            return None
        return state.pid if _answers(runtime_api) else None

    return wait_until(ready, timeout_s=timeout_s, failure=lambda: (
        f"HAProxy did not answer on its runtime API {runtime_api} within {timeout_s:g} s "
        f"(pid file {layout.haproxy_pid}, log {layout.haproxy_log})"))


def _log(layout: Layout, output: str) -> None:
    if output:
        layout.log_dir.mkdir(parents=True, exist_ok=True)
        with layout.haproxy_log.open("a", encoding="utf-8") as log:
            log.write(output + "\n")
