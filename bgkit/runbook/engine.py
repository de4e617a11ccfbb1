"""A papermill engine whose record never claims success it did not have.

papermill marks the running cell "completed" when the kernel dies or a cell times out,
treats ``sys.exit(0)`` as success, and a runner stopped by a signal leaves the notebook
half-written. This engine:

- runs every notebook on a kernel of the runner's **own interpreter** (a kernelspec made
  for the run, never one found by name on the machine), over **IPC** sockets in a private
  folder (no TCP port, so no unencrypted traffic and no warning about it), and reads the
  kernel's bgkit version and path before any cell runs: a mismatch stops the run;
- on SIGTERM or SIGINT, **interrupts the kernel** instead of abandoning it, so the running
  cell ends through its own safety path (a switch switches back) while its output is still
  captured; if the cell has not ended after the grace period the kernel is killed; no
  further cell starts;
- tells apart a cell timeout, an IOPub timeout (output that did not arrive in time), a
  dead kernel and a stop by signal, marks the cell that was running as failed with an
  error output saying why, saves the notebook, and raises :class:`StepAborted`.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines

from bgkit.signals import say

__all__ = ["ENGINE_NAME", "KERNEL_NAME", "RunControl", "StepAborted", "register"]

ENGINE_NAME = "bgkit"
KERNEL_NAME = "bgkit-runner"
IOPUB_TIMEOUT_TEXT = "Timeout waiting for IOPub output"


class StepAborted(Exception):
    """Execution stopped for a reason other than a cell raising an error."""

    def __init__(self, reason: str, nb: Any, cell_index: int | None) -> None:
        self.reason = reason
        self.nb = nb
        self.cell_index = cell_index
        super().__init__(reason)


@dataclass(slots=True)
class RunControl:
    """What the runner and the engine share about one execution.

    ``grace_s`` is how long a cell interrupted by a signal may take to finish its own
    safety path before the kernel is killed. The engine fills in the rest.
    """

    grace_s: float
    iopub_timeout_s: float
    expected_kernel: dict[str, str]
    kernel_env: dict[str, str] = field(default_factory=dict)  # set in the kernel's environment
    run_id: str = ""  # names the private kernel folder, so a later run can remove it
    signal_name: str | None = None  # the first SIGTERM/SIGINT received, if any
    signal_cell: int | None = None  # the cell that was running when it came
    signalled_at: float | None = None  # time.monotonic() of that signal
    kernel_killed: bool = False  # the grace period ran out and the kernel was killed
    kernel: dict[str, str] = field(default_factory=dict)  # what the kernel reported
    kernel_pid: int | None = None
    running_cell: int | None = None
    exited_cell: int | None = None  # a cell that called exit()/quit() (ask_exit)

    def stop_requested(self) -> bool:
        return self.signal_name is not None


class BgkitClient(PapermillNotebookClient):  # type: ignore[misc]
    """nbclient execution on the runner's own interpreter, interruptible by signals."""

    def __init__(self, nb_man: Any, *, control: RunControl, private_dir: Path,
                 **kwargs: Any) -> None:
        # Every code cell runs: no tag makes nbclient skip one ("skip-execution").
        super().__init__(nb_man, skip_cells_with_tag="", **kwargs)
        self.control = control
        self.private_dir = private_dir
        self.on_cell_executed = self._after_cell

    def _after_cell(self, cell: Any, cell_index: int, execute_reply: Any) -> None:
        """``exit()`` in a kernel only asks the front end to shut it down (JupyterLab does;
        nbclient ignores it): end the run there, as it would end for an operator."""
        payloads = (execute_reply or {}).get("content", {}).get("payload", []) or []
        if any(isinstance(p, dict) and p.get("source") == "ask_exit" for p in payloads):
            self.control.exited_cell = cell_index
            cell.outputs.append(_error_output(
                "EarlyExit", "the cell called exit() or quit(): the notebook ends here"))

    async def async_execute_cell(self, cell: Any, cell_index: int,
                                 execution_count: int | None = None,
                                 store_history: bool = True) -> Any:
        """nbclient's, with a save of the private record every second or so while the cell
        runs (papermill saves only when output arrives), so a killed runner loses little."""
        ticker = asyncio.ensure_future(self._save_while_running())
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count,
                                                    store_history)
        finally:
            ticker.cancel()

    execute_cell = run_sync(async_execute_cell)

    async def _save_while_running(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.nb_man.autosave_cell()

    def create_kernel_manager(self) -> Any:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import AsyncKernelManager

        specs = self.private_dir / "kernels"
        _write_kernelspec(specs / KERNEL_NAME, self.control.kernel_env)
        self.kernel_name = KERNEL_NAME
        self.km = AsyncKernelManager(
            kernel_name=KERNEL_NAME, transport="ipc", ip=str(self.private_dir / "k"),
            connection_file=str(self.private_dir / "connection.json"),
            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)],
                                                  ensure_native_kernel=False))
        return self.km

    async def async_start_new_kernel_client(self) -> Any:
        kc = await super().async_start_new_kernel_client()
        self.control.kernel_pid = _kernel_pid(self.km)
        self.control.kernel = await self._ask_kernel_identity(kc)
        return kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    async def _ask_kernel_identity(self, kc: Any) -> dict[str, str]:
        expressions = {"python": "sys.executable", "bgkit_version": "bgkit.__version__",
                       "bgkit_path": "str(pathlib.Path(bgkit.__file__).parent)"}
        msg_id = kc.execute("import sys, pathlib, bgkit", silent=True, store_history=False,
                            user_expressions=expressions)
        reply = await self.async_wait_for_reply(msg_id)
        found: dict[str, str] = {}
        for name, result in (reply or {}).get("content", {}).get(
                "user_expressions", {}).items():
            text = result.get("data", {}).get("text/plain") if result.get(
                "status") == "ok" else None
            with contextlib.suppress(ValueError, SyntaxError):
                found[name] = str(ast.literal_eval(text)) if text else ""
        return found

    def papermill_execute_cells(self) -> None:
        """papermill's loop, which also refuses a wrong kernel and starts no cell after a
        stop was asked for."""
        mismatch = _kernel_mismatch(self.control.expected_kernel, self.control.kernel)
        if mismatch:
            raise StepAborted(mismatch, self.nb, None)
        for index, cell in enumerate(self.nb.cells):
            if self.control.stop_requested() or self.control.exited_cell is not None:
                break
            self.control.running_cell = index
            try:
                self.nb_man.cell_start(cell, index)
                self.execute_cell(cell, index)
            except CellExecutionError as error:
                self.nb_man.cell_exception(self.nb.cells[index], cell_index=index,
                                           exception=error)
                break
            finally:
                self.nb_man.cell_complete(self.nb.cells[index], cell_index=index)
                self.control.running_cell = None


