"""The OVH API emulator, through the real python-ovh client: auth, lists, staging, tasks."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import ovh.exceptions
import pytest

from bgkit.sandbox.ovh_api.auth import signature
from tests.unit.ovh.conftest import AK, AS, CK, FRONTEND_ID, SN, Harness

FRONTEND = f"/ipLoadbalancing/{SN}/http/frontend/{FRONTEND_ID}"


def answer(client: Any, method: str, path: str, body: Any = None) -> tuple[int, Any, Any]:
    """Status, JSON body and headers of one signed call, without python-ovh's exceptions."""
    response = client.raw_call(method, path, body)
    return response.status_code, response.json(), response.headers


def test_signature_matches_python_ovhs_published_test_vectors() -> None:
    common = {"application_secret": "9ufkBmLaTQ9nz5yMUlg79taH0GNnzDjk",
              "consumer_key": "5mBuy6SUQcRw2ZUxg0cG68BoDKpED4KY", "timestamp": "1457018875",
              "url": "https://eu.api.ovh.com/1.0/auth"}
    assert signature(method="GET", body="", **common) == (
        "$1$e9556054b6309771395efa467c22e627407461ad")
    assert signature(method="POST", body='{"a":"b","c":"d"}', **common) == (
        "$1$ec2fb5c7a81f64723c77d2e5b609ae6f58a84fc1")


def test_auth_time_is_a_bare_unsigned_integer(iplb: Harness) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{iplb.url}/auth/time", timeout=5) as response:
        assert abs(json.loads(response.read()) - time.time()) < 5
        assert response.headers["X-Ovh-Queryid"].startswith("EMU.ext-1.")


def test_python_ovh_signed_calls_are_accepted_with_get_and_put_bodies(iplb: Harness) -> None:
    client = iplb.client()
    assert client.get(FRONTEND)["frontendId"] == FRONTEND_ID
    assert client.put(FRONTEND, displayName="renamed") is None
    assert client.get(FRONTEND)["displayName"] == "renamed"


@pytest.mark.parametrize(("keys", "status", "code", "message", "exception"), [
    ({"secret": "x" * 32}, 400, "INVALID_SIGNATURE", "Invalid signature",
     ovh.exceptions.BadParametersError),
    ({"application_key": "unknownAppKey123"}, 403, "INVALID_KEY",
     "This application key is invalid", ovh.exceptions.InvalidKey),
    ({"consumer_key": "unknownConsumerKey0123456789abcd"}, 403, "NOT_CREDENTIAL",
     "This credential does not exist", ovh.exceptions.NotCredential),
])
def test_bad_keys_get_ovhclouds_own_error_bodies(
        iplb: Harness, keys: dict[str, str], status: int, code: str, message: str,
        exception: type[Exception]) -> None:
    client = iplb.client(**keys)
    got_status, body, headers = answer(client, "GET", FRONTEND)
    phrase = "Bad Request" if status == 400 else "Forbidden"
    assert (got_status, body) == (status, {
        "errorCode": code, "httpCode": f"{status} {phrase}", "message": message})
    assert headers["X-Ovh-Queryid"].startswith("EMU.ext-1.")
    with pytest.raises(exception) as raised:
        client.get(FRONTEND)
    assert raised.value.query_id.startswith("EMU.ext-1.")  # type: ignore[attr-defined]


def test_a_timestamp_outside_the_window_is_query_out_of_time(iplb: Harness) -> None:
    client = iplb.client()
    client.get(FRONTEND)  # python-ovh learns the server's time once...
    iplb.server.emulator.clock_offset_s = 3600  # ...then the server's clock jumps
    assert answer(client, "GET", FRONTEND)[:2] == (400, {
        "errorCode": "QUERY_TIME_OUT", "httpCode": "400 Bad Request",
        "message": "Query out of time"})


def test_a_call_outside_the_consumer_keys_rules_is_not_granted(iplb: Harness) -> None:
    bgkit_key = iplb.client(consumer_key=CK)
    assert bgkit_key.get(FRONTEND)["frontendId"] == FRONTEND_ID
    for method, path in (("GET", "/ipLoadbalancing"), ("GET", f"{FRONTEND}0"),
                         ("GET", f"/ipLoadbalancing/{SN}/http/farm")):
        assert answer(bgkit_key, method, path)[:2] == (403, {
            "errorCode": "NOT_GRANTED_CALL", "httpCode": "403 Forbidden",
            "message": "This call has not been granted"})
    with pytest.raises(ovh.exceptions.NotGrantedCall):
        bgkit_key.get("/ipLoadbalancing")


