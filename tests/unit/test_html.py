"""HTML reports of archived runs: offline, images embedded, code hidden on request."""

from __future__ import annotations

import base64
import re
import stat
from pathlib import Path

import nbformat
import pytest

from bgkit.errors import UsageError
from bgkit.runbook.html import (
    default_report_path,
    external_sources,
    render_html,
    run_summary,
    write_report,
)
from tests.unit.archive_factory import write_run

# A 1x1 PNG.
PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAA"
         "AABJRU5ErkJggg==")


def notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["bgkit"] = {"run_id": "ab12cd34ef56", "step": "03_verify",
                            "outcome": "failed", "reason": "gate p99 <b>broke</b> | x",
                            "operator": "ci@runner", "git": {"commit": "c0ffee", "dirty": True}}
    nb.metadata["papermill"] = {"parameters": {"release": "hello-1.0.0", "run_id": "ab12"}}
    parameters = nbformat.v4.new_code_cell('release = ""  # DEFAULT_RELEASE')
    parameters.metadata["tags"] = ["parameters"]
    injected = nbformat.v4.new_code_cell('# Parameters\nrelease = "INJECTED_RELEASE"')
    injected.metadata["tags"] = ["injected-parameters"]
    plot = nbformat.v4.new_code_cell("show_the_plot()")
    plot.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PIXEL,
                                                                 "text/plain": "<Figure>"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# Verify\nSee [the docs](https://example.org/docs)."),
                parameters, injected, plot]
    return nb


def test_a_report_embeds_png_outputs_and_loads_nothing_from_the_network() -> None:
    page = render_html(notebook())
    assert f'src="data:image/png;base64,{PIXEL}"' in page
    assert external_sources(page) == []
    assert re.findall(r"<(?:script|link|img)\b[^>]*(?:src|href)=[\"']?(?:https?:)?//", page) == []
    for cdn in ("cdnjs", "unpkg", "require.min.js", "mathjax", "mermaid.esm"):
        assert cdn not in page.lower()
    assert 'href="https://example.org/docs"' in page  # a hyperlink in text stays


def test_with_input_the_code_and_the_injected_parameters_are_shown() -> None:
    page = render_html(notebook())
    assert "show_the_plot" in page and "INJECTED_RELEASE" in page


def test_no_input_hides_code_prompts_and_the_injected_parameters_cell() -> None:
    page = render_html(notebook(), no_input=True)
    for code in ("show_the_plot", "INJECTED_RELEASE", "DEFAULT_RELEASE", "In&nbsp;["):
        assert code not in page
    assert PIXEL in page
    assert "hello-1.0.0" in page  # the values remain, in the run summary


def test_the_run_summary_names_the_run_and_escapes_what_it_quotes() -> None:
    summary = run_summary(notebook(), sha256="f" * 64)
    assert summary.startswith("## 03\\_verify · failed · ci@runner")
    assert "### Run ab12cd34ef56 · 03\\_verify" in summary
    assert "&lt;b&gt;broke&lt;/b&gt; &#124; x" in summary
    assert "| git | c0ffee (dirty) |" in summary
    assert f"| sha256 | {'f' * 64} |" in summary
    assert "| parameter release | 'hello-1.0.0' |" in summary
    page = render_html(notebook())
    assert "<b>broke</b>" not in page


def test_rendering_leaves_the_notebook_unchanged() -> None:
    nb = notebook()
    before = nbformat.writes(nb)
    render_html(nb, no_input=True)
    assert nbformat.writes(nb) == before


@pytest.mark.parametrize("snippet", [
    '<script src="https://cdn.example.com/x.js"></script>',
    "<script src='//cdn.example.com/x.js'></script>",
    '<link rel="stylesheet" href="http://cdn.example.com/x.css">',
    '<img src="https://tracker.example.com/p.png">',
    '<iframe src="https://example.com/"></iframe>',
    '<style>@import url("https://fonts.example.com/f.css");</style>',
    '<script>import("https://cdn.example.com/m.mjs")</script>',
])
def test_external_sources_finds_every_kind_of_network_load(snippet: str) -> None:
    assert len(external_sources(f"<html><body>{snippet}</body></html>")) == 1


def test_external_sources_ignores_hyperlinks_data_uris_and_script_comments() -> None:
    page = ('<a href="https://example.com">x</a> text https://example.com '
            f'<img src="data:image/png;base64,{PIXEL}"><script>// a comment\nvar a = 1;</script>')
    assert external_sources(page) == []


def test_write_report_defaults_to_reports_beside_the_archive_and_never_writes_into_it(
        tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    path = write_run(runs, "04_switch", "2026-11-02T10:00:00+00:00")
    path.chmod(stat.S_IRUSR)
    target = default_report_path(runs, path)
    assert target == tmp_path.resolve() / "reports" / f"{path.stem}.html"
    write_report(path, target, runs_dir=runs)
    assert "<html" in target.read_text()
    with pytest.raises(UsageError, match="write-once"):
        write_report(path, runs / "2026" / "x.html", runs_dir=runs)
    assert sorted(p.name for p in runs.rglob("*") if p.is_file()) == [path.name]


def test_the_pixel_is_a_real_png() -> None:
    assert base64.b64decode(PIXEL).startswith(b"\x89PNG")


def test_a_widget_output_is_named_not_loaded_from_a_cdn() -> None:
    nb = notebook()
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    nb.cells[3].outputs.append(nbformat.v4.new_output(
        "display_data", data={"application/vnd.jupyter.widget-view+json": view,
                              "text/plain": "Button(description='Approve')"}))
    model = {"model_name": "ButtonModel", "model_module": "@jupyter-widgets/controls",
             "model_module_version": "2.0.0", "state": {}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {"abc": model}, "version_major": 2, "version_minor": 0}}
    page = render_html(nb)
    assert ("Button(description='Approve') (an interactive widget: not shown in an "
            "offline report)") in page
    assert external_sources(page) == []
    assert "unpkg" not in page


