"""bgkit's vocabulary, defined once: pools, providers, outcomes, run names.

Every module that names a pool, a load balancer provider or how a step ended takes the
word from here, so that one word has one meaning and one spelling (DESIGN.md "Words").

- **pool**: ``blue`` or ``green``; the **live** one receives traffic, the other is **idle**.
- **provider**: how traffic is switched (``[lb].provider``).
- **outcome**: how a run or an action ended, and the exit code it gives.
- **run file**: ``<YYYYMMDDTHHMMSSZ>_<step>_<run_id>.ipynb`` in the archive.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal, get_args

__all__ = ["EXIT_CODES", "POOLS", "PROVIDERS", "Outcome", "PoolName", "ProviderName",
           "RunName", "exit_code", "other_pool", "parse_run_name"]

PoolName = Literal["blue", "green"]
POOLS: tuple[PoolName, ...] = get_args(PoolName)

ProviderName = Literal["haproxy", "ovh-iplb", "ovh-cloud-lb"]
PROVIDERS: tuple[ProviderName, ...] = get_args(ProviderName)


def other_pool(pool: PoolName) -> PoolName:
    """The pool that is not ``pool``."""
    return "green" if pool == "blue" else "blue"


class Outcome(StrEnum):
    """How a run, a switch or a rollback ended. Each compares equal to its word."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    RUNNING = "running"
    INCONCLUSIVE = "inconclusive"
    REFUSED = "refused"
    NOT_APPROVED = "not approved"
    SWITCHED = "switched"
    ROLLED_BACK = "rolled back"
    ALREADY_LIVE = "already live"
    SWITCHED_BACK = "switched back"
    SWITCH_FAILED = "switch failed"
    CANARY_FAILED = "canary failed"
    NEEDS_ATTENTION = "needs attention"


# The exit code of each outcome: 0 it did what was asked, 1 it did not (the record says
# why), 3 not enough evidence to decide. (2, bad usage or configuration, is an error's.)
EXIT_CODES: dict[Outcome, int] = {
    Outcome.SUCCEEDED: 0, Outcome.SWITCHED: 0, Outcome.ROLLED_BACK: 0,
    Outcome.ALREADY_LIVE: 0, Outcome.INCONCLUSIVE: 3,
    **{word: 1 for word in (Outcome.FAILED, Outcome.INTERRUPTED, Outcome.RUNNING,
                            Outcome.REFUSED, Outcome.NOT_APPROVED, Outcome.SWITCHED_BACK,
                            Outcome.SWITCH_FAILED, Outcome.CANARY_FAILED,
                            Outcome.NEEDS_ATTENTION)},
}


def exit_code(outcome: str) -> int:
    """The exit code of an outcome word (1 for a word bgkit does not know)."""
    try:
        return EXIT_CODES[Outcome(outcome)]
    except ValueError:
        return 1


_RUN_NAME = re.compile(r"(?P<stamp>\d{8}T\d{6}Z)_(?P<step>.+)_(?P<run_id>[0-9a-f]{12})")


class RunName:
    """The parts of an archived run's file name (its stem)."""

    __slots__ = ("run_id", "stamp", "step")

    def __init__(self, stamp: str, step: str, run_id: str) -> None:
        self.stamp, self.step, self.run_id = stamp, step, run_id


def parse_run_name(stem: str) -> RunName:
    """``20261130T101112Z_04_switch_ab12cd34ef56`` → stamp, step, run id. A stem that does
    not follow the layout keeps its last ``_`` part as the run id (and ``?`` as step)."""
    found = _RUN_NAME.fullmatch(stem)
    if found:
        return RunName(found["stamp"], found["step"], found["run_id"])
    return RunName("", "?", stem.rsplit("_", 1)[-1])