class BgkitEngine(NBClientEngine):  # type: ignore[misc]
    """nbclient execution with honest failure records and bgkit run metadata."""

    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, *, bgkit_metadata: dict[str, Any],
                         **kwargs: Any) -> Any:
        nb.metadata["bgkit"] = bgkit_metadata
        if not nb.cells or nb.cells[0].cell_type != "markdown":
            # The outcome banner goes on top of the first cell: make it a markdown one, so
            # the cell numbers that reasons give stay those of the archived notebook.
            from nbformat.v4 import new_markdown_cell

            nb.cells.insert(0, new_markdown_cell(f"# {bgkit_metadata.get('step', 'run')}"))
        return super().execute_notebook(nb, kernel_name, **kwargs)

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, *, control: RunControl,
                                 execution_timeout: float | None = None,
                                 start_timeout: float = 60, **kwargs: Any) -> Any:
        for unused in ("input_path", "log_output", "stdout_file", "stderr_file"):
            kwargs.pop(unused, None)
        from bgkit.runbook.staging import kernel_folder_prefix

        private = Path(tempfile.mkdtemp(prefix=kernel_folder_prefix(control.run_id)))
        client = BgkitClient(nb_man, control=control, private_dir=private,
                             timeout=execution_timeout, startup_timeout=start_timeout,
                             iopub_timeout=max(1, math.ceil(control.iopub_timeout_s)),
                             kernel_name=kernel_name,
                             **kwargs)
        try:
            with _signals_interrupt(client, control):
                return client.execute()
        except (DeadKernelError, CellTimeoutError) as error:
            index = _started_cell(nb_man.nb)
            reason = _reason(error, _where(nb_man.nb, index), execution_timeout, control)
            _mark_failed(nb_man, index, type(error).__name__, reason, error)
            raise StepAborted(reason, nb_man.nb, index) from error
        except StepAborted:
            nb_man.save()
            raise
        finally:
            shutil.rmtree(private, ignore_errors=True)