HOSTILE = '<img src=x onerror=alert(1)><script>alert(2)</script>'


def live_markup(document: str) -> list[str]:
    """Event-handler attributes and scripts that a browser would run in ``document``."""
    from html.parser import HTMLParser

    found: list[str] = []

    class Finder(HTMLParser):
        in_script = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend(f"<{tag} {name}>" for name, _ in attrs if name.startswith("on"))
            self.in_script = tag == "script"

        def handle_data(self, data: str) -> None:
            if self.in_script and "alert" in data:
                found.append(f"<script>{data[:40]}")

    Finder().feed(document)
    return found


def test_hostile_markup_in_outputs_and_markdown_is_inert_in_the_report() -> None:
    nb = notebook()
    shown = nbformat.v4.new_code_cell("show()")
    shown.outputs = [
        nbformat.v4.new_output("display_data", data={
            "text/html": f"<table><tr><td style='color: red'>{HOSTILE}</td></tr></table>"
                         "<style>td {{ background: url(https://evil.example/x) }}</style>",
            "text/plain": HOSTILE}),
        nbformat.v4.new_output("stream", name="stdout", text=HOSTILE)]
    nb.cells += [shown, nbformat.v4.new_markdown_cell(f"version {HOSTILE}")]
    text = render_html(nb)
    assert live_markup(text) == []
    assert "evil.example" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text  # the text output, shown as text
    assert 'style="color:red"' in text, "inline colours survive"
    assert not external_sources(text)


def test_a_styled_summary_escapes_what_hosts_answered() -> None:
    import pandas as pd

    from bgkit.config import GatesConfig
    from bgkit.runbook.display import styled_gates, styled_summary

    summary = pd.DataFrame([{"pool": "green", "host": "127.0.2.1", "target": "host",
                             "samples": 10, "ok": 10, "ok_ratio": 1.0, "p99_ms": 1.0,
                             "versions": HOSTILE}])
    html = styled_summary(summary, GatesConfig(), idle_pool="green").to_html()
    assert "<img" not in html and "<script>" not in html and "&lt;img" in html
    gates = pd.DataFrame([{"gate": "version", "verdict": "fail", "reason": HOSTILE}])
    assert "<script>" not in styled_gates(gates).to_html()


def test_runs_html_scrubs_secrets_before_rendering(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    path = write_run(runs, "03_verify", "2026-11-01T10:00:00+00:00")
    nb = nbformat.read(path, as_version=4)
    leak = nbformat.v4.new_code_cell("print(key)")
    leak.outputs = [nbformat.v4.new_output("stream", name="stdout", text="key s3cr3t-value")]
    nb.cells.append(leak)
    path.chmod(0o600)
    nbformat.write(nb, path)
    target = write_report(path, tmp_path / "report.html", runs_dir=runs,
                          secrets={"s3cr3t-value"})
    assert "s3cr3t-value" not in target.read_text() and "key ***" in target.read_text()


def switch_run() -> nbformat.NotebookNode:
    from bgkit.runbook.record import RECORD_MIME

    nb = nbformat.v4.new_notebook()
    nb.metadata["bgkit"] = {"run_id": "feed00000001", "step": "04_switch",
                            "outcome": "switched back", "reason": "the watch failed",
                            "operator": "ops@laptop", "front_door": "jupyterlab",
                            "started_at": "2026-11-30T10:11:12.123456+00:00",
                            "duration_s": 13.25}
    records = {
        "preview": {"action": "switch", "release": "hello-c-2.0.0-1a2b3c", "version": "2.0.0",
                    "live_pool": "blue", "target_pool": "green"},
        "gates": [{"gate": g, "verdict": "pass"} for g in ("samples", "errors", "version")],
        "switch": {"action": "switch", "outcome": "switched back", "from_pool": "blue",
                   "to_pool": "green", "live_pool": "blue"},
        "watch": {"samples": 480, "errors": 31, "wrong_version": 0, "p99_ms": 4.25},
    }
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", data={RECORD_MIME: {
        "name": name, "kind": "table" if isinstance(value, list) else "value",
        "value": value}}) for name, value in records.items()]
    nb.cells = [cell]
    return nb


def test_the_reports_first_screen_says_who_when_what_release_evidence_and_outcome() -> None:
    from bgkit.runbook.headline import run_headline

    top = run_headline(switch_run()).as_dict()
    assert top == {
        "outcome": "switched back: the watch failed",
        "who": "ops@laptop (from jupyterlab)",
        "when": "2026-11-30 10:11:12 UTC, 13.2 s",
        "what": "switch from blue to green; traffic ended on blue",
        "release": "hello-c-2.0.0-1a2b3c",
        "evidence": "gates 3/3 pass; watch 480 answers, 31 failed, 0 from another release, "
                    "p99 4.2 ms"}
    summary = run_summary(switch_run())
    first = summary.split("### Run")[0]
    for value in ("ops@laptop", "2026-11-30 10:11:12 UTC", "blue to green",
                  "hello-c-2.0.0-1a2b3c", "gates 3/3 pass", "480 answers"):
        assert value.replace("_", "\\_") in first or value in first
    assert ".123456" not in first, "no microseconds in the headline"
