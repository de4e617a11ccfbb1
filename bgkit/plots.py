"""Matplotlib figures of the sample frame (:mod:`bgkit.samples`), for the verify step.

Figures are built with the object-oriented API (``matplotlib.figure.Figure``), never
pyplot, so they hold no global state and work headless and in threads. Each returns a
Figure (about 8x4 in) with a title, labelled axes and a legend; an empty input gives a
figure that says "no samples". :func:`figure_to_png` renders one to PNG bytes.
"""

from __future__ import annotations

import io
import math
from typing import Final

import matplotlib.dates as mdates
import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from bgkit.analysis import natural_key
from bgkit.samples import ERROR_KINDS, validate_samples

__all__ = ["POOL_COLOURS", "figure_to_png", "latency_by_host", "latency_cdf", "over_time"]

POOL_COLOURS: Final = {"blue": "#1f77b4", "green": "#2ca02c", "lb": "#555555"}
ERROR_COLOURS: Final = dict(zip(
    ERROR_KINDS, ("#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"),
    strict=True))
SIZE: Final = (8.0, 4.0)
_CDF_POINTS: Final = 2000  # ECDF points drawn per pool; enough for a smooth curve
_TIME_BUCKETS: Final = 300  # at most this many time buckets in over_time


def latency_cdf(df: pd.DataFrame, *, max_p99_ms: float | None = None) -> Figure:
    """Empirical CDF of answered host-sample latency, one curve per pool.

    p50/p95/p99 are marked on each curve. The x axis is scaled to the data (logarithmic
    when latencies span 50x or more, with plain-number ticks); ``max_p99_ms`` (the gate)
    is drawn as a vertical line when it falls inside, else named at the right edge.
    """
    title = "Latency CDF per pool (answered host samples)"
    answered = _answered(_host_rows(df))
    if answered.empty:
        return _no_samples(title)
    fig = Figure(figsize=SIZE, layout="constrained")
    ax = fig.add_subplot()
    for pool, latency in answered.groupby("pool", sort=True)["latency_ms"]:
        values = np.sort(latency.to_numpy(dtype=np.float64))
        colour = _colour(str(pool))
        picks = np.unique(np.linspace(0, len(values) - 1, _CDF_POINTS).astype(np.intp))
        ax.step(values[picks], (picks + 1) / len(values), where="post", color=colour,
                label=f"{pool} (n={len(values):,})")
        marks = np.quantile(values, [0.5, 0.95, 0.99])
        text = "/".join(f"{m:.3g}" for m in marks)
        ax.plot(marks, [0.5, 0.95, 0.99], linestyle="none", marker="o", color=colour,
                markeredgecolor="black", label=f"{pool} p50/p95/p99 = {text} ms")
    _maybe_log(ax, answered["latency_ms"], axis="x")
    high = float(answered["latency_ms"].max())
    ax.set_xlim(right=high * (1.6 if ax.get_xscale() == "log" else 1.1))
    if max_p99_ms is not None:
        _gate_line(ax, max_p99_ms, high)
    ax.set(title=title, xlabel="latency (ms)", ylabel="share of samples at or below",
           ylim=(0.0, 1.02))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig


