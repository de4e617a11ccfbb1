"""Every request the ovh-cloud-lb provider sends is an operation of the official cloud
schema, with a body of its model; every answer of the emulator fits its model."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from bgkit.commands.ovh_cloud_lb import access_rules
from bgkit.errors import LoadBalancerError
from bgkit.sandbox.ovh_api.auth import Rule, rule_allows
from bgkit.sandbox.ovh_api.cloud_schema import load_cloud_schema
from bgkit.sandbox.ovh_api.cloud_seed import (
    listener_json,
    loadbalancer_json,
    member_json,
    pool_json,
    stable_id,
)
from tests.unit.ovh.conftest import (
    CLOUD_HOSTS,
    LB_ID,
    LISTENER_ID,
    POOLS,
    PROJECT,
    REGION,
    CloudHarness,
    running_cloud_emulator,
)

SCHEMA_SHA256 = "b4609ea6a96d145db52604ed438b528afa7e6f1bf46d3fe012150da5fd2f6580"
LB = "/cloud/project/{serviceName}/region/{regionName}/loadbalancing"
BGKIT_OPERATIONS = {
    ("GET", f"{LB}/loadbalancer/{{loadBalancerId}}"),
    ("GET", f"{LB}/listener/{{listenerId}}"),
    ("PUT", f"{LB}/listener/{{listenerId}}"),
    ("GET", f"{LB}/pool/{{poolId}}"),
    ("GET", f"{LB}/pool/{{poolId}}/member"),
}


def full_cycle(cloud: CloudHarness) -> list[dict[str, Any]]:
    """Reads, two switches, every way a switch can fail, and undoing; the journal."""
    cloud.plane.checks[("127.0.1.1", 8080)] = ("UP", "L7OK")
    provider = cloud.provider()
    provider.live_pool()
    provider.backend_health()
    provider.state()
    provider.switch("green", timeout_s=5)
    provider.switch("blue", timeout_s=5)
    for faults in ({"error_next": 1, "error_match": "PUT *"},
                   {"provisioning_error_next": 1},
                   {"provisioning_error_next": 2},
                   {"provisioning_outcome": "updating"}):
        cloud.control("DELETE", "/_emulator/faults")
        cloud.faults(provisioning_delay_s=0.05, **faults)
        with pytest.raises(LoadBalancerError):
            provider.switch("green", timeout_s=0.4)
        if faults.get("provisioning_error_next") == 2:
            provider.discard_staged("blue")
    cloud.control("DELETE", "/_emulator/faults")
    cloud.faults(provisioning_delay_s=0.05)
    provider.state(wait_s=1)  # the stuck one never ends: followed, then given up
    drifted = cloud.provider(hosts={**CLOUD_HOSTS, "blue": (("127.0.1.9", 8080),)})
    drifted.backend_health()
    return [entry for entry in cloud.journal() if entry["path"].startswith("/cloud/")]


@pytest.fixture(scope="module")
def journal() -> Iterator[list[dict[str, Any]]]:
    """One full cycle's calls, recorded once for this module's tests."""
    with pytest.MonkeyPatch.context() as monkeypatch, \
            running_cloud_emulator(monkeypatch) as cloud:
        yield full_cycle(cloud)


def test_every_request_matches_an_operation_its_query_and_its_request_model(
        journal: list[dict[str, Any]]) -> None:
    schema = load_cloud_schema()
    used = set()
    for entry in journal:
        found = schema.operation(entry["method"], entry["path"])
        assert found is not None, f"{entry['method']} {entry['path']} is not in the schema"
        operation, params = found
        used.add((operation.method, operation.template))
        assert operation.status == "PRODUCTION"
        for name, value in params.items():
            assert schema.check(value, operation.path[name], "request") == [], (name, value)
        for name, value in entry["query"]:
            assert name in operation.query, f"{operation.template} takes no ?{name}"
            assert schema.check(value, operation.query[name], "request") == []
        if entry["body"] is not None:
            assert operation.body == "cloud.loadbalancing.EditListener"
            assert schema.check(entry["body"], operation.body, "request") == [], entry
            assert set(entry["body"]) == {"defaultPoolId"}  # only that field, always
    assert used == BGKIT_OPERATIONS


def test_every_answer_of_the_emulator_fits_the_response_model_or_the_error_shape(
        journal: list[dict[str, Any]]) -> None:
    schema = load_cloud_schema()
    checked, statuses = 0, set()
    for entry in journal:
        operation, _ = schema.operation(entry["method"], entry["path"]) or (None, None)
        assert operation is not None
        statuses.add(entry["status"])
        if entry["status"] == 200:
            assert operation.response is not None
            assert schema.check(entry["answer"], operation.response, "response") == [], entry
            checked += 1
        else:
            assert set(entry["answer"]) == {"class", "message"}, entry
    assert checked > 40 and statuses == {200, 500}


def test_every_request_bgkit_makes_is_covered_by_the_consumer_key_rules(
        journal: list[dict[str, Any]]) -> None:
    for rules in (access_rules(PROJECT),
                  access_rules(PROJECT, region=REGION, loadbalancer_id=LB_ID,
                               listener_id=LISTENER_ID, pool_ids=[*POOLS.values()])):
        granted = tuple(Rule(rule["method"], rule["path"]) for rule in rules)
        for entry in journal:
            assert rule_allows(granted, entry["method"], entry["path"]), entry


def test_the_rules_grant_nothing_else() -> None:
    rules = access_rules(PROJECT, region=REGION, loadbalancer_id=LB_ID,
                         listener_id=LISTENER_ID, pool_ids=[*POOLS.values()])
    granted = tuple(Rule(rule["method"], rule["path"]) for rule in rules)
    base = f"/cloud/project/{PROJECT}/region/{REGION}/loadbalancing"
    for method, path in (("PUT", f"{base}/loadbalancer/{LB_ID}"),
                         ("DELETE", f"{base}/listener/{LISTENER_ID}"),
                         ("POST", f"{base}/pool/{POOLS['blue']}/member"),
                         ("GET", f"{base}/pool/{stable_id('other')}/member"),
                         ("GET", f"/cloud/project/{PROJECT}/region/SBG5/loadbalancing/listener/"
                                 f"{LISTENER_ID}")):
        assert not rule_allows(granted, method, path), (method, path)
    assert len(rules) == 7


def test_the_seeded_objects_are_whole_objects_of_their_models() -> None:
    schema = load_cloud_schema()
    model = "cloud.loadbalancing.{}".format
    lb = loadbalancer_json(loadbalancer_id=LB_ID, name="x", region=REGION, vip="10.0.0.1",
                           floating_ip="203.0.113.7")
    assert schema.check(lb, model("LoadBalancer"), "response") == []
    listener = listener_json(listener_id=LISTENER_ID, loadbalancer_id=LB_ID, name="x",
                             port=80, default_pool_id=POOLS["blue"])
    assert schema.check(listener, model("Listener"), "response") == []
    pool = pool_json(pool_id=POOLS["blue"], loadbalancer_id=LB_ID, name="blue")
    assert schema.check(pool, model("Pool"), "response") == []
    member = member_json(member_id=stable_id("m"), name="m", address="10.0.0.2", port=8080)
    assert schema.check(member, model("pool.Member"), "response") == []


def test_the_validator_catches_what_a_careless_emulator_or_client_would_get_wrong() -> None:
    schema = load_cloud_schema()
    listener = listener_json(listener_id=LISTENER_ID, loadbalancer_id=LB_ID, name="x",
                             port=80, default_pool_id=None)
    listener_model = "cloud.loadbalancing.Listener"
    assert schema.check({**listener, "port": "80"}, listener_model, "response") == [
        'port: expected long, got "80"']
    assert schema.check({**listener, "loadBalancerIds": LB_ID}, listener_model,
                        "response") == [f'loadBalancerIds: expected a list of uuid, got '
                                        f'"{LB_ID}"']
    assert schema.check({**listener, "provisioningStatus": "pending_update"},
                        listener_model, "response") == [
        'provisioningStatus: "pending_update" is not one of active, creating, deleted, '
        'deleting, error, updating']
    assert schema.check({**listener, "name": None}, listener_model, "response") == [
        "name: null where the model allows none"]
    assert schema.check({**listener, "tlsVersions": ["TLSv1.3"]}, listener_model,
                        "response") == [
        "tlsVersions[0]: type cloud.loadbalancing.ListenerTlsVersionEnum is not described "
        "by the schema"]
    del listener["operatingStatus"]
    assert schema.check(listener, listener_model, "response") == ["operatingStatus: missing"]
    assert schema.check({"members": [{"address": "10.0.0.1"}]},
                        "cloud.loadbalancing.pool.CreateMembers", "request") == [
        "members[0].protocolPort: missing"]
    assert schema.check({"members": [{"address": "10.0.0.1", "protocolPort": 80,
                                      "id": LB_ID}]},
                        "cloud.loadbalancing.pool.CreateMembers", "request") == [
        "members[0].id: read-only, cannot be sent"]


def test_the_vendored_schema_is_the_shared_file_with_its_notice() -> None:
    package = resources.files("bgkit.sandbox.ovh_api")
    data = package.joinpath("cloud-loadbalancing.schema.json").read_bytes()
    assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256
    notice = package.joinpath("NOTICE.md").read_text(encoding="utf-8")
    for fact in ("eu.api.ovh.com/1.0/cloud.json", "UrielCh/api-ovh-node", "MIT",
                 SCHEMA_SHA256):
        assert fact in notice
