"""The ovh-cloud-lb provider through python-ovh against the emulator: reads, switch,
provisioning, failures, drift."""

from __future__ import annotations

import re
import threading

import pytest

from bgkit.errors import ApplyPending, LoadBalancerError
from bgkit.sandbox.ovh_api.cloud_seed import stable_id
from tests.unit.ovh.conftest import (
    ADMIN_CK,
    CLOUD,
    CLOUD_HOSTS,
    LB_ID,
    LISTENER_ID,
    POOLS,
    PROJECT,
    REGION,
    CloudHarness,
    running_cloud_emulator,
)

LISTENER = f"{CLOUD}/listener/{LISTENER_ID}"
QUERY_ID = re.compile(r"\(OVH query id EMU\.ext-1\.[0-9a-f]+\.\d+\.\d+\)")


def calls(cloud: CloudHarness, method: str) -> list[tuple[str, object]]:
    return [(e["path"], e["body"]) for e in cloud.journal() if e["method"] == method]


def up(cloud: CloudHarness, *addresses: str) -> None:
    for address in addresses:
        cloud.plane.checks[(address, 8080)] = ("UP", "L7OK")


def test_the_live_pool_is_the_pool_of_the_listeners_default_pool(cloud: CloudHarness) -> None:
    provider = cloud.provider()
    assert provider.live_pool() == "blue"
    cloud.client().put(LISTENER, defaultPoolId=POOLS["green"])
    cloud.wait_active()
    assert provider.live_pool() == "green"
    assert provider.state().live == "green" and provider.state().settled


def test_open_sessions_says_the_cloud_api_cannot_tell_and_asks_nothing(
        cloud: CloudHarness) -> None:
    provider = cloud.provider()
    before = len(cloud.journal())
    assert provider.open_sessions("green") is None
    assert len(cloud.journal()) == before


def test_a_canary_split_is_refused_with_the_reason_and_asks_nothing(
        cloud: CloudHarness) -> None:
    from bgkit.errors import SplitUnsupported

    provider = cloud.provider()
    before = len(cloud.journal())
    with pytest.raises(SplitUnsupported, match="L7 rules match request fields"):
        provider.split("green", 5, timeout_s=1)
    provider.split("green", 0, timeout_s=1)  # ending no split is nothing to do
    assert len(cloud.journal()) == before


def test_a_default_pool_that_is_neither_colour_is_named(cloud: CloudHarness) -> None:
    other = stable_id("someone else's pool")
    provider = cloud.provider(pool_ids={"blue": other, "green": POOLS["green"]})
    with pytest.raises(LoadBalancerError, match=rf"sends traffic to pool {POOLS['blue']}, "
                                                rf"which is neither blue \({other}\)"):
        provider.live_pool()


def test_the_live_pool_is_not_guessed_while_the_load_balancer_is_updating(
        cloud: CloudHarness) -> None:
    cloud.faults(provisioning_delay_s=30)
    cloud.client().put(LISTENER, name="someone else's edit")
    provider = cloud.provider()
    with pytest.raises(LoadBalancerError, match=r"is not active \(load balancer "
                                                r"provisioningStatus updating, listener "
                                                r"updating\).*will not guess the live pool; "
                                                r"wait until it is active again"):
        provider.live_pool()
    state = provider.state()
    assert state.live is None and "is being provisioned" in state.applying
    assert "the listener names pool" in state.detail and "(blue)" in state.detail


def test_switch_puts_only_the_default_pool_and_waits_until_active(cloud: CloudHarness) -> None:
    provider = cloud.provider()
    result = provider.switch("green", timeout_s=5)
    assert (result.previous, result.live) == ("blue", "green")
    assert result.applied_s >= 0.1  # the emulator provisions for 0.1 s
    assert cloud.plane.applied == [POOLS["green"]]
    assert calls(cloud, "PUT") == [(LISTENER, {"defaultPoolId": POOLS["green"]})]
    assert cloud.loadbalancer()["provisioningStatus"] == "active"
    assert provider.live_pool() == "green"
    assert provider.switch("blue", timeout_s=5).live == "blue"
    assert cloud.plane.applied == [POOLS["green"], POOLS["blue"]]


