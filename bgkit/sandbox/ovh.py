"""The sandbox's OVH API emulator: its config, ovh.conf, start and readiness.

With ``--lb ovh-iplb`` or ``--lb ovh-cloud-lb``, ``up`` writes two files, both mode 0600:

- ``ovh/emulator.json``, OVHcloud's side (``bgkit.sandbox.ovh_api.seed``): one
  application key and secret, one consumer key restricted to exactly the rules
  ``bgkit ovh consumer-key`` asks for that provider, and the load balancer:

  - ``ovh-iplb``: one IPLB service ``loadbalancer-sandbox`` laid out as OVHcloud's
    blue-green guide says: an HTTP frontend on the public port whose ``defaultFarmId``
    is the farm of the pool HAProxy's map says is live, and farms blue and green
    holding the sandbox hosts;
  - ``ovh-cloud-lb``: one Public Cloud project (``PROJECT``) with, in region ``GRA11``,
    one load balancer, one HTTP listener on the public port whose ``defaultPoolId`` is
    the pool of the colour HAProxy's map says is live, and pools blue and green holding
    the sandbox hosts (fixed uuids, so a restarted emulator keeps them).

  HAProxy stays the data plane.
- ``ovh.conf``, bgkit's side, in python-ovh's format: one section named by the
  emulator's URL (see ``bgkit.lb.ovh_api``) with the three keys.

The keys are generated once and kept. Then ``python -m bgkit.sandbox.ovh_api --daemon``
runs as a sandbox process (pid file ``run/ovh-emulator.pid``, log
``log/ovh-emulator.log``) on a free loopback port, kept while it runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bgkit.commands import ovh_cloud_lb
from bgkit.commands.ovh_iplb import access_rules
from bgkit.errors import SandboxError
from bgkit.lb.base import PoolName
from bgkit.sandbox.ovh_api.auth import new_key
from bgkit.sandbox.ovh_api.cloud_seed import blue_green_cloud, stable_id
from bgkit.sandbox.ovh_api.seed import blue_green_service
from bgkit.sandbox.processes import ProcessSpec, ensure_free, probe, wait_until
from bgkit.sandbox.render import CloudFacts, OvhFacts
from bgkit.sandbox.state import Layout, SandboxHost, SandboxOptions, write_if_changed

__all__ = ["FARM_IDS", "FRONTEND_ID", "LISTENER_ID", "LOADBALANCER_ID", "POOL_IDS",
           "PROJECT", "REGION", "SERVICE_NAME", "ZONE", "emulator_spec", "endpoint_url",
           "render_ovh_conf", "start_emulator", "write_ovh_files"]

SERVICE_NAME = "loadbalancer-sandbox"
ZONE = "gra"
FRONTEND_ID = 70089
FARM_IDS: dict[PoolName, int] = {"blue": 77212, "green": 77213}
PROJECT = "5a4db0c1e2f3a4b5c6d7e8f9a0b1c2d3"  # a Public Cloud project id's shape
REGION = "GRA11"
LOADBALANCER_ID = stable_id("sandbox/loadbalancer")
LISTENER_ID = stable_id("sandbox/listener")
POOL_IDS: dict[PoolName, str] = {"blue": stable_id("sandbox/pool/blue"),
                                 "green": stable_id("sandbox/pool/green")}
CREATED_AT = "2025-01-01T00:00:00Z"  # fixed, so that an unchanged fleet rewrites nothing
LOG_TAIL = 15


def emulator_spec(layout: Layout) -> ProcessSpec:
    return ProcessSpec(role="ovh-emulator", pid_file=layout.ovh_emulator_pid,
                       program=Path(sys.executable).resolve(),
                       marker=f"bgkit.sandbox.ovh_api --config {layout.ovh_emulator_config}")


def endpoint_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/1.0"


def render_ovh_conf(endpoint: str, *, application_key: str, application_secret: str,
                    consumer_key: str, lb: str = "ovh-iplb") -> str:
    """python-ovh's ovh.conf with one section, named by the endpoint."""
    return (f"; python-ovh credentials for the bgkit sandbox's OVH API emulator at {endpoint}.\n"
            f"; Written by `bgkit sandbox up --lb {lb}`; the section is named by the\n"
            "; endpoint URL, as bgkit registers it with python-ovh. Keep it private.\n"
            f"[{endpoint}]\n"
            f"application_key={application_key}\n"
            f"application_secret={application_secret}\n"
            f"consumer_key={consumer_key}\n")


