"""Faults the emulator injects, set at start and changed at runtime.

They apply to the load balancer calls only (``/1.0/ipLoadbalancing...`` and
``/1.0/cloud/...``): ``/auth/time`` and the consumer-key flow always work. Set them in
the emulator's config file (``"faults"``) or with ``POST /_emulator/faults`` (a JSON
object of the fields to change; ``DELETE`` puts the start values back):

- ``error_next``: the next N matching calls answer HTTP 500 (without acting);
- ``error_ratio``: each matching call answers 500 with this probability (seeded);
- ``error_match``: which calls the two above hit, ``"METHOD /path"`` with ``*``
  wildcards, e.g. ``"POST */refresh"`` (default ``"*"``: every load balancer call);
- ``delay_s``: seconds added before every load balancer answer (slow API);
- ``slow_answer_s``: the calls matching ``slow_match`` (default ``"*"``) act at once and
  answer this many seconds later — a change made whose answer is still in flight (a
  client killed meanwhile never learns it was made);
- ``refresh_delay_s``: how long a refresh task takes from ``todo`` to its end;
- ``task_outcome``: how new refresh tasks end: ``done`` (applied), ``error``,
  ``cancelled``, or stuck in ``doing`` or ``blocked``;
- ``provisioning_delay_s``: how long a Public Cloud Load Balancer change stays
  ``updating`` (listener, pool and load balancer) before it ends;
- ``provisioning_outcome``: how new provisionings end: ``active`` (applied), ``error``
  (not applied), or stuck in ``updating``;
- ``provisioning_error_next``: the next N provisionings end in ``error`` whatever
  ``provisioning_outcome`` says (one failed change, then the normal outcome).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, cast

__all__ = ["PROVISIONING_OUTCOMES", "TASK_OUTCOMES", "Faults", "ProvisioningOutcome"]

TaskOutcome = Literal["done", "error", "cancelled", "doing", "blocked"]
TASK_OUTCOMES: tuple[TaskOutcome, ...] = ("done", "error", "cancelled", "doing", "blocked")
ProvisioningOutcome = Literal["active", "error", "updating"]
PROVISIONING_OUTCOMES: tuple[ProvisioningOutcome, ...] = ("active", "error", "updating")


@dataclass(slots=True)
class Faults:
    """The current faults; the emulator holds its lock while using them.

    Each change starts the ``error_ratio`` draws again from ``seed``.
    """

    error_next: int = 0
    error_ratio: float = 0.0
    error_match: str = "*"
    delay_s: float = 0.0
    slow_answer_s: float = 0.0
    slow_match: str = "*"
    refresh_delay_s: float = 0.5
    task_outcome: TaskOutcome = "done"
    provisioning_delay_s: float = 0.5
    provisioning_outcome: ProvisioningOutcome = "active"
    provisioning_error_next: int = 0
    seed: int = 0
    _random: random.Random = field(default_factory=random.Random, init=False, repr=False,
                                   compare=False)

    def __post_init__(self) -> None:
        self._random.seed(self.seed)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Faults:
        """Faults from JSON; ValueError names a bad field."""
        return cls().updated(data)

    def updated(self, data: Mapping[str, Any]) -> Faults:
        """A copy with ``data``'s fields changed; ValueError names a bad field or value."""
        if not isinstance(data, Mapping):
            raise ValueError("faults must be a JSON object")
        known = {f.name for f in fields(self) if not f.name.startswith("_")}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        changes: dict[str, Any] = {key: _checked(key, value) for key, value in data.items()}
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if not key.startswith("_")}

    def should_fail(self, method: str, path: str) -> bool:
        """Whether this call answers 500; consumes one of ``error_next`` if so."""
        if not _glob(self.error_match, f"{method} {path}"):
            return False
        if self.error_next > 0:
            self.error_next -= 1
            return True
        return self.error_ratio > 0 and self._random.random() < self.error_ratio


    def next_provisioning(self) -> tuple[float, ProvisioningOutcome]:
        """How long the provisioning starting now takes and how it ends; consumes one of
        ``provisioning_error_next`` if any is left."""
        if self.provisioning_error_next > 0:
            self.provisioning_error_next -= 1
            return self.provisioning_delay_s, "error"
        return self.provisioning_delay_s, self.provisioning_outcome

    def answer_delay(self, method: str, path: str) -> float:
        """Seconds to hold the answer of this call after it acted (``slow_answer_s``)."""
        if self.slow_answer_s and _glob(self.slow_match, f"{method} {path}"):
            return self.slow_answer_s
        return 0.0


def _glob(pattern: str, text: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, text) is not None


def _checked(key: str, value: object) -> object:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if key in ("error_next", "seed", "provisioning_error_next"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{key} must be a whole number >= 0, got {value!r}")
    elif key == "error_ratio":
        if not number or not 0 <= cast(float, value) <= 1:
            raise ValueError(f"error_ratio must be a number from 0 to 1, got {value!r}")
    elif key in ("delay_s", "refresh_delay_s", "slow_answer_s", "provisioning_delay_s"):
        if not number or not 0 <= cast(float, value) <= 3600:
            raise ValueError(f"{key} must be seconds from 0 to 3600, got {value!r}")
        value = float(cast(float, value))
    elif key in ("error_match", "slow_match"):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{key} must be a non-empty pattern, got {value!r}")
    elif key == "task_outcome" and value not in TASK_OUTCOMES:
        raise ValueError(f"task_outcome must be one of {', '.join(TASK_OUTCOMES)}, "
                         f"got {value!r}")
    elif key == "provisioning_outcome" and value not in PROVISIONING_OUTCOMES:
        raise ValueError(f"provisioning_outcome must be one of "
                         f"{', '.join(PROVISIONING_OUTCOMES)}, got {value!r}")
    return value
