"""Helpers for tests that drive JupyterLab in headless Chromium, everything on loopback.

JupyterLab runs from this virtualenv with its own config, data and runtime folders under
the test's tmp_path: the python3 kernelspec and the ipywidgets extension are found in the
virtualenv's ``share/jupyter`` all the same, and nothing a person set up in ``~/.jupyter``
(a saved workspace, changed shortcuts) can change what the test sees.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx
import nbformat

from tests.integration.sandbox_support import free_ports, running, wait_for

CHROMIUM = Path("/usr/bin/chromium")
# Headless, as root, and silent: nothing but the pages the test opens on 127.0.0.1.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-breakpad",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--no-pings",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
WIDGETS_EXTENSION = "@jupyter-widgets/jupyterlab-manager"
LOOPBACK = "127.0.0.1"


@dataclass
class Lab:
    """A running JupyterLab server: where it listens, its token, its process and log."""

    url: str
    token: str
    process: subprocess.Popen[bytes]
    state_dir: Path
    log: IO[bytes] = field(repr=False)

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}"

    def api(self, method: str, path: str) -> httpx.Response:
        """One request to the server's REST API with the token (no proxy, 5 s)."""
        return httpx.request(method, f"{self.url}{path}", timeout=5, trust_env=False,
                             headers={"Authorization": f"token {self.token}"})

    def log_tail(self, lines: int = 40) -> str:
        text = (self.state_dir / "jupyterlab.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def lab_environment(state_dir: Path) -> dict[str, str]:
    """This process's environment with Jupyter's and IPython's own folders in state_dir."""
    env = dict(os.environ)
    for name, folder in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                         ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")]:
        env[name] = str(state_dir / folder)
        (state_dir / folder).mkdir(parents=True, exist_ok=True)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env


def write_quiet_settings(config_dir: Path) -> None:
    """JupyterLab user settings: never fetch news nor check for updates, and so never ask
    (the question would be a toast over the notebook)."""
    folder = config_dir / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def start_jupyterlab(root_dir: Path, *, state_dir: Path, timeout_s: float = 120.0) -> Lab:
    """Start JupyterLab on 127.0.0.1 and a free port, serving ``root_dir``; wait until its
    API answers and it offers the python3 kernel and the ipywidgets extension.

    Raises AssertionError (with the server's log) if it exits or is not ready in time.
    """
    (port,) = free_ports(1)
    token = secrets.token_hex(24)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        f"--ServerApp.ip={LOOPBACK}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.allow_root=True",  # CI runs as root
        # No announcements, update checks or extension catalogue: they would go online.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    env = lab_environment(state_dir)
    write_quiet_settings(Path(env["JUPYTER_CONFIG_DIR"]))
    log = (state_dir / "jupyterlab.log").open("wb")
    process = subprocess.Popen(command, cwd=root_dir, env=env,
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    lab = Lab(url=f"http://{LOOPBACK}:{port}", token=token, process=process,
              state_dir=state_dir, log=log)
    try:
        wait_for(lambda: _answers(lab), timeout_s=timeout_s, what="JupyterLab's /api/status")
        kernels = lab.api("GET", "/api/kernelspecs").json()["kernelspecs"]
        assert "python3" in kernels, f"JupyterLab offers no python3 kernel: {sorted(kernels)}"
        page = httpx.get(f"{lab.url}/lab?token={token}", timeout=10, trust_env=False).text
        assert WIDGETS_EXTENSION in page, (
            f"JupyterLab has no {WIDGETS_EXTENSION} extension: install jupyterlab_widgets")
    except BaseException:
        stop_jupyterlab(lab)
        raise
    return lab


def _answers(lab: Lab) -> bool:
    if lab.process.poll() is not None:
        raise AssertionError(f"JupyterLab exited with {lab.process.returncode}:\n"
                             f"{lab.log_tail()}")
    try:
        return lab.api("GET", "/api/status").status_code == 200
    except httpx.TransportError:
        return False


def stop_jupyterlab(lab: Lab, *, timeout_s: float = 30.0) -> None:
    """Shut the server and its kernels down (API, then SIGTERM, then SIGKILL); then end
    any kernel of this server still running, found by its connection file's folder."""
    if lab.process.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            lab.api("POST", "/api/shutdown")
        try:
            lab.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            lab.process.terminate()
            try:
                lab.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                lab.process.kill()
                lab.process.wait(timeout=10)
    for pid in _processes_mentioning(lab.state_dir / "runtime"):
        os.kill(pid, signal.SIGKILL)
    lab.log.close()


def _processes_mentioning(folder: Path) -> list[int]:
    """Pids of running processes with ``folder`` in their command line."""
    needle = str(folder).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and running(int(entry.name)):
            found.append(int(entry.name))
    return found


def chromium_missing_outside_ci() -> bool:
    """Skip only on a developer's machine without Chromium; under CI it must be there."""
    return not CHROMIUM.exists() and not os.environ.get("CI")


def is_loopback(url: str) -> bool:
    """Whether a browser request stays on this machine (or needs no network at all)."""
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname == LOOPBACK


def copy_with_parameters(source: Path, target: Path, **values: str) -> None:
    """Copy a notebook, giving lines ``NAME: TYPE = VALUE  # comment`` of its parameters
    cell new values (comments kept). Raises AssertionError if a name is not there once."""
    notebook = nbformat.read(source, as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.splitlines()
    for name, value in values.items():
        pattern = re.compile(rf"^{re.escape(name)}\s*:\s*(?P<type>[\w.]+)\s*=[^#]*(?P<note>#.*)?$")
        hits = [index for index, line in enumerate(lines) if pattern.match(line)]
        assert len(hits) == 1, f"{source.name}: no single '{name}: TYPE = ...' parameter line"
        match = pattern.match(lines[hits[0]])
        assert match is not None
        note = f"  {match['note']}" if match["note"] else ""
        lines[hits[0]] = f"{name}: {match['type']} = {value!r}{note}"
    cell.source = "\n".join(lines)
    nbformat.write(notebook, target)


def run_all_cells(page: Any) -> None:
    """Run → Run All Cells, once the notebook's kernel has started and is idle (before
    that, JupyterLab would ask for a kernel instead of running anything)."""
    from playwright.sync_api import expect

    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=120_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator("#jp-mainmenu-run li[data-command='runmenu:run-all']").click()