def write_ovh_files(layout: Layout, *, options: SandboxOptions, hosts: Sequence[SandboxHost],
                    port: int, runtime_api: str,
                    health_path: str) -> OvhFacts | CloudFacts:
    """Write ovh/emulator.json and ovh.conf for ``options.lb``; return what bgkit.toml
    names."""
    application_key, application_secret, consumer_key = _keys(layout)
    endpoint = endpoint_url(port)
    live = _live_pool(layout)
    located = [(host.pool, host.name, host.address) for host in hosts]
    facts: OvhFacts | CloudFacts
    if options.lb == "ovh-cloud-lb":
        region = blue_green_cloud(
            service_name=PROJECT, region=REGION, loadbalancer_id=LOADBALANCER_ID,
            listener_id=LISTENER_ID, pool_ids=POOL_IDS, live=live,
            public_port=options.public_port, app_port=options.app_port, hosts=located,
            created_at=CREATED_AT)
        region["data_plane"] = {
            "listener_id": LISTENER_ID, "runtime_api": runtime_api,
            "map_file": str(layout.map_file),
            "pool_colours": {pool_id: pool for pool, pool_id in POOL_IDS.items()}}
        rules = ovh_cloud_lb.access_rules(PROJECT, region=REGION,
                                          loadbalancer_id=LOADBALANCER_ID,
                                          listener_id=LISTENER_ID,
                                          pool_ids=list(POOL_IDS.values()))
        lb: dict[str, Any] = {"services": [], "clouds": [region],
                              "faults": {"provisioning_delay_s": 0.5}}
        facts = CloudFacts(endpoint=endpoint, service_name=PROJECT, region=REGION,
                           loadbalancer_id=LOADBALANCER_ID, listener_id=LISTENER_ID,
                           pool_ids={pool: pool_id for pool, pool_id in POOL_IDS.items()},
                           config_file=str(layout.ovh_conf))
    else:
        service = blue_green_service(
            service_name=SERVICE_NAME, zone=ZONE, frontend_id=FRONTEND_ID,
            public_port=options.public_port, farm_ids=FARM_IDS, live=live,
            app_port=options.app_port, health_path=health_path, hosts=located)
        service["data_plane"] = {
            "zone": ZONE, "frontend_id": FRONTEND_ID, "runtime_api": runtime_api,
            "map_file": str(layout.map_file),
            "farm_pools": {str(farm): pool for pool, farm in FARM_IDS.items()}}
        rules = access_rules(SERVICE_NAME, frontend_id=FRONTEND_ID,
                             farm_ids=list(FARM_IDS.values()))
        lb = {"services": [service], "faults": {"refresh_delay_s": 0.5}}
        facts = OvhFacts(endpoint=endpoint, service_name=SERVICE_NAME,
                         frontend_id=FRONTEND_ID,
                         farm_ids={pool: farm for pool, farm in FARM_IDS.items()},
                         config_file=str(layout.ovh_conf))
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "applications": {application_key: application_secret},
        "consumer_keys": [{"key": consumer_key, "application_key": application_key,
                           "rules": rules}],
        "time_window_s": 180, **lb}
    write_if_changed(layout.ovh_emulator_config, json.dumps(config, indent=2) + "\n",
                     mode=0o600)
    write_if_changed(layout.ovh_conf, render_ovh_conf(
        endpoint, application_key=application_key, application_secret=application_secret,
        consumer_key=consumer_key, lb=options.lb), mode=0o600)
    return facts


def _keys(layout: Layout) -> tuple[str, str, str]:
    """The keys of the existing emulator config, else new ones."""
    try:
        config = json.loads(layout.ovh_emulator_config.read_text(encoding="utf-8"))
        (application_key, application_secret), = config["applications"].items()
        consumer_key = str(config["consumer_keys"][0]["key"])
        return str(application_key), str(application_secret), consumer_key
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return new_key(16), new_key(32), new_key(32)


def _live_pool(layout: Layout) -> PoolName:
    """The pool HAProxy's map names live, so a restarted emulator agrees with HAProxy."""
    try:
        lines = layout.map_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return "blue"
    live = next((line.split()[1] for line in lines
                 if len(line.split()) == 2 and line.split()[0] == "live"), "blue")
    return "green" if live == "green" else "blue"


def start_emulator(layout: Layout, *, port: int, timeout_s: float) -> int:
    """Start the emulator (it daemonises); return its pid once ``/1.0/auth/time`` answers.

    Raises:
        SandboxError: the port is taken, or it fails to start or to answer in time.
    """
    ensure_free([("127.0.0.1", port)], what="OVH API emulator")
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bgkit.sandbox.ovh_api",
            "--config", str(layout.ovh_emulator_config), "--daemon",
            "--pid-file", str(layout.ovh_emulator_pid), "--log", str(layout.ovh_emulator_log)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s,
                              cwd=layout.root, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SandboxError(f"the OVH API emulator did not start: {error}") from error
    if done.returncode != 0:
        raise SandboxError(f"the OVH API emulator did not start (exit {done.returncode}):\n"
                           f"{(done.stdout + done.stderr).strip()}")
    spec = emulator_spec(layout)

    def ready() -> int | None:
        state = probe(spec)
        return state.pid if state.alive and _answers(port) else None

    return wait_until(ready, timeout_s=timeout_s, failure=lambda: (
        f"the OVH API emulator did not answer on 127.0.0.1:{port} within {timeout_s:g} s "
        f"(pid file {layout.ovh_emulator_pid}, log {layout.ovh_emulator_log}):\n"
        f"{_log_tail(layout)}"))


def _answers(port: int) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    try:
        with opener.open(f"{endpoint_url(port)}/auth/time", timeout=1.0) as answer:
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _log_tail(layout: Layout) -> str:
    try:
        lines = layout.ovh_emulator_log.read_text(encoding="utf-8").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL:])
