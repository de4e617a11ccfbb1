"""The runbooks' interactive parts: a decision button that acts once, per-host progress.

:class:`DecisionButton` is the one way an operator moves traffic from JupyterLab. It acts
**at most once**: the browser disables it on the first click, before the kernel hears of
it (a double-click sends one request); the kernel ignores every click after the first,
while the action runs and after it ended (a stale or replayed click does nothing); and
it is **pinned** to what the operator was shown — the action it runs checks that the
load balancer and the release still match, and refuses otherwise. While the action runs
the button shows each step and, during the post-switch watch, a countdown.

:class:`HostProgress` is a per-host table updated as a deploy goes, drawn from the
kernel's main thread (prints from the fan-out's worker threads are dropped by JupyterLab
inside a button's output).
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from typing import Any

import anywidget
import ipywidgets
import traitlets

from bgkit.hosts import Host

__all__ = ["DecisionButton", "HostProgress"]

_ESM = """
function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "bgkit-decision";
  const button = document.createElement("button");
  button.className = "bgkit-decision-button jupyter-button";
  const status = document.createElement("div");
  status.className = "bgkit-decision-status";
  box.append(button, status);
  el.append(box);
  let ticker = null;

  function draw() {
    const state = model.get("state");
    button.textContent = model.get("label");
    button.disabled = state !== "ready";
    button.dataset.state = state;
    box.dataset.state = state;
    let text = model.get("status");
    const until = model.get("countdown_until");
    if (until > 0) {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      text += ` (${left} s left)`;
    }
    status.textContent = text;  // text, never markup
  }
  button.addEventListener("click", () => {
    if (model.get("state") !== "ready") return;
    model.set("state", "busy");  // disabled here and now, before the kernel hears
    model.set("status", "sent; waiting for the kernel");
    model.save_changes();
    model.send({ event: "click" });
    draw();
  });
  model.on("change", draw);
  ticker = setInterval(() => { if (model.get("countdown_until") > 0) draw(); }, 500);
  draw();
  return () => clearInterval(ticker);
}
export default { render };
"""

_CSS = """
.bgkit-decision { display: flex; flex-direction: column; gap: 0.4em; margin: 0.3em 0; }
.bgkit-decision-button { width: fit-content; min-width: 22em; padding: 0.4em 1.2em;
  font-weight: bold; border-radius: 4px; border: 1px solid #842029; color: #fff;
  background: #b02a37; cursor: pointer; }
.bgkit-decision-button:disabled { background: #adb5bd; border-color: #6c757d;
  cursor: default; }
.bgkit-decision[data-state="done"] .bgkit-decision-button:disabled { background: #198754;
  border-color: #0f5132; }
.bgkit-decision[data-state="failed"] .bgkit-decision-button:disabled { background: #b02a37; }
.bgkit-decision-status { font-family: var(--jp-code-font-family, monospace); }
"""


class DecisionButton(anywidget.AnyWidget):
    """A button that runs ``action`` once, on its first click.

    ``action(report)`` does the work; ``report(text, countdown_s=None)`` shows a step under
    the button (with a countdown of ``countdown_s`` seconds when given). It returns
    ``(final_label, final_state)``: ``state`` is ``done`` or ``failed``. An exception from
    ``action`` ends the button as ``failed`` with the error shown. Clicks after the first
    are ignored, whatever the browser sends.
    """

    _esm = _ESM
    _css = _CSS
    label = traitlets.Unicode("").tag(sync=True)
    state = traitlets.Unicode("ready").tag(sync=True)  # ready | busy | done | failed
    status = traitlets.Unicode("").tag(sync=True)
    countdown_until = traitlets.Float(0.0).tag(sync=True)  # epoch ms; 0: no countdown

    def __init__(self, *, label: str, action: Callable[[Callable[..., None]], tuple[str, str]],
                 enabled: bool = True, status: str = "") -> None:
        super().__init__(label=label, state="ready" if enabled else "disabled", status=status)
        self._action = action
        self._acted = False
        self._guard = threading.Lock()
        self.ignored_clicks = 0
        self.on_msg(self._on_message)

    def click(self) -> None:
        """What a click from the browser does (tests call it directly)."""
        with self._guard:
            if self._acted or self.state == "disabled":
                self.ignored_clicks += 1
                return
            self._acted = True
        self.state = "busy"
        try:
            label, state = self._action(self._report)
        except Exception as error:
            label, state = "failed", "failed"
            self.status = f"error: {error}"
        self.countdown_until = 0.0
        self.label, self.state = label, state

    def _on_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "click":
            self.click()

    def _report(self, text: str, countdown_s: float | None = None) -> None:
        self.status = text
        self.countdown_until = (time.time() + countdown_s) * 1000 if countdown_s else 0.0


class HostProgress:
    """Per-host progress for a fan-out: an HTML table widget, one row per host.

    ``update`` may be called from any thread (the fan-out's workers); it only stores the
    step. ``refresh`` redraws the table and must be called from the kernel's main thread
    (``Fleet.each`` calls it while it waits).
    """

    def __init__(self, title: str) -> None:
        self.widget = ipywidgets.HTML()
        self._title = title
        self._steps: dict[str, tuple[str, float]] = {}
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._drawn = ""
        self.refresh()

    def update(self, host: Host, step: str) -> None:
        with self._lock:
            self._steps[host.label] = (step, time.monotonic() - self._started)

    def refresh(self) -> None:
        with self._lock:
            rows = sorted(self._steps.items())
        text = _progress_table(self._title, rows)
        if text != self._drawn:
            self.widget.value = self._drawn = text

    def lines(self) -> list[str]:
        """The latest step of every host, as text (for the plain record)."""
        with self._lock:
            return [f"{label}: {step}" for label, (step, _) in sorted(self._steps.items())]


def _progress_table(title: str, rows: list[tuple[str, tuple[str, float]]]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(label)}</td><td style=\"{_step_style(step)}\">"
        f"{html.escape(step)}</td><td style=\"text-align:right\">{elapsed:.1f} s</td></tr>"
        for label, (step, elapsed) in rows) or \
        "<tr><td colspan=\"3\">waiting for the first host</td></tr>"
    return (f"<b>{html.escape(title)}</b><table><thead><tr><th>host</th><th>step</th>"
            f"<th>at</th></tr></thead><tbody>{body}</tbody></table>")


def _step_style(step: str) -> str:
    if step.startswith("failed"):
        return "color:#842029;font-weight:bold"
    return "color:#0f5132;font-weight:bold" if step == "done" else ""
