"""One archived run as a self-contained HTML report that opens with no network.

nbconvert's lab template loads require.js, MathJax and mermaid from cdnjs and the widget
manager from unpkg. The report template here drops all four (bgkit runbooks need none of
them: plots are PNG outputs, embedded as data URIs, and headless runs show no widgets),
and strips the CSS comments that carry URLs. A summary of ``metadata.bgkit`` comes first,
so the report names the run, its outcome and the sha256 of the archived file.

Text from hosts and load balancers is data, never markup: every HTML output and markdown
cell goes through an allowlist sanitiser (``nh3``: tables, text formatting, inline colours,
images; no script, no event handlers, no ``<style>`` blocks, no forms or frames), and the
notebook is scrubbed of secrets once more before it is rendered.

The archive is never written: reports go to ``reports/`` beside the runs folder.
"""

from __future__ import annotations

import hashlib
import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import nbformat

from bgkit.errors import UsageError

__all__ = ["clean_html", "default_report_path", "external_sources", "markdown_text",
           "render_html", "write_report"]

_TEMPLATE_NAME = "bgkit_offline.html.j2"
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block data_widget_view -%}
<div class="jp-RenderedText jp-OutputArea-output"><pre>\
{{ output.data.get('text/plain', 'a widget') | escape_html }} \
(an interactive widget: not shown in an offline report)</pre></div>
{%- endblock data_widget_view -%}
"""
_STYLE = re.compile(r"(<style[^>]*>)(.*?)(</style>)", re.DOTALL | re.IGNORECASE)
_URL_COMMENT = re.compile(r"/\*(?:(?!\*/).)*?://.*?\*/", re.DOTALL)
_EXTERNAL = re.compile(r"""(?:https?:)?//[^\s"'<>()]+""", re.IGNORECASE)
_MARKDOWN = re.compile(r"[\\`*_\[\]~#!]")
_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del",
    "details", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
    "ins", "kbd", "li", "ol", "p", "pre", "s", "small", "span", "strong", "sub", "summary",
    "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul"})
_ATTRIBUTES = {"*": {"class", "id", "style", "title"}, "a": {"href"},
               "img": {"src", "alt", "width", "height"}, "td": {"colspan", "rowspan"},
               "th": {"colspan", "rowspan", "scope"}}
_STYLES = frozenset({"background-color", "border", "border-radius", "color", "font-family",
                     "font-size", "font-style", "font-weight", "margin", "padding",
                     "text-align", "white-space", "width"})
# Wide tables scroll inside the page instead of overflowing it.
_REPORT_CSS = (".jp-RenderedHTMLCommon table, .jp-RenderedMarkdown table "
               "{ display: block; max-width: 100%; overflow-x: auto; }")
_SUMMARY_KEYS = ("step", "run_id", "outcome", "reason", "operator", "started_at",
                 "finished_at", "duration_s", "bgkit_version", "pipeline_id")


def clean_html(fragment: object) -> str:
    """``fragment`` with only the allowed tags, attributes and inline styles kept; script
    and style elements are removed with their content."""
    import nh3

    text = fragment.decode() if isinstance(fragment, bytes) else str(fragment)
    return nh3.clean(text, tags=set(_TAGS), attributes={k: set(v) for k, v in
                                                        _ATTRIBUTES.items()},
                     clean_content_tags={"script", "style"},
                     url_schemes={"http", "https", "mailto", "data"},
                     filter_style_properties=set(_STYLES))


