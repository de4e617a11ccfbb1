"""The ``bgkit`` command: parse, call one library function, map errors to exit codes.

One module per command group, loaded only when its command runs (``bgkit --help`` imports
none of them): :mod:`bgkit.cli.app` (the group, the exit table, ``main``),
:mod:`bgkit.cli.steps` (build, run, deploy, verify, switch, rollback, release, status,
config, host), :mod:`bgkit.cli.runs`, :mod:`bgkit.cli.lock`, :mod:`bgkit.cli.sandbox`,
:mod:`bgkit.cli.ovh`, and :mod:`bgkit.cli.render` (what they print with).
"""

from bgkit.cli.app import ERROR_EXIT_CODES, app, exit_code_for, main

__all__ = ["ERROR_EXIT_CODES", "app", "exit_code_for", "main"]
