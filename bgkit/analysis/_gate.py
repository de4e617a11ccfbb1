"""One gate's judgement, shared by the gate modules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["GateResult", "GateVerdict", "listing"]

GateVerdict = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate's judgement; ``reason`` is a sentence an operator can act on."""

    gate: str
    verdict: GateVerdict
    observed: str
    threshold: str
    reason: str


def listing(items: Sequence[str], limit: int = 8) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")