def test_switching_to_the_live_pool_changes_nothing(cloud: CloudHarness) -> None:
    result = cloud.provider().switch("blue", timeout_s=5)
    assert (result.previous, result.live) == ("blue", "blue")
    assert calls(cloud, "PUT") == []


def test_switch_refuses_to_start_while_the_load_balancer_is_not_active(
        cloud: CloudHarness) -> None:
    cloud.faults(provisioning_delay_s=30)
    cloud.client().put(LISTENER, description="a change in progress")
    with pytest.raises(LoadBalancerError, match=r"will not switch .* to green: it is not "
                                                r"active \(.*updating.*\) and no update is "
                                                r"possible until it is; nothing was changed"):
        cloud.provider().switch("green", timeout_s=5)
    assert [path for path, _ in calls(cloud, "PUT")] == [LISTENER]  # only the test's own
    assert cloud.listener()["defaultPoolId"] == POOLS["blue"]


def test_a_500_on_the_put_changes_nothing_and_keeps_the_query_id(cloud: CloudHarness) -> None:
    cloud.faults(error_next=1, error_match="PUT *")
    with pytest.raises(LoadBalancerError) as raised:
        cloud.provider().switch("green", timeout_s=5)
    message = str(raised.value)
    assert "HTTP 500: Internal server error" in message and QUERY_ID.search(message)
    assert "nothing was changed, blue still serves traffic" in message
    assert cloud.listener()["defaultPoolId"] == POOLS["blue"] and cloud.plane.applied == []


def test_a_put_whose_answer_is_lost_is_followed_to_the_end(cloud: CloudHarness) -> None:
    cloud.faults(slow_answer_s=1.5, slow_match="PUT *")
    provider = cloud.provider(request_timeout_s=0.5)
    result = provider.switch("green", timeout_s=10)
    assert result.live == "green" and cloud.plane.applied == [POOLS["green"]]


def test_a_provisioning_in_error_is_undone_and_the_error_says_where_traffic_is(
        cloud: CloudHarness) -> None:
    cloud.faults(provisioning_error_next=1)
    provider = cloud.provider()
    with pytest.raises(LoadBalancerError) as raised:
        provider.switch("green", timeout_s=5)
    message = str(raised.value)
    assert "its provisioning ended in error (load balancer provisioningStatus error" in message
    assert message.endswith(f"bgkit set the listener back to pool {POOLS['blue']} (blue) and "
                            "the load balancer is active again: blue serves traffic; give "
                            "OVHcloud support the load balancer id if it happens again")
    assert calls(cloud, "PUT") == [(LISTENER, {"defaultPoolId": POOLS["green"]}),
                                   (LISTENER, {"defaultPoolId": POOLS["blue"]})]
    assert cloud.plane.applied == [POOLS["blue"]]  # green was never applied
    assert provider.live_pool() == "blue"


def test_when_undoing_fails_too_the_live_pool_is_unknown_and_state_says_why(
        cloud: CloudHarness) -> None:
    cloud.faults(provisioning_error_next=2)
    provider = cloud.provider()
    with pytest.raises(LoadBalancerError, match=r"but that provisioning ended in error .*: "
                                                r"the live pool is unknown"):
        provider.switch("green", timeout_s=5)
    with pytest.raises(LoadBalancerError, match="will not guess"):
        provider.live_pool()
    state = provider.state()
    assert (state.live, state.staged, state.pending, state.applying) == (None, "blue", 1, "")
    assert "ended in error" in state.detail
    after = provider.discard_staged("blue")  # Octavia accepts a change in error
    assert after.live == "blue" and "back on pool" in after.detail
    assert provider.live_pool() == "blue"


