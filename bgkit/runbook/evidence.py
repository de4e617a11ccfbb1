"""The evidence as an operator reads it: the verdict and its cause first, then a compact table.

Pure functions over a :class:`bgkit.verify.VerifyResult` (and its summary), returning text
and HTML strings. The HTML uses inline styles only and escapes every value, so it reads
the same in JupyterLab, in an untrusted saved notebook and in a sanitised report; text
from hosts (versions, error kinds) is never markup.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from bgkit.analysis.summary import ERROR_COLUMNS, POOL_ROW

if TYPE_CHECKING:
    from bgkit.config import GatesConfig
    from bgkit.verify import VerifyResult

__all__ = ["Headline", "compact_summary", "headline", "html_table", "summary_html"]

BAD = "background-color:#f8d7da;color:#842029;font-weight:bold"
GOOD = "background-color:#d1e7dd;color:#0f5132"
UNSURE = "background-color:#fff3cd;color:#664d03"
STYLES = {"pass": GOOD, "fail": BAD, "inconclusive": UNSURE}
# Gates that fail as a consequence when the idle pool answers another release.
_FOLLOW_WRONG_RELEASE = ("errors", "consecutive_failures")


@dataclass(frozen=True, slots=True)
class Headline:
    """The verdict in one line, and its cause in one more."""

    verdict: str  # pass | fail | inconclusive
    title: str  # "green idle 2.0.0 vs blue live 1.0.0: 7/7 gates pass"
    cause: str  # what decided it, and what to do ("" on a pass)

    @property
    def style(self) -> str:
        return STYLES.get(self.verdict, "")

    def to_html(self) -> str:
        cause = f'<div style="margin-top:0.3em">{html.escape(self.cause)}</div>' \
            if self.cause else ""
        return (f'<div style="{self.style};padding:0.6em 0.8em;border-radius:4px">'
                f'<div style="font-size:1.3em"><b>{html.escape(self.title)}</b></div>'
                f"{cause}</div>")


def headline(result: VerifyResult, *, role: str = "idle") -> Headline:
    """"<idle> idle <versions> vs <live> live <versions>: n/m gates pass" and the cause.

    A wrong release is one cause, not the three gates it fails: the version gate's
    reason, with the gates that fail because of it named as following from it.
    """
    verdict = result.verdict
    passed = sum(gate.verdict == "pass" for gate in verdict.gates)
    total = len(verdict.gates)
    idle, live = result.idle_pool, result.live_pool
    title = (f"{idle} {role} {_versions(result, idle)} vs {live} live "
             f"{_versions(result, live)}: ")
    if verdict.overall == "pass":
        return Headline("pass", title + f"{total}/{total} gates pass", "")
    failing = [gate for gate in verdict.gates if gate.verdict == "fail"]
    unsure = [gate for gate in verdict.gates if gate.verdict == "inconclusive"]
    if verdict.overall == "fail":
        title += f"{len(failing)}/{total} gates fail"
    else:
        title += f"{passed}/{total} gates pass, {len(unsure)} inconclusive"
    version = next((gate for gate in failing if gate.gate == "version"), None)
    if version is not None:
        following = [g.gate for g in failing if g.gate in _FOLLOW_WRONG_RELEASE]
        cause = f"wrong release: {version.reason}"
        if following:
            cause += f" ({', '.join(following)} fail because of it)"
        others = [g for g in failing if g.gate != "version" and g.gate not in following]
        cause += "".join(f"; {g.gate}: {g.reason}" for g in others)
        return Headline(verdict.overall, title, cause)
    deciding = failing or unsure
    return Headline(verdict.overall, title, "; ".join(f"{g.gate}: {g.reason}"
                                                      for g in deciding))


def _versions(result: VerifyResult, pool: str) -> str:
    rows = result.verdict.summary
    seen = rows[(rows["pool"] == pool) & (rows["host"] == POOL_ROW)]["versions"]
    text = ", ".join(str(v) for v in seen if str(v)) if len(seen) else ""
    return text or "(no version)"


def compact_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as a reader needs it: pool, host, samples, errors (only the kinds that
    occurred), p50/p95/p99 in ms, version. Pool rows read "(pool)"; the load balancer's
    public address reads "public address"."""
    errors = [c for c in ERROR_COLUMNS if c in summary and summary[c].fillna(0).sum() > 0]
    frame = pd.DataFrame({
        "pool": summary["pool"],
        "host": summary["host"].where(summary["target"] != "lb", "public address"),
        "samples": summary["samples"],
    })
    frame["errors"] = summary["samples"] - summary["ok"]
    for column in errors:
        frame[column.removeprefix("err_")] = summary[column]
    for column in ("p50_ms", "p95_ms", "p99_ms"):
        frame[column] = summary[column]
    frame["version"] = summary["versions"]
    return frame


def summary_html(summary: pd.DataFrame, gates: GatesConfig, *, idle_pool: str) -> str:
    """:func:`compact_summary` as an HTML table, the idle hosts' cells that break a gate
    marked."""
    frame = compact_summary(summary)

    def mark(row: pd.Series, column: str) -> str:
        if row["pool"] != idle_pool or row["host"] in (POOL_ROW, "public address"):
            return ""
        value = row[column]
        if column == "samples":
            broken = value < gates.min_samples_per_host
        elif column == "errors":
            broken = value / max(row["samples"], 1) > gates.max_error_ratio
        elif column == "p99_ms":
            broken = isinstance(value, float) and value > gates.max_p99_ms
        else:
            broken = False
        return BAD if broken else ""

    return html_table(frame, styles=mark, numbers={"p50_ms": "{:.2f}", "p95_ms": "{:.2f}",
                                                   "p99_ms": "{:.2f}"})


def html_table(frame: pd.DataFrame, *, styles: Any = None,
               numbers: dict[str, str] | None = None) -> str:
    """``frame`` as a compact HTML table with escaped cells and inline styles.

    ``styles(row, column)`` may return a CSS declaration for a cell; ``numbers`` maps
    columns to format strings. Missing values show as "-".
    """
    formats = numbers or {}
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column in frame.columns:
            style = styles(row, column) if styles else ""
            text = _cell_text(row[column], formats.get(str(column)))
            attribute = f' style="{style}"' if style else ""
            cells.append(f"<td{attribute}>{html.escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table style="border-collapse:collapse;font-size:0.9em">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _cell_text(value: object, number_format: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value is pd.NA:
        return "-"
    if number_format and isinstance(value, int | float):
        return number_format.format(value)
    return str(value)
