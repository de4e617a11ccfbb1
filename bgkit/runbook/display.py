"""Small helpers that show progress and results inside a notebook or a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import pandas as pd

    from bgkit.config import GatesConfig

BAD = "background-color: #f8d7da; color: #842029; font-weight: bold"
GOOD = "background-color: #d1e7dd; color: #0f5132"
UNSURE = "background-color: #fff3cd; color: #664d03"
VERDICT_STYLE = {"pass": GOOD, "fail": BAD, "inconclusive": UNSURE}

__all__ = ["banner", "build_progress", "html_block", "styled_gates", "styled_summary",
           "verdict_banner"]


def build_progress(stream: TextIO | None = None) -> Callable[[str], None]:
    """A progress callback printing each build stage with the time since the first."""
    started = time.monotonic()
    out = stream if stream is not None else sys.stdout

    def report(stage: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {stage}", file=out, flush=True)

    return report


def styled_summary(summary: pd.DataFrame, gates: GatesConfig, *, idle_pool: str) -> Any:
    """The summary table with the idle pool's cells that break a gate highlighted."""

    def mark(row: pd.Series) -> list[str]:
        styles = [""] * len(row)
        if row.get("pool") != idle_pool or row.get("target") != "host":
            return styles
        checks = {
            "samples": row["samples"] < gates.min_samples_per_host,
            "ok_ratio": (row["samples"] - row["ok"]) / max(row["samples"], 1)
            > gates.max_error_ratio,
            "p99_ms": row["p99_ms"] > gates.max_p99_ms,
        }
        for index, column in enumerate(row.index):
            if checks.get(column):
                styles[index] = BAD
        return styles

    number_formats: dict[Any, str | Callable[[object], str] | None] = {
        c: "{:.2f}" for c in summary.columns if c.endswith("_ms")}
    number_formats["ok_ratio"] = "{:.1%}"
    # Text from hosts (versions, error kinds) is data, never markup: escape every cell.
    return (summary.style.apply(mark, axis=1).format(escape="html", na_rep="-")
            .format(number_formats, na_rep="-", escape="html").hide(axis="index"))


def styled_gates(gates: pd.DataFrame) -> Any:
    """One row per gate, coloured by its verdict."""
    return (gates.style.map(lambda v: VERDICT_STYLE.get(str(v), ""), subset=["verdict"])
            .format(escape="html").hide(axis="index"))


def html_block(text: str) -> Any:
    """Already-escaped HTML (from :mod:`bgkit.runbook.evidence`) as a notebook output."""
    from IPython.display import HTML

    return HTML(text)


def banner(title: str, style: str, lines: list[str]) -> Any:
    """A large coloured title (style: pass, fail or inconclusive) over a list of lines."""
    from html import escape

    from IPython.display import HTML

    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return HTML(f'<div style="{VERDICT_STYLE.get(style, "")}; padding: 0.8em; '
                f'border-radius: 4px"><div style="font-size: 1.6em"><b>{escape(title)}</b>'
                f"</div><ul>{items}</ul></div>")


def verdict_banner(verdict: str, reasons: list[str]) -> Any:
    """A large coloured verdict with its reasons, for the notebook and the archived HTML."""
    return banner(f"verdict: {verdict}", verdict, reasons)
