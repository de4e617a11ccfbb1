"""The shipped step notebooks under ``bgkit run`` against a real sandbox fleet: the operator's
word is taken as typed, a stop never strands traffic, and text from hosts stays text."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest

from bgkit.artifact import BuildResult
from bgkit.config import Config
from bgkit.errors import StepFailed
from bgkit.lb import get_provider
from bgkit.runbook import archive
from bgkit.runbook.runner import run_step
from tests.conftest import REPO
from tests.integration.conftest import releases, sandbox  # noqa: F401 (fixtures)
from tests.integration.sandbox_support import make_ready, running, wait_for
from tests.unit.test_html import live_markup

pytestmark = pytest.mark.slow
BGKIT = [sys.executable, "-m", "bgkit.cli"]
HOSTILE = "<img src=x onerror=alert(1)><script>alert(2)</script>"


@pytest.fixture
def ready(sandbox: Config, releases: dict[str, BuildResult]) -> Config:  # noqa: F811
    """Blue live on 1.0.0, green idle on 2.0.0, both healthy."""
    return make_ready(sandbox, releases)


def test_approve_false_in_capitals_is_false_and_moves_no_traffic(
        ready: Config, releases: dict[str, BuildResult]) -> None:  # noqa: F811
    done = subprocess.run([*BGKIT, "run", "04_switch", "-p", "approve", "FALSE", "-p",
                           "artifact", str(releases["2.0.0"].artifact), "--config",
                           str(ready.path)], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "not approved" in done.stderr
    assert get_provider(ready).live_pool() == "blue"


def test_sigterm_during_the_post_switch_watch_switches_back_before_the_kernel_stops(
        ready: Config, releases: dict[str, BuildResult], tmp_path: Path) -> None:  # noqa: F811
    from tests.integration.sandbox_support import rewrite_config

    config = rewrite_config(ready.path, {"switch": {"watch_s": 30}}, name="long-watch.toml")
    lb = get_provider(config)
    runner = subprocess.Popen([*BGKIT, "run", "04_switch", "-p", "approve", "true", "-p",
                               "artifact", str(releases["2.0.0"].artifact), "--config",
                               str(config.path)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        wait_for(lambda: lb.live_pool() == "green", timeout_s=120,
                 what="the switch to move traffic to green")
        runner.send_signal(signal.SIGTERM)
        output, _ = runner.communicate(timeout=180)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 1, output
    assert lb.live_pool() == "blue", "the interrupted watch switched back"
    (path,) = config.runs_dir.glob("*/*/*04_switch*.ipynb")
    reason = archive.show_run(path).metadata["reason"]
    assert "received SIGTERM during cell" in reason and "KeyboardInterrupt" in reason


@contextmanager
def hostile_host(address: str, port: int) -> Iterator[None]:
    """A server on ``address:port`` whose every answer carries markup in its headers."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("X-App-Version", HOSTILE)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            return None

    server = ThreadingHTTPServer((address, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def stop_service(root: Path) -> None:
    pid = int((root / "shared" / "run" / "service.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not running(pid), what=f"pid {pid} to stop")


def test_a_version_header_with_markup_is_text_in_the_notebook_and_the_report(
        ready: Config, releases: dict[str, BuildResult], tmp_path: Path) -> None:  # noqa: F811
    green = ready.pools.green.hosts[0]
    stop_service(Path(green.deploy_root))
    with hostile_host(green.address, ready.service.port), pytest.raises(StepFailed):
        run_step("03_verify", config=ready, progress=False,
                 parameters={"artifact": str(releases["2.0.0"].artifact),
                             "samples_per_host": 20})
    (path,) = ready.runs_dir.glob("*/*/*03_verify*.ipynb")
    nb = nbformat.read(path, as_version=4)
    html_outputs = [str(output.get("data", {}).get("text/html", ""))
                    for cell in nb.cells for output in cell.get("outputs", [])]
    assert any("&lt;img src=x onerror=alert(1)&gt;" in html for html in html_outputs), \
        "the header is shown, as text"
    for html in html_outputs:
        assert live_markup(html) == [] and "<img src=x" not in html
    report = tmp_path / "report.html"
    done = subprocess.run([*BGKIT, "runs", "html", path.stem.rsplit("_", 1)[-1], "--config",
                           str(ready.path), "-o", str(report)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert live_markup(report.read_text()) == []


def test_switch_rollback_and_deploy_from_the_command_line_each_leave_an_archived_run(
        ready: Config, releases: dict[str, BuildResult]) -> None:  # noqa: F811
    from bgkit.runbook.index import verify_archive

    def bgkit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*BGKIT, *args, "--config", str(ready.path)],
                              capture_output=True, text=True, cwd=REPO, timeout=300)

    switched = bgkit("switch", "--approve", "--artifact", str(releases["2.0.0"].artifact))
    assert switched.returncode == 0, switched.stdout + switched.stderr
    back = bgkit("rollback", "--approve")
    assert back.returncode == 0, back.stdout + back.stderr
    deployed = bgkit("deploy", "--artifact", str(releases["3.0.0"].artifact))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    runs = {path.stem.split("_", 1)[1].rsplit("_", 1)[0]: archive.show_run(path)
            for path in ready.runs_dir.glob("*/*/*.ipynb")}
    assert set(runs) == {"04_switch", "05_rollback", "02_deploy_green"}
    for details in runs.values():
        assert details.metadata["front_door"] == "cli" and details.outcome == "succeeded"
    assert runs["04_switch"].records["watch"]["value"]["ok"] is True
    assert runs["05_rollback"].records["switch"]["value"]["to_pool"] == "blue"
    assert runs["02_deploy_green"].records["deploy"]["value"]["pool"] == "green"
    assert f"archived as run {runs['04_switch'].metadata['run_id']}" in switched.stdout
    assert verify_archive(ready.runs_dir).ok