def test_a_provisioning_past_the_deadline_is_apply_pending_then_followed_by_state(
        cloud: CloudHarness) -> None:
    cloud.faults(provisioning_delay_s=1.0)
    provider = cloud.provider()
    with pytest.raises(ApplyPending, match=r"did not finish in 0.2 s: it is still being "
                                           r"provisioned .*'active' means green is live"):
        provider.switch("green", timeout_s=0.2)
    assert provider.state().applying
    with pytest.raises(LoadBalancerError, match="discard|being provisioned"):
        provider.discard_staged("blue")
    assert provider.state(wait_s=5).live == "green"


def test_a_provisioning_that_never_ends_is_never_called_live(cloud: CloudHarness) -> None:
    cloud.faults(provisioning_outcome="updating")
    provider = cloud.provider()
    with pytest.raises(ApplyPending):
        provider.switch("green", timeout_s=0.3)
    state = provider.state(wait_s=0.3)
    assert state.live is None and state.applying and not state.settled


def test_a_slow_api_slows_the_switch_but_it_completes(cloud: CloudHarness) -> None:
    cloud.faults(delay_s=0.05)
    assert cloud.provider().switch("green", timeout_s=10).live == "green"


def test_a_write_refused_with_409_by_a_racing_change_changes_nothing(
        cloud: CloudHarness) -> None:
    """Between bgkit's checks and its PUT, someone else's change starts provisioning."""
    cloud.faults(slow_answer_s=0.6, slow_match=f"GET */pool/{POOLS['green']}/member",
                 provisioning_delay_s=30)
    racer = threading.Timer(0.2, lambda: cloud.client().put(LISTENER, name="racing edit"))
    racer.start()
    with pytest.raises(LoadBalancerError) as raised:
        cloud.provider().switch("green", timeout_s=5)
    racer.join()
    message = str(raised.value)
    assert "because of a conflict (Load Balancer" in message and "is immutable" in message
    assert "nothing was changed, blue still serves traffic" in message


