"""What the CLI prints when it stops on an error: a line on stderr, the family's exit
code, and under --json one object on stdout, so that a machine always reads one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bgkit.cli import main


@pytest.mark.parametrize("command", [["status"], ["verify"], ["switch"], ["rollback"],
                                     ["deploy"]])
def test_an_error_under_json_prints_one_error_object_on_stdout(
        command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.toml"
    assert main([*command, "--json", "--config", str(missing)]) == 2
    said = capsys.readouterr()
    (line,) = said.out.splitlines()
    assert json.loads(line) == {"error": f"{missing}: no such file (pass --config PATH or "
                                         "set BGKIT_CONFIG)", "exit_code": 2,
                                "kind": "ConfigError"}
    assert "no such file" in said.err


def test_without_json_an_error_prints_nothing_on_stdout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--config", str(tmp_path / "absent.toml")]) == 2
    said = capsys.readouterr()
    assert said.out == "" and "no such file" in said.err


def test_python_dash_m_bgkit_is_the_same_cli(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bgkit", "status", "--json", "--config",
                           str(tmp_path / "absent.toml")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert json.loads(done.stdout)["kind"] == "ConfigError"


@pytest.mark.parametrize("version", ["", "1.0; ls", "1 0"])
def test_build_refuses_a_version_that_is_not_one_before_building(
        version: str, write_config: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config()
    assert main(["build", "--config", str(config), "--version", version]) == 2
    said = capsys.readouterr().err
    assert "--version: expected a version" in said
    assert not list(config.parent.rglob("*.tar.gz"))


WEDGED_STOP = """
import importlib, os, signal, sys, time
app = importlib.import_module("bgkit.cli.app")  # the module (bgkit.cli.app is the group)
importlib.import_module("bgkit.cli.render")  # main()'s error path, loaded ahead of the clock
app.STOP_STACKS_AFTER_S = 1.0

def wedged(**_):  # a command that SIGTERM reaches mid-way
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)

app.app.main = wedged
code = app.main(None if sys.argv[1] == "cli" else ["switch"])
print(code)
time.sleep(3.0)  # the process ends slowly (a cli) / the caller lives on (in-process)
"""


@pytest.mark.parametrize(("how", "dumped"), [("cli", True), ("in-process", False)])
def test_a_stop_by_sigterm_still_running_later_prints_where_each_thread_is(
        how: str, dumped: bool) -> None:
    """A cleanup wedged after SIGTERM (a lock never released, a thread never joined) shows
    every thread's stack on stderr once :data:`STOP_STACKS_AFTER_S` has passed; a caller
    of ``main(argv)`` that lives on is not left with the watch armed."""
    done = subprocess.run([sys.executable, "-c", WEDGED_STOP, how], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout == "143\n", done.stderr
    assert "terminated (SIGTERM)" in done.stderr
    assert ("most recent call first" in done.stderr) is dumped, done.stderr
    if dumped:  # the stack shows where the main thread was: the slow sleep at the end
        line = 1 + WEDGED_STOP.splitlines().index(
            "time.sleep(3.0)  # the process ends slowly (a cli) / the caller lives on "
            "(in-process)")
        assert f'File "<string>", line {line} in <module>' in done.stderr, done.stderr


SECOND_SIGTERM = """
import importlib, os, signal, sys, threading, time
app = importlib.import_module("bgkit.cli.app")
app.JSON_STATE.update(terminated=False)
signal.signal(signal.SIGTERM, app._on_sigterm)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
except app.Terminated:
    # The cleanup blocks in a write to stderr (the reader is slow) as the second SIGTERM
    # lands: the handler runs inside that write, holding the stream's buffer.
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    sys.stderr.write("cleaning up " * 100_000 + "\\n")
    sys.stderr.flush()
    print("cleanup finished")
"""


def test_a_second_sigterm_says_so_and_never_interrupts_the_cleanup() -> None:
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    running = subprocess.Popen([sys.executable, "-c", SECOND_SIGTERM], env=buffered,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # stderr's pipe stays full while the second SIGTERM arrives
    out, err = running.communicate(timeout=60)
    assert running.returncode == 0, err[-2000:]
    assert "cleanup finished" in out
    assert err.count("already stopping") == 1
    assert "reentrant call" not in err
    # and it did land inside the cleanup's write, which the pipe held up
    assert err.index("already stopping") < err.rindex("cleaning up"), err[-300:]