def latency_by_host(df: pd.DataFrame) -> Figure:
    """Box plot of answered latency per host, grouped and coloured by pool.

    Boxes span p25-p75 with the median; whiskers reach p1 and p99; an x marks the max.
    """
    title = "Latency per host (box p25-p75, whiskers p1-p99, x = max)"
    answered = _answered(_host_rows(df))
    if answered.empty:
        return _no_samples(title)
    groups = answered.groupby(["pool", "host"], sort=True)["latency_ms"]
    keys = answered[["pool", "host"]].drop_duplicates().itertuples(index=False)
    pairs = sorted(((str(p), str(h)) for p, h in keys), key=lambda k: (k[0], natural_key(k[1])))
    pools, hosts = [pool for pool, _ in pairs], [host for _, host in pairs]
    data = [groups.get_group(key).to_numpy(dtype=np.float64)
            for key in zip(pools, hosts, strict=True)]
    positions = [i + sorted(set(pools)).index(pool) for i, pool in enumerate(pools)]
    fig = Figure(figsize=SIZE, layout="constrained")
    ax = fig.add_subplot()
    boxes = ax.boxplot(data, positions=positions, widths=0.6, whis=(1, 99), showfliers=False,
                       patch_artist=True, tick_labels=hosts,
                       medianprops={"color": "black"})
    for box, pool in zip(boxes["boxes"], pools, strict=True):
        box.set(facecolor=_colour(pool), alpha=0.6)
    ax.plot(positions, [values.max() for values in data], linestyle="none", marker="x",
            color="black")
    _maybe_log(ax, answered["latency_ms"], axis="y")
    ax.set(title=title, xlabel="host", ylabel="latency (ms)")
    if len(hosts) > 6:
        for label in ax.get_xticklabels():
            label.set(rotation=40, horizontalalignment="right", rotation_mode="anchor")
    ax.grid(True, axis="y", alpha=0.3)
    handles: list[Artist] = [Patch(facecolor=_colour(pool), alpha=0.6, label=pool)
                             for pool in sorted(set(pools))]
    handles.append(Line2D([], [], linestyle="none", marker="x", color="black", label="max"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return fig


def over_time(df: pd.DataFrame) -> Figure:
    """Latency (p50 solid, p99 dashed) per pool over time, and errors per second per pool.

    Host samples are drawn per pool and load-balancer samples as "lb". Time is cut
    into at most 300 buckets of whole seconds.
    """
    title = "Latency and errors over time"
    frame = validate_samples(df, check_values=False)
    if frame.empty:
        return _no_samples(title)
    series = np.where(frame["target"].to_numpy(dtype=object) == "lb", "lb",
                      frame["pool"].to_numpy(dtype=object))
    stamps = frame["timestamp"].dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    start = stamps.min()
    span_s = float((stamps.max() - start) / np.timedelta64(1, "s"))
    width_s = max(1, math.ceil(span_s / _TIME_BUCKETS))
    bucket = ((stamps - start) // np.timedelta64(width_s, "s")).astype(np.int64)
    times = start + np.arange(bucket.max() + 1) * np.timedelta64(width_s, "s")
    fig = Figure(figsize=SIZE, layout="constrained")
    ax_latency, ax_errors = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    _latency_lines(ax_latency, frame, series, bucket, times)
    _error_rates(ax_errors, frame, series, bucket, times, width_s)
    ax_latency.set(title=f"{title} ({width_s} s buckets)", ylabel="latency (ms)")
    ax_errors.set(xlabel="time (UTC)", ylabel="errors / s")
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    ax_errors.xaxis.set_major_locator(locator)
    formatter = mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
    ax_errors.xaxis.set_major_formatter(formatter)
    return fig


def figure_to_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """The figure rendered as PNG (Agg), e.g. for ``IPython.display.Image``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _latency_lines(ax: Axes, frame: pd.DataFrame, series: npt.NDArray[np.object_],
                   bucket: npt.NDArray[np.int64], times: npt.NDArray[np.datetime64]) -> None:
    answered = frame["status"].notna().to_numpy(dtype=bool)
    table = pd.DataFrame({"series": series[answered], "bucket": bucket[answered],
                          "latency_ms": frame["latency_ms"].to_numpy()[answered]})
    quantiles = table.groupby(["series", "bucket"])["latency_ms"].quantile(np.array([0.5, 0.99]))
    for name in sorted(set(table["series"])):
        for q, style in ((0.5, "-"), (0.99, "--")):
            line = quantiles.xs((name, q), level=(0, 2))
            ax.plot(times[line.index.to_numpy()], line.to_numpy(), linestyle=style,
                    color=_colour(name), label=f"{name} p{q * 100:g}")
    if table.empty:
        ax.text(0.5, 0.5, "no answered samples", ha="center", va="center",
                transform=ax.transAxes)
    else:
        ax.legend(loc="upper left", fontsize="small", ncols=2)
    ax.grid(True, alpha=0.3)


def _error_rates(ax: Axes, frame: pd.DataFrame, series: npt.NDArray[np.object_],
                 bucket: npt.NDArray[np.int64], times: npt.NDArray[np.datetime64],
                 width_s: int) -> None:
    """Errors per second, one band per pool (and "lb" for the public address), each
    labelled with its error kinds: the live pool's errors never hide among the idle's."""
    failed = ~frame["ok"].to_numpy(dtype=bool)
    names = [name for name in sorted(set(series[failed])) if name]
    if not names:
        ax.text(0.5, 0.5, "no errors", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylim(0, 1)
        return
    kinds = frame["error"].to_numpy(dtype=object)
    rates, labels = [], []
    for name in names:
        chosen = failed & (series == name)
        rates.append(np.bincount(bucket[chosen], minlength=len(times)) / width_s)
        present = [kind for kind in ERROR_KINDS if (kinds[chosen] == kind).any()]
        labels.append(f"{name}: {int(chosen.sum()):,} ({', '.join(present)})")
    ax.stackplot(times, rates, labels=labels, colors=[_colour(str(n)) for n in names],
                 step="post", alpha=0.8)
    ax.legend(loc="upper left", fontsize="small", ncols=min(len(names), 3))
    ax.grid(True, alpha=0.3)


def _host_rows(df: pd.DataFrame) -> pd.DataFrame:
    frame = validate_samples(df, check_values=False)
    return frame[frame["target"] == "host"]


def _answered(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"].notna()]


def _colour(series: str) -> str:
    return POOL_COLOURS.get(series, "#7f7f7f")


def _maybe_log(ax: Axes, latency: pd.Series, *, axis: str) -> None:
    """A logarithmic axis when the data spans 50x or more, ticked with plain numbers."""
    low, high = float(latency.min()), float(latency.max())
    if low > 0 and high / low >= 50:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        target = ax.xaxis if axis == "x" else ax.yaxis
        target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def _gate_line(ax: Axes, gate_ms: float, high_ms: float) -> None:
    """The p99 gate: a line where it falls on the axis, else named at the right edge."""
    label = f"gate: max p99 {gate_ms:g} ms"
    if gate_ms <= ax.get_xlim()[1]:
        ax.axvline(gate_ms, color="red", linestyle="--", label=label)
        return
    ax.annotate(f"{label} →\n(off the scale: the slowest sample took {high_ms:.3g} ms)",
                xy=(1.0, 0.08), xycoords="axes fraction", ha="right", va="bottom",
                color="red", fontsize="small")


def _no_samples(title: str) -> Figure:
    fig = Figure(figsize=SIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, "no samples", ha="center", va="center", fontsize="x-large",
            transform=ax.transAxes)
    ax.set(title=title, xticks=[], yticks=[])
    return fig