def _kernel_mismatch(expected: dict[str, str], found: dict[str, str]) -> str | None:
    """Why the kernel is not the runner's own (None when it is). Paths are compared
    normalised (``venv/../venv/bin/python`` is ``venv/bin/python``), never resolved: every
    venv's python links to the same system interpreter."""
    for name, value in expected.items():
        if _same(name, found.get(name)) != _same(name, value):
            return (f"the kernel is not the runner's own: its {name} is "
                    f"{found.get(name) or 'unknown'!r}, the runner's is {value!r}; nothing "
                    "ran (reinstall bgkit into the environment that runs `bgkit run`)")
    return None


def _same(name: str, value: str | None) -> str | None:
    if value and name in ("python", "bgkit_path"):
        return os.path.normpath(value)
    return value


def _write_kernelspec(folder: Path, env: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher",
                     "-f", "{connection_file}"],
            "display_name": "bgkit runner", "language": "python", "env": env,
            "metadata": {"debugger": False}}
    (folder / "kernel.json").write_text(json.dumps(spec))


def _kernel_pid(km: Any) -> int | None:
    process = getattr(getattr(km, "provisioner", None), "process", None)
    pid = getattr(process, "pid", None)
    return pid if isinstance(pid, int) else None


def _mark_failed(nb_man: Any, index: int | None, ename: str, reason: str,
                 error: BaseException) -> None:
    if index is not None:
        cell = nb_man.nb.cells[index]
        nb_man.cell_exception(cell, cell_index=index, exception=error)
        if cell.cell_type == "code":
            cell.outputs.append(_error_output(ename, reason))
    nb_man.save()


def _started_cell(nb: Any) -> int | None:
    """The last cell papermill started: the one running when execution stopped."""
    started = [i for i, cell in enumerate(nb.cells)
               if cell.metadata.get("papermill", {}).get("start_time")]
    return started[-1] if started else None


def _where(nb: Any, index: int | None) -> str:
    from bgkit.runbook.notebooks import cell_label

    return cell_label(nb, index) if index is not None else "kernel start-up"


def _reason(error: BaseException, where: str, timeout: object, control: RunControl) -> str:
    if control.kernel_killed:
        return (f"the runner received {control.signal_name} during {where}; the cell did "
                f"not finish within the {control.grace_s:g} s grace, so the kernel was "
                "killed")
    if isinstance(error, DeadKernelError):
        return f"the kernel died during {where} ({error})"
    if IOPUB_TIMEOUT_TEXT in str(error):
        return (f"{where} finished, but its output did not all arrive within the IOPub "
                f"timeout of {control.iopub_timeout_s:g} s (a flood of output, or a busy "
                "machine); the rest of its output is lost")
    return f"{where} ran past the cell timeout of {timeout} s"


def _error_output(ename: str, evalue: str) -> Any:
    from nbformat.v4 import new_output

    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def register() -> None:
    """Make the engine available to papermill under ``ENGINE_NAME`` (idempotent)."""
    papermill_engines.register(ENGINE_NAME, BgkitEngine)


@contextmanager
def _signals_interrupt(client: BgkitClient, control: RunControl) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT interrupt the kernel (once) instead of the runner.

    The running cell receives KeyboardInterrupt and may finish its own safety path; after
    ``control.grace_s`` the kernel's process group is killed. Later signals only repeat
    what is happening.
    """
    timer: threading.Timer | None = None

    def kill_kernel() -> None:
        if control.kernel_pid is not None:
            control.kernel_killed = True
            _signal_group(control.kernel_pid, signal.SIGKILL)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal timer
        name = signal.Signals(signum).name
        if control.signal_name is not None:
            say(f"bgkit: {name} again; the interrupted cell is still finishing its safety "
                f"path (up to {control.grace_s:g} s)")
            return
        control.signal_name, control.signalled_at = name, time.monotonic()
        control.signal_cell = control.running_cell
        say(f"bgkit: {name} received; interrupting the kernel and letting the running cell "
            f"finish its safety path (up to {control.grace_s:g} s)")
        if control.kernel_pid is not None and control.running_cell is not None:
            _signal_group(control.kernel_pid, signal.SIGINT)
            timer = threading.Timer(control.grace_s, kill_kernel)
            timer.daemon = True
            timer.start()

    try:
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM,
                                                                   signal.SIGINT)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if timer is not None:
            timer.cancel()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the kernel's process group (jupyter starts it in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(pid), sig)
