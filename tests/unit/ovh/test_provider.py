"""The ovh-iplb provider through python-ovh against the emulator: reads, switch, failures."""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bgkit.errors import ApplyPending, LoadBalancerError
from bgkit.lb.ovh_iplb import OvhIplbProvider
from bgkit.sandbox.processes import free_port
from tests.unit.ovh.conftest import ADMIN_CK, FARMS, FRONTEND_ID, SN, Harness

FRONTEND = f"/ipLoadbalancing/{SN}/http/frontend/{FRONTEND_ID}"
QUERY_ID = re.compile(r"\(OVH query id EMU\.ext-1\.[0-9a-f]+\.\d+\.\d+\)")


def calls(iplb: Harness, method: str) -> list[tuple[str, object]]:
    return [(e["path"], e["body"]) for e in iplb.journal() if e["method"] == method]


def test_the_live_pool_is_the_pool_of_the_frontends_default_farm(iplb: Harness) -> None:
    provider = iplb.provider()
    assert provider.live_pool() == "blue"
    iplb.client().put(FRONTEND, defaultFarmId=77213)
    iplb.client().post(f"/ipLoadbalancing/{SN}/refresh")
    time.sleep(0.3)
    assert provider.live_pool() == "green"


def test_open_sessions_says_ovhcloud_cannot_tell_and_asks_nothing(iplb: Harness) -> None:
    provider = iplb.provider()
    before = len(iplb.journal())
    assert provider.open_sessions("blue") is None
    assert len(iplb.journal()) == before


def test_a_canary_split_is_refused_with_the_reason_and_asks_nothing(iplb: Harness) -> None:
    from bgkit.errors import SplitUnsupported

    provider = iplb.provider()
    before = len(iplb.journal())
    with pytest.raises(SplitUnsupported, match="routes match request fields"):
        provider.split("green", 25, timeout_s=1)
    assert len(iplb.journal()) == before


def test_a_default_farm_that_is_neither_pool_is_named(iplb: Harness) -> None:
    provider = iplb.provider(farm_ids={"blue": 77212, "green": 1})
    iplb.client().put(FRONTEND, defaultFarmId=77213)
    with pytest.raises(LoadBalancerError, match=r"farm 77213, which is neither blue \(77212\) "
                                                r"nor green \(1\)"):
        provider.live_pool()


def test_the_live_pool_is_not_guessed_while_changes_are_staged(iplb: Harness) -> None:
    iplb.client().put(FRONTEND, displayName="someone else's edit")
    with pytest.raises(LoadBalancerError, match=r"staged but not applied \(1 in zone gra\).*"
                                                r"will not guess the live pool"):
        iplb.provider().live_pool()


def test_switch_puts_only_the_default_farm_refreshes_the_zone_and_waits_for_done(
        iplb: Harness) -> None:
    provider = iplb.provider()
    result = provider.switch("green", timeout_s=5)
    assert (result.previous, result.live) == ("blue", "green")
    assert 0.1 <= result.applied_s < 2  # the emulator's refresh takes 0.1 s
    assert iplb.plane.applied == [77213]
    assert calls(iplb, "PUT") == [(FRONTEND, {"defaultFarmId": 77213})]
    assert calls(iplb, "POST") == [(f"/ipLoadbalancing/{SN}/refresh", {"zone": "gra"})]
    assert provider.live_pool() == "green"
    assert provider.switch("blue", timeout_s=5).live == "blue"
    assert iplb.plane.applied == [77213, 77212]


def test_switching_to_the_live_pool_changes_nothing(iplb: Harness) -> None:
    result = iplb.provider().switch("blue", timeout_s=5)
    assert (result.previous, result.live) == ("blue", "blue")
    assert calls(iplb, "PUT") == [] and calls(iplb, "POST") == []


def test_switch_refuses_while_unrelated_changes_are_staged_and_says_which(
        iplb: Harness) -> None:
    iplb.client().put(FRONTEND, displayName="half-done edit")
    with pytest.raises(LoadBalancerError, match=r"will not switch.*\(1 in zone gra\).*would "
                                                r"apply them too; nothing was changed"):
        iplb.provider().switch("green", timeout_s=5)
    assert [path for path, _ in calls(iplb, "PUT")] == [FRONTEND]  # only the test's own