def render_html(nb: Any, *, no_input: bool = False, title: str = "",
                sha256: str | None = None, folder: Path | None = None) -> str:
    """The notebook ``nb`` as one HTML document that loads nothing from the network.

    ``no_input`` hides every code cell's source and prompts and removes the cell papermill
    injected the parameters into (the values stay in the summary and in the notebook).
    ``sha256`` (of the archived file) is shown in the summary; images that markdown
    cells reference by path are read from ``folder``. ``nb`` is not changed.
    """
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    copy = nbformat.from_dict(nb)
    copy.cells.insert(0, nbformat.v4.new_markdown_cell(run_summary(copy, sha256=sha256)))
    exporter = HTMLExporter(  # type: ignore[no-untyped-call]
        template_name="lab", template_file=_TEMPLATE_NAME,
        extra_loaders=[jinja2.DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
        embed_images=True, exclude_input=no_input, exclude_input_prompt=no_input,
        exclude_output_prompt=no_input, sanitize_html=True,
        filters={"clean_html": clean_html})
    if no_input:
        remover = TagRemovePreprocessor(  # type: ignore[no-untyped-call]
            remove_cell_tags={"injected-parameters"})
        exporter.register_preprocessor(remover, enabled=True)  # type: ignore[no-untyped-call]
    metadata = {"name": title, "path": str(folder or Path.cwd())}
    body, _ = exporter.from_notebook_node(copy, resources={"metadata": metadata})
    text = _STYLE.sub(lambda m: m[1] + _URL_COMMENT.sub("", m[2]) + m[3], str(body))
    return text.replace("</head>", f"<style>{_REPORT_CSS}</style></head>", 1)


def run_summary(nb: Any, *, sha256: str | None = None) -> str:
    """The report's first screen, as markdown (values escaped): the headline — outcome,
    who, when, what, release, evidence — then the run's ``metadata.bgkit`` and parameters."""
    from bgkit.runbook.headline import run_headline

    top = run_headline(nb)
    meta = dict(nb.metadata.get("bgkit", {}))
    head = [f"## {markdown_text(top.title)}", "", "| | |", "|---|---|"]
    head += [f"| **{markdown_text(key)}** | {markdown_text(value)} |" for key, value in top.rows]
    rows = [(key, meta[key]) for key in _SUMMARY_KEYS if meta.get(key) not in (None, "")]
    git = meta.get("git") or {}
    if isinstance(git, dict) and git.get("commit"):
        rows.append(("git", f"{git['commit']}{' (dirty)' if git.get('dirty') else ''}"))
    if sha256:
        rows.append(("sha256", sha256))
    parameters = nb.metadata.get("papermill", {}).get("parameters", {})
    rows += [(f"parameter {name}", repr(value)) for name, value in parameters.items()]
    run_id, step = markdown_text(meta.get("run_id", "?")), markdown_text(meta.get("step", "?"))
    lines = [*head, "", f"### Run {run_id} · {step}", "",
             "| field | value |", "|---|---|"]
    lines += [f"| {markdown_text(key)} | {markdown_text(value)} |" for key, value in rows]
    return "\n".join(lines)


def write_report(notebook_path: Path, target: Path, *, no_input: bool = False,
                 runs_dir: Path | None = None, secrets: set[str] | None = None) -> Path:
    """Render the archived notebook at ``notebook_path`` into ``target``; return it.
    Every value in ``secrets`` is scrubbed from the notebook before it is rendered.

    Raises:
        UsageError: ``target`` is inside ``runs_dir`` (the archive is write-once).
    """
    from bgkit.runbook.scrub import scrub

    if runs_dir is not None and target.resolve().is_relative_to(runs_dir.resolve()):
        raise UsageError(f"{target} is inside the run archive {runs_dir}, which is "
                         "write-once evidence; write the report elsewhere")
    data = notebook_path.read_bytes()
    nb = nbformat.reads(data.decode("utf-8"), as_version=4)
    cleaned, _ = scrub(dict(nb), secrets or set())
    nb = nbformat.from_dict(cleaned)
    text = render_html(nb, no_input=no_input, title=notebook_path.stem,
                       sha256=hashlib.sha256(data).hexdigest(), folder=notebook_path.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def default_report_path(runs_dir: Path, notebook_path: Path) -> Path:
    """``<runs dir's parent>/reports/<run file stem>.html``."""
    return runs_dir.resolve().parent / "reports" / f"{notebook_path.stem}.html"


def external_sources(document: str) -> list[str]:
    """Every network address the document would load by itself: ``src`` of scripts,
    images, frames and media, ``href`` of stylesheet links, and URLs inside ``<script>``
    and ``<style>`` bodies. Plain ``<a href>`` hyperlinks are not loads and are left out.
    """
    finder = _SourceFinder()
    finder.feed(document)
    finder.close()
    return finder.found


class _SourceFinder(HTMLParser):
    _LOADING: ClassVar[dict[str, str]] = {
        "script": "src", "img": "src", "iframe": "src", "embed": "src", "source": "src",
        "audio": "src", "video": "src", "object": "data", "link": "href"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = self._LOADING.get(tag)
        for name, value in attrs:
            if value and (name == wanted or name == "srcset") and _EXTERNAL.match(value):
                self.found.append(f"<{tag} {name}={value}>")
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is None:
            return
        for match in _EXTERNAL.finditer(data):
            url = match.group(0)
            if url.startswith("//") and self._in == "script":
                continue  # a JavaScript comment, not an address
            self.found.append(f"<{self._in}> {url}")


def markdown_text(value: object) -> str:
    """``value`` as inert text for markdown (a table cell, a banner): no HTML, no markdown,
    one line."""
    text = _MARKDOWN.sub(lambda m: "\\" + m[0], str(value))
    text = html.escape(text, quote=False).replace("|", "&#124;")
    return " ".join(text.split())