def test_lists_answer_ids_and_objects_follow_the_models(iplb: Harness) -> None:
    client = iplb.client()
    base = f"/ipLoadbalancing/{SN}"
    assert client.get("/ipLoadbalancing") == [SN]
    assert client.get(f"{base}/http/farm") == [77212, 77213]
    assert client.get(f"{base}/http/frontend") == [FRONTEND_ID]
    servers = client.get(f"{base}/http/farm/77213/server")
    assert servers == [300003, 300004]
    server = client.get(f"{base}/http/farm/77213/server/300003")
    assert (server["backendId"], server["address"], "farmId" in server) == (
        77213, "127.0.2.1", False)
    assert client.get(FRONTEND)["port"] == "8000"
    assert client.get(f"{base}/http/farm/77213/server", address="127.0.2.2") == [300004]
    with pytest.raises(ovh.exceptions.ResourceNotFoundError,
                       match=r"The requested object \(serverId = 300003\) does not exist"):
        client.get(f"{base}/http/farm/77212/server/300003")


def test_changes_are_staged_until_a_refresh_task_applies_them(iplb: Harness) -> None:
    client = iplb.client()
    assert iplb.pending() == []
    client.put(FRONTEND, defaultFarmId=77213)
    assert client.get(FRONTEND)["defaultFarmId"] == 77213  # the API shows what is staged
    assert iplb.pending() == [{"number": 1, "zone": "gra"}]
    assert iplb.plane.applied == []
    task = client.post(f"/ipLoadbalancing/{SN}/refresh", zone="gra")
    assert (task["status"], task["action"], task["zones"]) == ("todo", "refreshIplb", ["gra"])
    done = wait_task(client, task["id"], until=("done",))
    assert (done["progress"], done["doneDate"] is not None) == (100, True)
    assert iplb.plane.applied == [77213]
    assert iplb.pending() == []
    assert client.get(f"/ipLoadbalancing/{SN}/task", action="refreshIplb",
                      status="done") == [task["id"]]


