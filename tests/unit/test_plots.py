"""Figures of the sample frame: the right artists, PNG bytes, and no crash when empty."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from bgkit.plots import POOL_COLOURS, figure_to_png, latency_by_host, latency_cdf, over_time
from bgkit.samples import empty_samples
from tests.unit.sample_factory import join, make_pool, make_samples

PNG = b"\x89PNG\r\n\x1a\n"


def two_pools() -> pd.DataFrame:
    green = make_pool("green", ["127.0.2.10", "127.0.2.2"], [10.0, 12.0, 15.0, 30.0])
    blue = make_pool("blue", ["127.0.1.1"], [8.0, 9.0, 11.0, 20.0])
    return join(green, blue)


def only_axes(fig: Figure) -> Axes:
    assert len(fig.axes) == 1
    return fig.axes[0]


def legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [text.get_text() for text in legend.get_texts()]


def test_latency_cdf_draws_a_curve_and_percentile_marks_per_pool_and_the_gate() -> None:
    ax = only_axes(latency_cdf(two_pools(), max_p99_ms=25))
    assert len(ax.lines) == 5  # per pool: curve + p50/p95/p99 marks; then the gate
    assert [len(line.get_xdata()) for line in ax.lines[:2]] == [4, 3]  # blue curve, marks
    assert ax.lines[-1].get_xdata()[0] == 25
    assert legend_texts(ax)[0] == "blue (n=4)"
    assert legend_texts(ax)[-1] == "gate: max p99 25 ms"
    assert ax.get_title() and ax.get_xlabel() == "latency (ms)" and ax.get_ylabel()
    assert ax.get_xscale() == "linear"
    assert len(only_axes(latency_cdf(two_pools())).lines) == 4


def test_latency_cdf_is_scaled_to_the_data_and_names_an_off_scale_gate_at_the_edge() -> None:
    slowest = float(two_pools()["latency_ms"].max())
    ax = only_axes(latency_cdf(two_pools(), max_p99_ms=500))
    assert ax.get_xlim()[1] < 2 * slowest, "the 1-3x ms data is not squeezed against 500"
    assert len(ax.lines) == 4 and "gate: max p99 500 ms" not in legend_texts(ax)
    (note,) = [text.get_text() for text in ax.texts]
    assert note.startswith("gate: max p99 500 ms →")


def test_latency_cdf_goes_logarithmic_for_a_wide_range_and_draws_few_points() -> None:
    wide = make_samples([float(ms) for ms in range(1, 5001)], host="h")
    ax = only_axes(latency_cdf(wide))
    assert ax.get_xscale() == "log"
    assert len(ax.lines[0].get_xdata()) == 2000
    ticks = [ax.xaxis.get_major_formatter()(value, 0) for value in (1.0, 10.0, 1000.0)]
    assert ticks == ["1", "10", "1000"], "plain numbers, never 10^0"


def test_latency_by_host_boxes_each_answering_host_in_its_pool_colour() -> None:
    dead = make_samples([1.0, 1.0], pool="green", host="127.0.2.3", errors="refused")
    ax = only_axes(latency_by_host(join(two_pools(), dead)))
    assert len(ax.patches) == 3  # the host that never answered has no box
    colours = [to_hex(patch.get_facecolor(), keep_alpha=False) for patch in ax.patches]
    assert colours == [POOL_COLOURS["blue"], POOL_COLOURS["green"], POOL_COLOURS["green"]]
    labels = [label.get_text() for label in ax.get_xticklabels()]
    assert labels == ["127.0.1.1", "127.0.2.2", "127.0.2.10"]
    assert legend_texts(ax) == ["blue", "green", "max"]
    assert ax.lines[-1].get_ydata().tolist() == [20.0, 30.0, 30.0]  # the max marks
    assert ax.get_ylabel() == "latency (ms)" and ax.get_xlabel() == "host"


def test_over_time_stacks_latency_lines_over_error_rates() -> None:
    errors = make_samples([2000.0, 2000.0, 0.1], host="127.0.2.2",
                          errors=["timeout", "timeout", "refused"])
    lb = make_samples([9.0, 9.0], pool="blue", target="lb")
    fig = over_time(join(two_pools(), errors, lb))
    top, bottom = fig.axes
    assert top.get_shared_x_axes().joined(top, bottom)
    assert len(top.lines) == 6  # p50 and p99 for blue, green and lb
    assert legend_texts(top) == ["blue p50", "blue p99", "green p50", "green p99",
                                 "lb p50", "lb p99"]
    assert len(bottom.collections) == 1
    assert legend_texts(bottom) == ["green: 3 (timeout, refused)"], "errors split by pool"
    assert bottom.get_ylabel() == "errors / s" and bottom.get_xlabel() == "time (UTC)"
    assert top.get_ylabel() == "latency (ms)" and top.get_title()


def test_over_time_keeps_the_live_pools_errors_apart_from_the_idle_pools() -> None:
    live_down = make_samples([0.1] * 4, pool="blue", host="127.0.1.1", errors="refused")
    idle_ok = make_samples([1.0] * 4, pool="green", host="127.0.2.1")
    _, bottom = over_time(join(live_down, idle_ok)).axes
    assert legend_texts(bottom) == ["blue: 4 (refused)"]


def test_over_time_says_when_there_were_no_errors() -> None:
    _, bottom = over_time(two_pools()).axes
    assert not bottom.collections
    assert [text.get_text() for text in bottom.texts] == ["no errors"]


@pytest.mark.parametrize("plot", [latency_cdf, latency_by_host, over_time])
def test_every_plot_renders_png_and_says_no_samples_when_empty(
    plot: Callable[[pd.DataFrame], Figure],
) -> None:
    assert figure_to_png(plot(two_pools())).startswith(PNG)
    empty = plot(empty_samples())
    assert isinstance(empty, Figure)
    assert [text.get_text() for text in only_axes(empty).texts] == ["no samples"]
    assert figure_to_png(empty).startswith(PNG)


def test_plots_without_any_answer_say_no_samples() -> None:
    refused = make_samples([0.1, 0.2], errors="refused")
    for plot in (latency_cdf, latency_by_host):
        assert [t.get_text() for t in only_axes(plot(refused)).texts] == ["no samples"]


def test_figures_render_in_threads_without_pyplot() -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(pool.map(lambda _: figure_to_png(latency_cdf(two_pools())), range(4)))
    assert all(image.startswith(PNG) and len(image) > 1000 for image in images)
    probe = "import sys, bgkit.plots; print('matplotlib.pyplot' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert run.stdout.strip() == "False"