def test_switch_waits_for_another_refresh_then_goes_on(iplb: Harness) -> None:
    iplb.faults(refresh_delay_s=0.3)
    iplb.client().post(f"/ipLoadbalancing/{SN}/refresh")
    started = time.monotonic()
    assert iplb.provider().switch("green", timeout_s=5).live == "green"
    assert time.monotonic() - started >= 0.55  # the other refresh, then its own


def test_switch_refuses_when_another_refresh_is_still_running_at_the_deadline(
        iplb: Harness) -> None:
    iplb.faults(task_outcome="doing", refresh_delay_s=0.01)
    task = iplb.client().post(f"/ipLoadbalancing/{SN}/refresh")
    with pytest.raises(LoadBalancerError, match=rf"still in progress after 0.3 s \(task "
                                                rf"{task['id']} doing 50%\); nothing was changed"):
        iplb.provider().switch("green", timeout_s=0.3)
    assert calls(iplb, "PUT") == []


def test_a_500_on_the_put_changes_nothing_and_keeps_the_query_id(iplb: Harness) -> None:
    iplb.faults(error_next=1, error_match="PUT *")
    with pytest.raises(LoadBalancerError) as raised:
        iplb.provider().switch("green", timeout_s=5)
    message = str(raised.value)
    assert "OVHcloud failed PUT" in message and "HTTP 500: Internal server error" in message
    assert QUERY_ID.search(message)
    assert "nothing was changed, blue still serves traffic" in message
    assert iplb.frontend()["defaultFarmId"] == 77212 and iplb.pending() == []


def test_a_500_on_the_refresh_sets_the_frontend_back_and_says_the_lb_is_consistent(
        iplb: Harness) -> None:
    iplb.faults(error_next=1, error_match="POST */refresh")
    provider = iplb.provider()
    with pytest.raises(LoadBalancerError) as raised:
        provider.switch("green", timeout_s=5)
    message = str(raised.value)
    assert "the refresh was not started" in message and QUERY_ID.search(message)
    assert "no refresh task runs, so nothing applied it" in message
    assert "bgkit set frontend 70089 of IPLB loadbalancer-test back to farm 77212 (blue)" \
        in message
    assert message.endswith("nothing is pending, blue serves traffic")
    assert iplb.frontend()["defaultFarmId"] == 77212 and iplb.pending() == []
    assert provider.live_pool() == "blue" and iplb.plane.applied == []
    assert provider.switch("green", timeout_s=5).live == "green"  # a retry just works


@pytest.mark.parametrize("outcome", ["error", "cancelled"])
def test_a_failed_refresh_task_is_undone_and_reported(iplb: Harness, outcome: str) -> None:
    iplb.faults(task_outcome=outcome)
    provider = iplb.provider()
    with pytest.raises(LoadBalancerError, match=rf"refresh task \d+ ended in '{outcome}'; bgkit "
                                                r"set .* back to farm 77212 \(blue\).*nothing "
                                                r"is pending, blue serves traffic"):
        provider.switch("green", timeout_s=5)
    assert provider.live_pool() == "blue" and iplb.plane.applied == []


def test_a_data_plane_failure_is_a_failed_task_too(iplb: Harness) -> None:
    iplb.plane.refuse = "haproxy: no such backend"
    with pytest.raises(LoadBalancerError, match="ended in 'error'"):
        iplb.provider().switch("green", timeout_s=5)
    assert iplb.frontend()["defaultFarmId"] == 77212


def test_a_task_stuck_past_the_deadline_is_left_alone_and_explained(iplb: Harness) -> None:
    iplb.faults(task_outcome="doing", refresh_delay_s=0.05)
    started = time.monotonic()
    with pytest.raises(LoadBalancerError) as raised:
        iplb.provider().switch("green", timeout_s=0.5)
    elapsed = time.monotonic() - started
    message = str(raised.value)
    assert 0.5 <= elapsed < 1.5
    assert re.search(r"did not finish in 0.5 s: refresh task (\d+) is still 'doing' \(50%\)",
                     message)
    assert "staged to farm 77213 (green) and a refresh may still apply it" in message
    assert "'error' or 'cancelled' means blue still is" in message
    assert iplb.frontend()["defaultFarmId"] == 77213  # not raced