def wait_task(client: Any, task_id: int, *, until: tuple[str, ...],
              timeout_s: float = 3.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        task = dict(client.get(f"/ipLoadbalancing/{SN}/task/{task_id}"))
        if task["status"] in until or time.monotonic() > deadline:
            return task
        time.sleep(0.01)


def test_a_refresh_task_goes_todo_doing_done_over_the_configured_delay(iplb: Harness) -> None:
    iplb.faults(refresh_delay_s=0.3)
    client = iplb.client()
    started = time.monotonic()
    task = client.post(f"/ipLoadbalancing/{SN}/refresh")
    seen = [task["status"]]
    while seen[-1] != "done" and time.monotonic() - started < 2:
        status = client.get(f"/ipLoadbalancing/{SN}/task/{task['id']}")["status"]
        if status != seen[-1]:
            seen.append(status)
            if status == "done":
                elapsed = time.monotonic() - started
        time.sleep(0.01)
    assert seen == ["todo", "doing", "done"]
    assert 0.3 <= elapsed < 0.5
    assert task["zones"] == ["gra"]  # no zone: every zone of the service


@pytest.mark.parametrize("outcome", ["error", "cancelled", "blocked", "doing"])
def test_a_fault_makes_refresh_tasks_end_as_told(iplb: Harness, outcome: str) -> None:
    iplb.faults(task_outcome=outcome, refresh_delay_s=0.05)
    client = iplb.client()
    client.put(FRONTEND, defaultFarmId=77213)
    task = client.post(f"/ipLoadbalancing/{SN}/refresh", zone="gra")
    time.sleep(0.15)
    assert client.get(f"/ipLoadbalancing/{SN}/task/{task['id']}")["status"] == outcome
    assert iplb.plane.applied == []
    assert iplb.pending() == [{"number": 1, "zone": "gra"}]


def test_a_data_plane_that_refuses_ends_the_task_in_error(iplb: Harness) -> None:
    iplb.plane.refuse = "HAProxy is gone"
    client = iplb.client()
    task = client.post(f"/ipLoadbalancing/{SN}/refresh", zone="gra")
    assert wait_task(client, task["id"], until=("error", "done"))["status"] == "error"


@pytest.mark.parametrize(("body", "problem"), [
    ({"defaultFarmId": "77213"}, "[defaultFarmId] expected integer"),
    ({"frontendId": 1}, "[frontendId] read-only, cannot be sent"),
    ({"farmId": 77213}, "[farmId] not a field of this model"),
    ({"defaultFarmId": 1}, "Farm 1 does not exist on this service"),
])
def test_a_put_body_outside_the_model_is_a_bad_request(
        iplb: Harness, body: dict[str, Any], problem: str) -> None:
    status, error, _ = answer(iplb.client(), "PUT", FRONTEND, body)
    assert (status, error["class"]) == (400, "Client::BadRequest")
    assert problem in error["message"]
    assert iplb.pending() == []


def test_unknown_services_objects_and_urls_are_404_and_unimplemented_calls_501(
        iplb: Harness) -> None:
    client = iplb.client()
    assert answer(client, "GET", "/ipLoadbalancing/nope/http/frontend/1")[:2] == (
        404, {"class": "Client::NotFound", "message": "This service does not exist"})
    assert answer(client, "GET", f"{FRONTEND}1")[1]["message"] == (
        "The requested object (frontendId = 700891) does not exist")
    assert answer(client, "GET", "/ipLoadbalancing/x/nothing")[:2] == (
        404, {"class": "Client::NotFound", "message": "Got an invalid (or empty) URL"})
    status, body, _ = answer(client, "GET", f"/ipLoadbalancing/{SN}/ssl")
    assert (status, body["class"]) == (501, "Server::NotImplemented")


def test_injected_500s_hit_the_matching_calls_then_stop(iplb: Harness) -> None:
    client = iplb.client()
    iplb.faults(error_next=1, error_match="POST */refresh")
    assert client.get(FRONTEND)["frontendId"] == FRONTEND_ID
    status, body, _ = answer(client, "POST", f"/ipLoadbalancing/{SN}/refresh")
    assert (status, body) == (500, {"class": "Server::InternalServerError",
                                    "message": "Internal server error"})
    with pytest.raises(ovh.exceptions.APIError, match="Internal server error"):
        iplb.faults(error_next=1, error_match="*")
        client.get(FRONTEND)
    assert client.get(FRONTEND)["frontendId"] == FRONTEND_ID
    assert iplb.control("DELETE", "/_emulator/faults")["error_next"] == 0


def test_slow_answers_take_at_least_the_injected_delay(iplb: Harness) -> None:
    client = iplb.client()
    client.get(FRONTEND)
    iplb.faults(delay_s=0.2)
    started = time.monotonic()
    client.get(FRONTEND)
    assert time.monotonic() - started >= 0.2


def test_a_slow_answer_has_acted_before_it_answers(iplb: Harness) -> None:
    client, other = iplb.client(), iplb.client()
    client.get(FRONTEND)
    other.get(FRONTEND)
    iplb.faults(slow_answer_s=0.6, slow_match="PUT */http/frontend/*")
    putting = threading.Thread(target=client.put, args=(FRONTEND,),
                               kwargs={"defaultFarmId": 77213})
    putting.start()
    time.sleep(0.3)
    assert putting.is_alive()  # no answer yet...
    assert other.get(FRONTEND)["defaultFarmId"] == 77213  # ...but the change is staged
    putting.join()


def test_the_control_endpoint_refuses_unknown_faults_and_lives_outside_the_api(
        iplb: Harness) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        iplb.faults(explode=True)
    assert "unknown fault(s) explode" in refused.value.read().decode()
    status, body, _ = answer(iplb.client(), "GET", "/_emulator/faults")
    assert (status, body["message"]) == (404, "Got an invalid (or empty) URL")


def test_the_journal_keeps_calls_but_never_headers_or_issued_consumer_keys(
        iplb: Harness) -> None:
    client = iplb.client()
    client.put(FRONTEND, displayName="x")
    client.new_consumer_key_request()
    request = client.new_consumer_key_request()
    request.add_rule("GET", "/ipLoadbalancing")
    request.request()
    text = json.dumps(iplb.journal())
    assert '"body": {"displayName": "x"}' in text
    assert AS not in text and CK not in text and client._consumer_key not in text
    assert '"consumerKey": "***"' in text


def test_a_requested_consumer_key_works_only_once_validated_and_only_for_its_rules(
        iplb: Harness) -> None:
    requester = iplb.client()
    request = requester.new_consumer_key_request()
    request.add_rule("GET", f"/ipLoadbalancing/{SN}/http/frontend/*")
    grant = request.request()
    assert grant["state"] == "pendingValidation"
    assert grant["validationUrl"].startswith(f"{iplb.root}/auth/?credentialToken=")
    new_key = iplb.client(consumer_key=grant["consumerKey"])
    with pytest.raises(ovh.exceptions.InvalidCredential, match="This credential is not valid"):
        new_key.get(FRONTEND)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(grant["validationUrl"], timeout=5) as page:
        assert f"GET /ipLoadbalancing/{SN}/http/frontend/*" in page.read().decode()
    with opener.open(urllib.request.Request(grant["validationUrl"], data=b"", method="POST"),
                     timeout=5) as page:
        assert "validated" in page.read().decode()
    assert new_key.get(FRONTEND)["frontendId"] == FRONTEND_ID
    with pytest.raises(ovh.exceptions.NotGrantedCall):
        new_key.put(FRONTEND, displayName="no")


def test_a_consumer_key_request_needs_a_known_application_key_and_proper_rules(
        iplb: Harness) -> None:
    with pytest.raises(ovh.exceptions.InvalidKey):
        iplb.client(application_key="unknownAppKey123").request_consumerkey(
            [{"method": "GET", "path": "/*"}])
    with pytest.raises(ovh.exceptions.BadParametersError, match="accessRules"):
        iplb.client().request_consumerkey([{"method": "FETCH", "path": "/*"}])
    assert iplb.client().get("/auth/time", _need_auth=False) > 0
    assert AK  # the application key itself is never part of an answer
