"""Hooks around deploy, switch and rollback: a failing pre_* hook stops its step before any
change; every hook's exit code, duration and output tail reach the outcome and the record."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgkit.config import Config, HooksConfig
from bgkit.hooks import hook_environment, pre_hook, run_hook
from bgkit.switch import rollback, switch
from bgkit.testing import FakeFleet

DUMP_ENV = ("import json, os, sys; print('hook said hello'); "
            "json.dump({k: v for k, v in os.environ.items() if k.startswith('BGKIT_')}, "
            "open(sys.argv[1], 'w'))")


@pytest.fixture
def fleet() -> Iterator[FakeFleet]:
    with FakeFleet(blue="1.0.0", green="2.0.0") as running:
        yield running


def with_hooks(config: Config, **hooks: object) -> Config:
    return config.model_copy(update={"hooks": HooksConfig.model_validate(hooks)})


def test_a_failing_pre_switch_hook_refuses_the_switch_and_nothing_moves(
        fleet: FakeFleet, tmp_path: Path) -> None:
    config = with_hooks(fleet.config(tmp_path), pre_switch=[
        sys.executable, "-c", "print('migration failed: table locked'); raise SystemExit(3)"])
    outcome = switch(config, lb=fleet.lb,
                     ledger=fleet.ledger, expected_version="2.0.0", approve=True)
    assert outcome.ended == "refused" and fleet.lb.applied == "blue"
    assert "the pre_switch hook" in outcome.reason and "exited with 3" in outcome.reason
    (hook,) = outcome.to_dict()["hooks"]
    assert (hook["name"], hook["exit_code"], hook["ok"]) == ("pre_switch", 3, False)
    assert "table locked" in hook["output_tail"]


def test_switch_and_rollback_hooks_see_what_the_step_is_about(
        fleet: FakeFleet, tmp_path: Path) -> None:
    seen = {name: tmp_path / f"{name}.json" for name in ("pre", "post", "back")}
    config = with_hooks(
        fleet.config(tmp_path),
        pre_switch=[sys.executable, "-c", DUMP_ENV, str(seen["pre"])],
        post_switch=[sys.executable, "-c", DUMP_ENV, str(seen["post"])],
        post_rollback=[sys.executable, "-c", DUMP_ENV, str(seen["back"])])
    went = switch(config, lb=fleet.lb, ledger=fleet.ledger, expected_version="2.0.0", approve=True,
                  release=fleet.pools["green"].release)
    assert went.ended == "switched", went.reason
    assert [hook["name"] for hook in went.to_dict()["hooks"]] == ["pre_switch", "post_switch"]
    pre = json.loads(seen["pre"].read_text())
    assert (pre["BGKIT_HOOK"], pre["BGKIT_POOL"], pre["BGKIT_LIVE_POOL"]) == \
        ("pre_switch", "green", "blue")
    assert pre["BGKIT_RELEASE"] == fleet.pools["green"].release and pre["BGKIT_VERSION"] == "2.0.0"
    assert pre["BGKIT_HOSTS"].split() == list(fleet.lb.addresses["green"])
    assert all(url.startswith("http://127.0.92.") for url in pre["BGKIT_HOST_URLS"].split())
    post = json.loads(seen["post"].read_text())
    assert (post["BGKIT_HOOK"], post["BGKIT_LIVE_POOL"]) == ("post_switch", "green")
    back = rollback(config, lb=fleet.lb, ledger=fleet.ledger, approve=True)
    assert back.ended == "rolled back", back.reason
    assert json.loads(seen["back"].read_text())["BGKIT_POOL"] == "blue"


def test_a_hook_that_runs_too_long_is_killed_and_one_that_cannot_start_says_why(
        fleet: FakeFleet, tmp_path: Path) -> None:
    config = with_hooks(fleet.config(tmp_path), timeout_s=1,
                        pre_deploy=[sys.executable, "-c", "import time; time.sleep(30)"],
                        post_deploy=[str(tmp_path / "missing-script")])
    environment = hook_environment(config, "pre_deploy", pool="green", live_pool="blue")
    slow = run_hook(config, "pre_deploy", environment)
    assert slow is not None and slow.exit_code is None
    assert slow.problem == "timed out after 1 s and was killed"
    missing = run_hook(config, "post_deploy", environment)
    assert missing is not None and "could not start" in missing.problem
    from bgkit.errors import HookFailed

    with pytest.raises(HookFailed, match="nothing was changed"):
        pre_hook(config, "pre_deploy", environment)
    assert run_hook(config, "pre_switch", environment) is None  # not set: nothing runs


def test_hook_arguments_refuse_control_characters(fleet: FakeFleet, tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="without control characters"):
        HooksConfig.model_validate({"pre_deploy": ["migrate", "--to\nrm -rf /"]})


def test_secrets_a_hook_prints_never_reach_its_record(
        fleet: FakeFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIGRATION_DB_PASSWORD", "hunter2-from-the-vault")
    noisy = ("import os; print('connecting with', os.environ['MIGRATION_DB_PASSWORD']); "
             "print('url postgres://app:s3cr3t-in-url@127.0.0.1/db'); "
             "print('api_token=tok-123456789 retries: 3'); print('monkey=banana')")
    config = with_hooks(fleet.config(tmp_path), pre_switch=[sys.executable, "-c", noisy])
    result = run_hook(config, "pre_switch",
                      hook_environment(config, "pre_switch", pool="green", live_pool="blue"))
    assert result is not None and result.ok
    tail = result.output_tail
    for secret in ("hunter2-from-the-vault", "s3cr3t-in-url", "tok-123456789"):
        assert secret not in tail
    assert "connecting with ***" in tail and "postgres://app:***@127.0.0.1/db" in tail
    assert "api_token=***" in tail and "retries: 3" in tail and "monkey=banana" in tail


def test_redaction_is_a_rule_not_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from bgkit.hooks import redact

    monkeypatch.delenv("MIGRATION_DB_PASSWORD", raising=False)
    assert redact("DB_PASS: 'abc' and Authorization=xyz", None) == \
        "DB_PASS: '***' and Authorization=***"
    assert redact("version=2.0.0 pool: green", None) == "version=2.0.0 pool: green"
    assert redact("https://user:pw@h/x https://h/x?a=b", None) == \
        "https://user:***@h/x https://h/x?a=b"


def test_a_failing_pre_deploy_hook_raises_before_anything(
        fleet: FakeFleet, tmp_path: Path) -> None:
    from bgkit.errors import HookFailed

    config = with_hooks(fleet.config(tmp_path), pre_deploy=[
        sys.executable, "-c", "print('schema v7 needs v6 first'); raise SystemExit(2)"])
    environment = hook_environment(config, "pre_deploy", pool="green", live_pool="blue")
    with pytest.raises(HookFailed, match="pre_deploy hook .* exited with 2: nothing was "
                                         "changed") as failed:
        pre_hook(config, "pre_deploy", environment)
    assert failed.value.result.exit_code == 2
    assert "schema v7 needs v6 first" in str(failed.value)


def test_hook_output_is_shown_as_text_never_markup() -> None:
    from bgkit.runbook.decisions import hooks_html

    shown = hooks_html([{"name": "pre_switch", "argv": ["run<b>"], "ok": False,
                         "problem": "exited with 1", "duration_s": 0.25,
                         "output_tail": "<img src=x onerror=alert(1)>"}])
    assert "<img" not in shown and "&lt;img src=x onerror=alert(1)&gt;" in shown
    assert "run&lt;b&gt;" in shown and "exited with 1 in 0.2 s" in shown
    assert hooks_html([]) == ""


@pytest.mark.parametrize(("said", "kept"), [
    ('{"password": "hunter2-json"}', '{"password": "***"}'),
    ("> Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "> Authorization: Bearer ***"),
    ("proxy-authorization: Basic dXNlcjpwYXNz", "proxy-authorization: Basic ***"),
    ("sent bearer tok_live_123 to the API", "sent bearer *** to the API"),
    ('DB_PASSWORD="two words"', 'DB_PASSWORD="***"'),
    ("PASSWORD: 'a b c' then", "PASSWORD: '***' then"),
    ("password=\"a'b\" next", 'password="***" next'),
    ('DB_PASSWORD="cut-off-line', 'DB_PASSWORD="***'),
    ('{"password": "ab\\"cd", "user": "bob"}', '{"password": "***", "user": "bob"}'),
    ("The bearer of bad news", "The bearer of bad news"),
])
def test_common_secret_formats_are_redacted_whole(said: str, kept: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from bgkit.hooks import redact

    monkeypatch.delenv("MIGRATION_DB_PASSWORD", raising=False)
    assert redact(said, None) == kept


def test_a_secret_in_the_hooks_own_arguments_never_reaches_the_record(
        fleet: FakeFleet, tmp_path: Path) -> None:
    from bgkit.errors import HookFailed

    config = with_hooks(fleet.config(tmp_path), pre_switch=[
        sys.executable, "-c", "import sys; sys.exit(4)",
        "--db=postgres://app:S3cretPw@127.0.0.1/x", "--password=hunter2"])
    environment = hook_environment(config, "pre_switch", pool="green", live_pool="blue")
    with pytest.raises(HookFailed) as failed:
        pre_hook(config, "pre_switch", environment)
    kept = json.dumps(failed.value.result.to_dict()) + str(failed.value)
    assert "S3cretPw" not in kept and "hunter2" not in kept
    assert "postgres://app:***@127.0.0.1/x" in kept and "--password=***" in kept


def test_ctrl_c_while_a_hook_runs_kills_the_hook_too(fleet: FakeFleet, tmp_path: Path) -> None:
    """The hook runs in a session of its own, so the terminal's SIGINT never reaches it:
    bgkit kills its process group before the interrupt goes on."""
    import os
    import signal
    import threading
    import time

    marker = tmp_path / "still-running"
    config = with_hooks(fleet.config(tmp_path), timeout_s=60, pre_switch=[
        sys.executable, "-c", f"import time; time.sleep(2); open({str(marker)!r}, 'w')"])
    environment = hook_environment(config, "pre_switch", pool="green", live_pool="blue")
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        run_hook(config, "pre_switch", environment)
    time.sleep(3)
    assert not marker.exists()


def test_a_process_that_left_the_hooks_group_does_not_hold_the_timeout_open(
        fleet: FakeFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A grandchild in its own session keeps the output pipe open after the kill: bgkit
    reads it for REAP_S more at most, then goes on with what it has."""
    import time

    from bgkit import hooks

    monkeypatch.setattr(hooks, "REAP_S", 1.0)
    config = with_hooks(fleet.config(tmp_path), timeout_s=1, pre_deploy=[
        sys.executable, "-c", "import subprocess, time; print('started', flush=True); "
        "subprocess.Popen(['setsid', 'sleep', '20']); time.sleep(30)"])
    started = time.monotonic()
    result = run_hook(config, "pre_deploy",
                      hook_environment(config, "pre_deploy", pool="green", live_pool="blue"))
    took = time.monotonic() - started
    assert result is not None and result.problem == "timed out after 1 s and was killed"
    assert "started" in result.output_tail
    assert took < 10, took  # not the grandchild's 20 s
