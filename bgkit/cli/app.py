"""The ``bgkit`` group, its lazily loaded commands, and the one table of exit codes.

Exit codes, decided here and nowhere else:

- an error, by its family (:data:`ERROR_EXIT_CODES`): 2 for bad usage or configuration
  (nothing ran), 1 for anything else bgkit reports;
- an outcome, by its word (:data:`bgkit.words.EXIT_CODES`): 0 it did what was asked,
  1 it did not, 3 not enough evidence to decide; a step notebook whose cell stopped on
  bad usage or configuration (``StepFailed.usage``) exits 2 like the CLI's own;
- 130 when the user aborted (Ctrl-C), 143 when stopped by SIGTERM (after the same
  cleanup). A stop by SIGTERM still running :data:`STOP_STACKS_AFTER_S` later prints
  every thread's stack to stderr (:mod:`faulthandler`), so a wedged cleanup says where.
"""

from __future__ import annotations

import contextlib
import faulthandler
import signal
import sys
import threading
from importlib import import_module
from typing import Any

import click

from bgkit.errors import BgkitError, ConfigError, StepFailed, StorageError, UsageError
from bgkit.signals import say
from bgkit.words import exit_code

__all__ = ["ERROR_EXIT_CODES", "STOP_STACKS_AFTER_S", "LazyGroup", "app", "exit_code_for",
           "main"]

# Seconds after SIGTERM before a process still stopping prints its threads' stacks: above
# the usual cleanup (a split ended, a lease released, a run archived: seconds), below what
# a CI runner waits before SIGKILL once it has been told to stop patiently.
STOP_STACKS_AFTER_S = 120.0

ERROR_EXIT_CODES: tuple[tuple[type[BgkitError], int], ...] = (
    (UsageError, 2),
    (ConfigError, 2),
    (StorageError, 1),  # the object store (S3) refused, failed or cannot be used
    (BgkitError, 1),
)

# This call's --json: asked for, and whether its object was printed (an error after it
# must not print a second one); main() resets it, bgkit.cli.render sets it.
JSON_STATE = {"asked": False, "printed": False, "terminated": False, "watching": False}

# name: (module:attribute, the one-line help shown by `bgkit --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "build": ("bgkit.cli.steps:build", "Build, test and package the app into a release."),
    "config": ("bgkit.cli.steps:config_group", "Check bgkit.toml."),
    "deploy": ("bgkit.cli.steps:deploy", "Deploy a release to every host of the idle pool."),
    "host": ("bgkit.cli.steps:host_group", "One-time, privileged setup of real servers."),
    "init": ("bgkit.cli.steps:init", "Write a commented bgkit.toml for a CMake project."),
    "lock": ("bgkit.cli.lock:lock_group", "The deployment lock shared by operators and CI."),
    "ovh": ("bgkit.cli.ovh:ovh_group", "OVHcloud API helpers (consumer keys)."),
    "release": ("bgkit.cli.steps:release_command",
                "Build, deploy, verify and switch, one archived run per step."),
    "rollback": ("bgkit.cli.steps:rollback_command",
                 "Move all traffic back to the other pool, if it is healthy."),
    "run": ("bgkit.cli.steps:run", "Execute a step notebook and archive it under runs/."),
    "runs": ("bgkit.cli.runs:runs_group", "Read the archive of executed runbooks."),
    "sandbox": ("bgkit.cli.sandbox:sandbox_group", "A local fleet on this machine."),
    "status": ("bgkit.cli.steps:status", "The live pool and every host's release and health."),
    "switch": ("bgkit.cli.steps:switch_command",
               "Gate on fresh evidence, move all traffic to the idle pool, watch it."),
    "verify": ("bgkit.cli.steps:verify", "Sample both pools and judge the idle one."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when one of them runs (or its help is asked)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name][0].partition(":")
            self.add_command(getattr(import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy[name][1] if name in self.lazy else
                 self.commands[name].get_short_help_str()) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from bgkit import __version__

        click.echo(f"bgkit, version {__version__}")
        ctx.exit()


@click.group(cls=LazyGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version and exit.")
def app() -> None:
    """Zero-downtime blue-green deployments of compiled C services."""


def exit_code_for(error: BgkitError) -> int:
    """The exit code of an error: a step's by its outcome word, else by its family (the
    first row of :data:`ERROR_EXIT_CODES` it belongs to)."""
    if isinstance(error, StepFailed):
        return 2 if error.usage else exit_code(error.outcome)
    return next(code for family, code in ERROR_EXIT_CODES if isinstance(error, family))


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, ``timeout``, systemd), raised in the main thread like
    Ctrl-C's KeyboardInterrupt, so that every cleanup path runs for it too: a canary split
    ended, a hook's process group killed, a switched pool watched or switched back, the
    lease released. The exit code is then 143 (128 + SIGTERM)."""


def _on_sigterm(signum: int, _frame: object) -> None:
    if JSON_STATE.get("terminated"):
        say("bgkit: already stopping (finishing what keeps traffic safe)")  # bgkit.signals
        return  # a second SIGTERM must not interrupt the cleanup the first one started
    JSON_STATE["terminated"] = True
    with contextlib.suppress(OSError, ValueError):  # fd 2, not sys.stderr: a test's
        faulthandler.dump_traceback_later(STOP_STACKS_AFTER_S, exit=False, file=2)
        JSON_STATE["watching"] = True  # stand-in stream may have no file descriptor
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    JSON_STATE.update(asked="--json" in args, printed=False, terminated=False,
                      watching=False)
    previous = _install(signal.SIGTERM, _on_sigterm)
    try:
        # Without standalone mode click returns (not raises) a command's Exit code.
        code = app.main(args=args, prog_name="bgkit", standalone_mode=False)
    except BgkitError as error:
        from bgkit.cli.render import error_line, json_error

        error_line(str(error))
        json_error(str(error), exit_code_for(error), type(error).__name__)
        return exit_code_for(error)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except (click.Abort, KeyboardInterrupt):
        from bgkit.cli.render import json_error

        said, code = ("terminated (SIGTERM)", 143) if JSON_STATE.get("terminated") else \
            ("aborted", 130)
        click.echo(said, err=True)
        json_error(said, code, "Terminated" if code == 143 else "Aborted")
        return code
    except click.ClickException as error:
        from bgkit.cli.render import json_error

        error.show()
        json_error(error.format_message(), 2, "UsageError")
        return 2
    finally:
        _install(signal.SIGTERM, previous)
        if argv is not None and JSON_STATE.get("watching"):  # called in-process: the
            faulthandler.cancel_dump_traceback_later()  # caller lives on; a process
            # exiting keeps the watch until it is gone. Only a watch this call armed.
    return code if isinstance(code, int) else 0


def _install(signum: int, handler: Any) -> Any:
    """Set a signal handler where Python may (the main thread); returns the previous."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
