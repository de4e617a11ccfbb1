"""Decision buttons act once and stay pinned to what the operator saw."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from bgkit.runbook.widgets import DecisionButton, HostProgress


def test_a_decision_button_acts_on_the_first_click_only() -> None:
    calls: list[str] = []

    def action(report: Any) -> tuple[str, str]:
        calls.append("acted")
        report("watching the public address", 10)
        return "switched", "done"

    button = DecisionButton(label="Switch to green, hello-c-2.0.0", action=action)
    assert button.state == "ready"
    button.click()
    button.click()
    button._on_message(button, {"event": "click"}, [])
    assert calls == ["acted"] and button.ignored_clicks == 2
    assert (button.label, button.state, button.countdown_until) == ("switched", "done", 0.0)
    button.state = "ready"  # a stale browser state cannot re-arm it
    button.click()
    assert calls == ["acted"]


def test_a_click_while_the_action_runs_is_ignored() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def action(report: Any) -> tuple[str, str]:
        calls.append(1)
        started.set()
        release.wait(5)
        return "rolled back", "done"

    button = DecisionButton(label="Roll back to blue, 1.0.0", action=action)
    first = threading.Thread(target=button.click)
    first.start()
    assert started.wait(5)
    button.click()  # the double-click, while the first is still moving traffic
    release.set()
    first.join(5)
    assert calls == [1] and button.ignored_clicks == 1 and button.state == "done"


def test_a_disabled_button_never_acts_and_an_error_ends_it_failed() -> None:
    never = DecisionButton(label="x", action=lambda report: ("no", "done"), enabled=False)
    never.click()
    assert never.state == "disabled" and never.ignored_clicks == 1

    def broken(report: Any) -> tuple[str, str]:
        raise RuntimeError("the lock is held by ci@runner")

    failing = DecisionButton(label="y", action=broken)
    failing.click()
    failing.click()
    assert failing.state == "failed" and "the lock is held" in failing.status
    assert failing.ignored_clicks == 1


def test_host_progress_stores_steps_from_any_thread_and_draws_them_escaped() -> None:
    from bgkit.hosts import Host

    progress = HostProgress("deploy to green")
    hosts = [Host(pool="green", index=i, address=f"127.0.2.{i + 1}", port=22, user="deploy",
                  root="/srv/x") for i in range(3)]
    workers = [threading.Thread(target=progress.update, args=(host, "upload <b>"))
               for host in hosts]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert "127.0.2.2" not in progress.widget.value  # not drawn until refreshed
    progress.refresh()
    for host in hosts:
        assert host.address in progress.widget.value
    assert "upload &lt;b&gt;" in progress.widget.value and "<b>upload" not in progress.widget.value
    assert len(progress.lines()) == 3


def test_a_decision_is_refused_when_the_live_pool_changed_since_the_preview(
        tmp_path: Path) -> None:
    from bgkit.runbook.decisions import act
    from bgkit.runbook.steps import Preview
    from bgkit.testing import FakeFleet

    with FakeFleet(blue="1.0.0", green="2.0.0") as fleet:
        config = fleet.config(tmp_path)
        for action in ("switch", "rollback"):
            preview = Preview(action, result=None, live="green",  # type: ignore[arg-type]
                              target="blue", version="1.0.0", release="")
            outcome = act(config, lb=fleet.lb, preview=preview)  # blue is live, not green
            assert outcome.ended == "refused" and fleet.lb.live_pool() == "blue"
            assert "the live pool changed since the preview (green then, blue now)" in \
                outcome.reason


def verify_result(idle_version: str, expected: str) -> Any:
    from bgkit.analysis import evaluate
    from bgkit.config import GatesConfig
    from bgkit.verify import VerifyResult
    from tests.unit.sample_factory import make_samples

    frames = [make_samples([1.0] * 60, pool="green", host=f"127.0.2.{i}",
                           version=idle_version, errors="" if idle_version == expected else
                           "wrong_version", wrong_version=idle_version) for i in (1, 2)]
    frames += [make_samples([1.0] * 60, pool="blue", host=f"127.0.1.{i}", version="1.0.0")
               for i in (1, 2)]
    import pandas as pd

    samples = pd.concat(frames, ignore_index=True)
    gates = GatesConfig(min_samples_per_host=50)
    verdict = evaluate(samples, gates, idle_pool="green", live_pool="blue",
                       expected_version=expected)
    return VerifyResult(idle_pool="green", live_pool="blue", expected_version=expected,
                        samples=samples, comparison=verdict.comparison, verdict=verdict,
                        lb_servers=())


def test_the_headline_gives_the_verdict_and_a_wrong_release_as_one_cause() -> None:
    from bgkit.runbook.evidence import headline

    good = headline(verify_result("2.0.0", "2.0.0"))
    assert good.title == "green idle 2.0.0 vs blue live 1.0.0: 9/9 gates pass"
    assert good.cause == "" and good.verdict == "pass"
    wrong = headline(verify_result("1.9.0", "2.0.0"))
    assert wrong.verdict == "fail"
    assert wrong.title.startswith("green idle 1.9.0 vs blue live 1.0.0: ")
    assert wrong.cause.startswith("wrong release: idle host(s) not serving 2.0.0")
    assert "(errors, consecutive_failures fail because of it)" in wrong.cause


def test_the_compact_summary_shows_error_columns_only_when_errors_occurred() -> None:
    from bgkit.runbook.evidence import compact_summary

    clean = compact_summary(verify_result("2.0.0", "2.0.0").verdict.summary)
    assert list(clean.columns) == ["pool", "host", "samples", "errors", "p50_ms", "p95_ms",
                                   "p99_ms", "version"]
    wrong = compact_summary(verify_result("1.9.0", "2.0.0").verdict.summary)
    assert "wrong_version" in wrong.columns and "timeout" not in wrong.columns


def test_a_disabled_button_stays_disabled_whatever_the_browser_sends() -> None:
    calls: list[int] = []

    def action(report: Any) -> tuple[str, str]:
        calls.append(1)
        return "switched", "done"

    button = DecisionButton(label="Switch", action=action, enabled=False)
    button.set_state({"state": "busy"})  # what a widget update from the browser does
    button._on_message(button, {"event": "click"}, [])
    button.set_state({"state": "ready"})
    button.click()
    assert calls == [] and button.ignored_clicks == 2
