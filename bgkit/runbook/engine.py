"""A papermill engine whose record never claims success it did not have.

papermill marks the running cell "completed" when the kernel dies or a cell times
out, and a runner stopped by SIGTERM leaves the notebook half-written. This engine
catches those cases, marks the cell that was running as failed with an error
output saying why, saves the notebook, and raises :class:`StepAborted` carrying it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.engines import NBClientEngine, papermill_engines

__all__ = ["ENGINE_NAME", "RunInterrupted", "StepAborted", "register", "sigterm_interrupts"]

ENGINE_NAME = "bgkit"


class RunInterrupted(BaseException):
    """The runner was asked to stop (SIGTERM) while a notebook was running.

    A BaseException so that no ``except Exception`` inside papermill or nbclient
    swallows it on its way out.
    """


class StepAborted(Exception):
    """Execution stopped for a reason other than a cell raising an error."""

    def __init__(self, reason: str, nb: Any, cell_index: int | None) -> None:
        self.reason = reason
        self.nb = nb
        self.cell_index = cell_index
        super().__init__(reason)


class BgkitEngine(NBClientEngine):  # type: ignore[misc]
    """nbclient execution with honest failure records and bgkit run metadata."""

    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, *, bgkit_metadata: dict[str, Any],
                         **kwargs: Any) -> Any:
        nb.metadata["bgkit"] = bgkit_metadata
        return super().execute_notebook(nb, kernel_name, **kwargs)

    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, **kwargs: Any) -> Any:
        try:
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
        except (DeadKernelError, CellTimeoutError, RunInterrupted) as error:
            index = _started_cell(nb_man.nb)
            reason = _reason(error, index, kwargs.get("execution_timeout"))
            if index is not None:
                cell = nb_man.nb.cells[index]
                nb_man.cell_exception(cell, cell_index=index, exception=error)
                if cell.cell_type == "code":
                    cell.outputs.append(_error_output(type(error).__name__, reason))
            nb_man.save()
            raise StepAborted(reason, nb_man.nb, index) from error


def _started_cell(nb: Any) -> int | None:
    """The last cell papermill started: the one running when execution stopped."""
    started = [i for i, cell in enumerate(nb.cells)
               if cell.metadata.get("papermill", {}).get("start_time")]
    return started[-1] if started else None


def _reason(error: BaseException, index: int | None, timeout: object) -> str:
    where = f"cell {index}" if index is not None else "kernel start-up"
    if isinstance(error, DeadKernelError):
        return f"the kernel died during {where} ({error})"
    if isinstance(error, CellTimeoutError):
        return f"{where} ran past the cell timeout of {timeout} s"
    return f"the runner was stopped ({error}) during {where}"


def _error_output(ename: str, evalue: str) -> Any:
    from nbformat.v4 import new_output

    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def register() -> None:
    """Make the engine available to papermill under ``ENGINE_NAME`` (idempotent)."""
    papermill_engines.register(ENGINE_NAME, BgkitEngine)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`RunInterrupted` in the main thread."""

    def _raise(signum: int, _frame: FrameType | None) -> None:
        raise RunInterrupted(f"received {signal.Signals(signum).name}")

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