def test_a_task_past_the_deadline_is_apply_pending_and_state_follows_it(
        iplb: Harness) -> None:
    iplb.faults(refresh_delay_s=1.0)
    provider = iplb.provider()
    with pytest.raises(ApplyPending):
        provider.switch("green", timeout_s=0.2)
    now = provider.state()
    assert now.live is None and now.staged == "green" and "in progress" in now.applying
    settled = provider.state(wait_s=5)
    assert settled.settled and settled.live == "green"


def test_state_never_guesses_while_a_change_is_staged(iplb: Harness) -> None:
    iplb.client().put(FRONTEND, defaultFarmId=77213)
    state = iplb.provider().state()
    assert (state.live, state.staged, state.pending, state.applying) == (None, "green", 1, "")
    assert "unknown: 1 change(s) staged but not applied" in state.describe()


def test_discard_staged_sets_the_frontend_back_without_a_refresh(iplb: Harness) -> None:
    iplb.client().put(FRONTEND, defaultFarmId=77213)
    after = iplb.provider().discard_staged("blue")
    assert after.settled and after.live == "blue"
    assert iplb.pending() == [] and calls(iplb, "POST") == []


def test_discard_staged_refuses_while_a_refresh_runs_or_other_changes_stay(
        iplb: Harness) -> None:
    provider = iplb.provider()
    iplb.client().put(FRONTEND, defaultFarmId=77213, displayName="someone else's edit")
    with pytest.raises(LoadBalancerError, match="someone else staged changes too"):
        provider.discard_staged("blue")
    iplb.faults(task_outcome="doing")
    iplb.client().post(f"/ipLoadbalancing/{SN}/refresh")
    with pytest.raises(LoadBalancerError, match="a refresh is in progress"):
        provider.discard_staged("blue")


def test_a_blocked_task_says_only_ovhcloud_can_unblock_it(iplb: Harness) -> None:
    iplb.faults(task_outcome="blocked", refresh_delay_s=0.05)
    with pytest.raises(LoadBalancerError, match=r"still 'blocked'.*contact OVHcloud support"):
        iplb.provider().switch("green", timeout_s=0.3)


def test_losing_the_task_while_polling_leaves_the_staged_change_alone(iplb: Harness) -> None:
    iplb.faults(refresh_delay_s=1.0)
    provider = iplb.provider()

    def break_polling() -> None:
        time.sleep(0.15)
        iplb.faults(error_ratio=1.0, error_match="GET */task/*")

    threading.Thread(target=break_polling).start()
    with pytest.raises(LoadBalancerError, match=r"cannot follow refresh task \d+ .*OVH query "
                                                r"id.*bgkit left it as is"):
        provider.switch("green", timeout_s=5)


def test_a_slow_api_past_the_request_timeout_is_no_answer_in_time(iplb: Harness) -> None:
    iplb.faults(delay_s=0.5)
    with pytest.raises(LoadBalancerError, match=r"cannot reach the OVHcloud API at "
                                                r"http://127.0.0.1:\d+/1.0 for GET .*no answer "
                                                r"in time"):
        iplb.provider(request_timeout_s=0.2).live_pool()


def test_an_endpoint_nobody_listens_on_is_named(iplb: Harness) -> None:
    url = f"http://127.0.0.1:{free_port()}/1.0"
    with pytest.raises(LoadBalancerError, match=rf"cannot reach the OVHcloud API at {url} .*"
                                                r"Connection refused"):
        iplb.provider(endpoint=url).live_pool()