def test_backend_health_maps_each_members_operating_status(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with running_cloud_emulator(monkeypatch, unmonitored=(POOLS["green"],)) as cloud:
        up(cloud, "127.0.1.1")
        cloud.plane.checks[("127.0.1.2", 8080)] = ("DOWN", "L4CON")
        servers = cloud.provider().backend_health()
    assert [(s.pool, s.name, s.address, s.port, s.status, s.healthy, s.monitored)
            for s in servers] == [
        ("blue", "blue-1", "127.0.1.1", 8080, "online", True, True),
        ("blue", "blue-2", "127.0.1.2", 8080, "error", False, True),
        ("green", "green-1", "127.0.2.1", 8080, "noMonitor", True, False),
        ("green", "green-2", "127.0.2.2", 8080, "noMonitor", True, False)]
    assert servers[1].detail == "failing the pool's health monitor"
    assert "no health monitor on its pool" in servers[2].detail


def test_a_member_that_is_no_configured_host_is_drift_refusing_the_switch(
        cloud: CloudHarness) -> None:
    up(cloud, "127.0.2.1", "127.0.2.2", "127.0.2.9")
    cloud.client().post(f"{CLOUD}/pool/{POOLS['green']}/member",
                        members=[{"address": "127.0.2.9", "protocolPort": 8080,
                                  "name": "stranger"}])
    cloud.wait_active()
    provider = cloud.provider()
    with pytest.raises(LoadBalancerError, match=r"will not switch .* to green: pool .* does "
                                                r"not hold exactly the hosts of \[pools.green\] "
                                                r".*member stranger \(127.0.2.9:8080\) is not "
                                                r"one of its hosts.*nothing was changed"):
        provider.switch("green", timeout_s=5)
    assert calls(cloud, "PUT") == []
    stranger = next(s for s in provider.backend_health() if s.name == "stranger")
    assert (stranger.status, stranger.healthy) == ("online", False)
    assert stranger.detail.startswith("drift: not a host of [pools.green] in bgkit.toml")


def test_a_configured_host_missing_from_its_pool_or_on_another_port_is_drift(
        cloud: CloudHarness) -> None:
    hosts = {**CLOUD_HOSTS, "green": (("127.0.2.1", 8080), ("127.0.2.2", 9090))}
    provider = cloud.provider(hosts=hosts)
    with pytest.raises(LoadBalancerError, match=r"member green-2 \(127.0.2.2:8080\) is not one "
                                                r"of its hosts in bgkit.toml; host "
                                                r"127.0.2.2:9090 of bgkit.toml is not a member"):
        provider.switch("green", timeout_s=5)
    missing = [s for s in provider.backend_health() if s.status == "missing"]
    assert [(s.pool, s.address, s.port, s.healthy) for s in missing] == [
        ("green", "127.0.2.2", 9090, False)]


def test_a_host_given_by_name_matches_the_members_of_its_addresses(
        cloud: CloudHarness) -> None:
    up(cloud, "127.0.2.1", "127.0.2.2")
    hosts = {**CLOUD_HOSTS, "green": (("green-1.internal", 8080), ("127.0.2.2", 8080))}
    provider = cloud.provider(hosts=hosts)
    provider.addresses_of = lambda name: ("127.0.2.1",) if name == "green-1.internal" else ()
    green = [s for s in provider.backend_health() if s.pool == "green"]
    assert [(s.name, s.status, s.healthy) for s in green] == [("green-1", "online", True),
                                                              ("green-2", "online", True)]
    assert provider.switch("green", timeout_s=5).live == "green"


def test_a_listener_of_another_load_balancer_is_refused_naming_both(
        cloud: CloudHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVH_CONSUMER_KEY", ADMIN_CK)  # bgkit's key only reaches its own
    balancer = cloud.loadbalancer()
    other = stable_id("another load balancer")
    cloud.server.emulator.clouds[(PROJECT, REGION)].objects["loadbalancer"][other] = {
        **balancer, "id": other}
    with pytest.raises(LoadBalancerError, match=rf"listener {LISTENER_ID} belongs to load "
                                                rf"balancer\(s\) {LB_ID}, not to {other}"):
        cloud.provider(loadbalancer_id=other).live_pool()


def test_a_missing_object_names_its_config_key_and_keeps_the_query_id(
        cloud: CloudHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVH_CONSUMER_KEY", ADMIN_CK)
    missing = stable_id("no such listener")
    with pytest.raises(LoadBalancerError) as raised:
        cloud.provider(listener_id=missing).live_pool()
    message = str(raised.value)
    assert f"OVHcloud has no listener {missing} in region {REGION}" in message
    assert "check [lb.ovh_cloud_lb].listener_id" in message and QUERY_ID.search(message)


def test_an_unknown_project_says_which_key_and_call_list_them(
        cloud: CloudHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVH_CONSUMER_KEY", ADMIN_CK)
    with pytest.raises(LoadBalancerError, match=r"no Public Cloud project nope for these "
                                                r"credentials .*check \[lb.ovh_cloud_lb\]."
                                                r"service_name \(`GET /cloud/project` lists"):
        cloud.provider(service_name="nope").live_pool()


def test_a_call_not_granted_names_the_command_with_the_provider_and_region(
        cloud: CloudHarness) -> None:
    with pytest.raises(LoadBalancerError, match=r"has no access rule `GET /cloud/project/.*"
                                                r"/region/SBG5/.*`bgkit ovh consumer-key "
                                                r"--provider ovh-cloud-lb --region SBG5 "
                                                rf"--service {PROJECT}`"):
        cloud.provider(region="SBG5").live_pool()


def test_without_a_consumer_key_the_hint_is_the_cloud_command(
        cloud: CloudHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVH_CONSUMER_KEY")
    with pytest.raises(LoadBalancerError, match=r"get a consumer key with `bgkit ovh "
                                                r"consumer-key --provider ovh-cloud-lb"):
        cloud.provider()


def test_state_follows_a_provisioning_for_wait_s(cloud: CloudHarness) -> None:
    cloud.faults(provisioning_delay_s=0.4)
    cloud.client().put(LISTENER, defaultPoolId=POOLS["green"])
    assert cloud.provider().state().applying
    assert cloud.provider().state(wait_s=5).live == "green"
