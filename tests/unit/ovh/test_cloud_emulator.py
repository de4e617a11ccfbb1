"""The emulator's Public Cloud Load Balancer paths, through the real python-ovh client:
auth, whole objects in lists, provisioning, 409 while updating, faults."""

from __future__ import annotations

import time
from typing import Any

import ovh.exceptions
import pytest

from bgkit.sandbox.ovh_api.cloud_seed import stable_id
from tests.unit.ovh.conftest import (
    CK,
    CLOUD,
    LB_ID,
    LISTENER_ID,
    POOLS,
    PROJECT,
    CloudHarness,
    running_cloud_emulator,
)

LISTENER = f"{CLOUD}/listener/{LISTENER_ID}"
LOADBALANCER = f"{CLOUD}/loadbalancer/{LB_ID}"


def answer(client: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Status and JSON body of one signed call, without python-ovh's exceptions."""
    response = client.raw_call(method, path, body)
    return response.status_code, response.json()


def statuses(cloud: CloudHarness) -> tuple[str, str, str]:
    client = cloud.client()
    return (client.get(LOADBALANCER)["provisioningStatus"],
            client.get(LISTENER)["provisioningStatus"],
            client.get(f"{CLOUD}/pool/{POOLS['green']}")["provisioningStatus"])


def wait_until(check: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_signed_calls_are_checked_as_for_iplb(cloud: CloudHarness) -> None:
    assert answer(cloud.client(secret="x" * 32), "GET", LISTENER)[1]["errorCode"] == \
        "INVALID_SIGNATURE"
    bgkit = cloud.client(consumer_key=CK)
    assert bgkit.get(LISTENER)["id"] == LISTENER_ID
    with pytest.raises(ovh.exceptions.NotGrantedCall):  # bgkit's key: its calls only
        bgkit.get(f"{CLOUD}/listener")


def test_lists_answer_whole_objects_and_filter_by_load_balancer(cloud: CloudHarness) -> None:
    client = cloud.client()
    listeners = client.get(f"{CLOUD}/listener", loadbalancerId=LB_ID)
    assert [item["id"] for item in listeners] == [LISTENER_ID]
    assert listeners[0]["loadBalancerIds"] == [LB_ID]
    assert client.get(f"{CLOUD}/listener", loadbalancerId=stable_id("other")) == []
    pools = client.get(f"{CLOUD}/pool")
    assert sorted(pool["name"] for pool in pools) == ["blue", "green"]
    members = client.get(f"{CLOUD}/pool/{POOLS['blue']}/member")
    assert [(m["name"], m["address"], m["protocolPort"]) for m in members] == [
        ("blue-1", "127.0.1.1", 8080), ("blue-2", "127.0.1.2", 8080)]
    assert client.get(f"{CLOUD}/pool/{POOLS['blue']}/member/{members[0]['id']}") == members[0]


def test_a_put_provisions_listener_pool_and_load_balancer_then_applies(
        cloud: CloudHarness) -> None:
    cloud.faults(provisioning_delay_s=0.5)
    edited = cloud.client().put(LISTENER, defaultPoolId=POOLS["green"])
    assert edited["defaultPoolId"] == POOLS["green"]  # the API shows it at once...
    assert edited["provisioningStatus"] == "updating"
    assert statuses(cloud) == ("updating", "updating", "updating")
    assert cloud.plane.applied == []  # ...the data plane only once provisioned
    wait_until(lambda: statuses(cloud) == ("active", "active", "active"))
    assert cloud.plane.applied == [POOLS["green"]]


def test_a_write_while_updating_is_refused_with_409_in_ovhs_error_shape(
        cloud: CloudHarness) -> None:
    cloud.faults(provisioning_delay_s=30)
    cloud.client().put(LISTENER, name="first")
    status, body = answer(cloud.client(), "PUT", LISTENER, {"defaultPoolId": POOLS["green"]})
    assert status == 409
    assert body == {"class": "Client::Conflict",
                    "message": f"Load Balancer {LB_ID} is immutable and cannot be updated "
                               "(provisioningStatus updating)"}
    with pytest.raises(ovh.exceptions.ResourceConflictError):
        cloud.client().post(f"{CLOUD}/pool/{POOLS['green']}/member",
                            members=[{"address": "10.0.0.9", "protocolPort": 80}])
    assert cloud.listener()["defaultPoolId"] == POOLS["blue"]


@pytest.mark.parametrize(("body", "message"), [
    ({"id": LISTENER_ID}, "[id] not a field of this model"),
    ({"port": 81}, "[port] not a field of this model"),
    ({"defaultPoolId": "blue"}, '[defaultPoolId] expected uuid, got "blue"'),
    ({"defaultPoolId": None}, "[defaultPoolId] null where the model allows none"),
    ({"defaultPoolId": stable_id("nope")}, f"Pool {stable_id('nope')} does not exist"),
])
def test_a_put_outside_edit_listener_is_a_400(cloud: CloudHarness, body: dict[str, Any],
                                              message: str) -> None:
    status, said = answer(cloud.client(), "PUT", LISTENER, body)
    assert status == 400 and message in said["message"], said
    assert cloud.loadbalancer()["provisioningStatus"] == "active"


def test_bad_paths_unknown_projects_and_missing_operations(cloud: CloudHarness) -> None:
    client = cloud.client()
    assert answer(client, "GET", f"{CLOUD}/listener/not-a-uuid") == (400, {
        "class": "Client::BadRequest",
        "message": "Invalid value 'not-a-uuid' for parameter listenerId"})
    assert answer(client, "GET", f"{CLOUD}/listener/{stable_id('x')}")[0] == 404
    other = CLOUD.replace(PROJECT, "nope")
    assert answer(client, "GET", f"{other}/listener/{LISTENER_ID}")[1]["message"] == \
        "This service does not exist"
    assert answer(client, "GET", CLOUD.replace("GRA11", "BHS5") + "/pool")[0] == 404
    assert answer(client, "GET", f"{CLOUD}/healthMonitor")[0] == 501
    assert answer(client, "GET", f"{CLOUD}/nothing")[0] == 404


def test_a_provisioning_in_error_keeps_the_api_value_and_does_not_apply_it(
        cloud: CloudHarness) -> None:
    cloud.faults(provisioning_error_next=1)
    cloud.client().put(LISTENER, defaultPoolId=POOLS["green"])
    wait_until(lambda: statuses(cloud) == ("error", "error", "error"))
    assert cloud.listener()["defaultPoolId"] == POOLS["green"] and cloud.plane.applied == []
    cloud.client().put(LISTENER, defaultPoolId=POOLS["blue"])  # allowed in error
    wait_until(lambda: cloud.loadbalancer()["provisioningStatus"] == "active")
    assert cloud.plane.applied == [POOLS["blue"]]
    assert cloud.control("GET", "/_emulator/faults")["provisioning_error_next"] == 0


def test_a_data_plane_that_refuses_ends_the_provisioning_in_error(cloud: CloudHarness) -> None:
    cloud.plane.refuse = "no backend"
    cloud.client().put(LISTENER, defaultPoolId=POOLS["green"])
    wait_until(lambda: cloud.loadbalancer()["provisioningStatus"] == "error")


def test_a_500_fault_answers_without_acting(cloud: CloudHarness) -> None:
    cloud.faults(error_next=1, error_match="PUT /cloud/*")
    with pytest.raises(ovh.exceptions.APIError, match="Internal server error"):
        cloud.client().put(LISTENER, defaultPoolId=POOLS["green"])
    assert cloud.listener()["defaultPoolId"] == POOLS["blue"]
    assert cloud.loadbalancer()["provisioningStatus"] == "active"


def test_faults_refuse_an_unknown_provisioning_outcome(cloud: CloudHarness) -> None:
    import urllib.error

    with pytest.raises(urllib.error.HTTPError):
        cloud.faults(provisioning_outcome="finished")


def test_member_status_follows_the_data_planes_checks_and_the_monitor(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with running_cloud_emulator(monkeypatch, unmonitored=(POOLS["green"],)) as cloud:
        cloud.plane.checks[("127.0.1.1", 8080)] = ("UP", "L7OK")
        cloud.plane.checks[("127.0.1.2", 8080)] = ("DOWN", "L4CON")
        client = cloud.client()
        blue = client.get(f"{CLOUD}/pool/{POOLS['blue']}/member")
        green = client.get(f"{CLOUD}/pool/{POOLS['green']}/member")
        assert [m["operatingStatus"] for m in blue] == ["online", "error"]
        assert [m["operatingStatus"] for m in green] == ["noMonitor", "noMonitor"]
        assert client.get(f"{CLOUD}/pool/{POOLS['blue']}")["operatingStatus"] == "degraded"
        member = blue[0]["id"]
        cloud.server.emulator.clouds[(PROJECT, "GRA11")].objects["member"][member][
            "weight"] = 0
        assert client.get(f"{CLOUD}/pool/{POOLS['blue']}/member/{member}")[
            "operatingStatus"] == "draining"


def test_members_can_be_added_and_removed_through_the_api(cloud: CloudHarness) -> None:
    client = cloud.client()
    added = client.post(f"{CLOUD}/pool/{POOLS['green']}/member",
                        members=[{"address": "127.0.2.9", "protocolPort": 8080}])
    assert [(m["address"], m["provisioningStatus"]) for m in added] == [
        ("127.0.2.9", "updating")]
    wait_until(lambda: cloud.loadbalancer()["provisioningStatus"] == "active")
    client.delete(f"{CLOUD}/pool/{POOLS['green']}/member/{added[0]['id']}")
    wait_until(lambda: cloud.loadbalancer()["provisioningStatus"] == "active")
    assert len(client.get(f"{CLOUD}/pool/{POOLS['green']}/member")) == 2