def test_backend_health_maps_each_servers_state_in_both_farms(iplb: Harness) -> None:
    iplb.plane.checks[("127.0.1.1", 8080)] = ("UP", "L7OK")
    iplb.plane.checks[("127.0.2.1", 8080)] = ("DOWN", "L4CON")
    servers = iplb.provider().backend_health()
    assert [(s.pool, s.name, s.address, s.port, s.status, s.healthy) for s in servers] == [
        ("blue", "blue-1", "127.0.1.1", 8080, "UP", True),
        ("blue", "blue-2", "127.0.1.2", 8080, "unknown", False),
        ("green", "green-1", "127.0.2.1", 8080, "DOWN", False),
        ("green", "green-2", "127.0.2.2", 8080, "unknown", False)]
    assert servers[0].detail == "L7OK 200" and servers[2].detail == "L4CON"


def test_a_missing_farm_names_its_config_key(iplb: Harness,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVH_CONSUMER_KEY", ADMIN_CK)  # bgkit's own key would be refused
    with pytest.raises(LoadBalancerError, match=r"no HTTP farm 5 of IPLB loadbalancer-test "
                                                r"\(The requested object \(farmId = 5\) does "
                                                r"not exist\); check \[lb.ovh_iplb\]"
                                                r".farm_ids.green"):
        iplb.provider(farm_ids={"blue": 77212, "green": 5}).backend_health()


def test_a_missing_service_says_to_check_the_service_name(
        iplb: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVH_CONSUMER_KEY", ADMIN_CK)
    with pytest.raises(LoadBalancerError, match=r"no IPLB service other-lb .*This service does "
                                                r"not exist.*\[lb.ovh_iplb\].service_name"):
        iplb.provider(service_name="other-lb").live_pool()


def test_keys_without_the_rule_name_the_rule_and_the_command(
        iplb: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    request = iplb.client().new_consumer_key_request()
    request.add_rule("GET", f"/ipLoadbalancing/{SN}/*")
    grant = request.request()
    _validate(grant["validationUrl"])
    monkeypatch.setenv("OVH_CONSUMER_KEY", grant["consumerKey"])
    with pytest.raises(LoadBalancerError) as raised:
        iplb.provider().switch("green", timeout_s=5)
    message = str(raised.value)
    assert f"no access rule `PUT {FRONTEND}`" in message
    assert f"`bgkit ovh consumer-key --service {SN}`" in message and QUERY_ID.search(message)
    assert grant["consumerKey"] not in message


def _validate(url: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    opener.open(urllib.request.Request(url, data=b"", method="POST"), timeout=5).close()


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("OVH_APPLICATION_SECRET", "WrongSecret0123456789abcdefghijk",
     r"rejected the signature .*check OVH_APPLICATION_SECRET"),
    ("OVH_CONSUMER_KEY", "UnknownConsumerKey0123456789abcd",
     r"does not know the consumer key .*bgkit ovh consumer-key --service"),
    ("OVH_APPLICATION_KEY", "UnknownAppKey123",
     r"refused the application key .*OVH_APPLICATION_KEY"),
])
def test_bad_keys_say_which_key_to_fix_and_never_show_it(
        iplb: Harness, monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
        expected: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(LoadBalancerError, match=expected) as raised:
        iplb.provider().live_pool()
    assert value not in str(raised.value) and QUERY_ID.search(str(raised.value))


def test_missing_keys_name_the_variables_and_the_ovh_conf_section(
        iplb: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVH_CONSUMER_KEY")
    url = re.escape(iplb.url)
    with pytest.raises(LoadBalancerError, match=rf"no OVHcloud consumer_key found for endpoint "
                                                rf"{url}: set OVH_CONSUMER_KEY or put "
                                                rf"consumer_key in the \[{url}\] section of "
                                                r"ovh.conf"):
        iplb.provider()


def test_keys_can_come_from_an_ovh_conf_file_in_the_endpoints_section(
        iplb: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    names = ("application_key", "application_secret", "consumer_key")
    conf = tmp_path / "ovh.conf"
    conf.write_text(f"[{iplb.url}]\n" + "".join(
        f"{name}={os.environ['OVH_' + name.upper()]}\n" for name in names))
    for name in names:
        monkeypatch.delenv(f"OVH_{name.upper()}")
    provider = OvhIplbProvider.from_settings(iplb.settings(), config_file=conf)
    assert provider.farms == FARMS
    assert provider.live_pool() == "blue"
