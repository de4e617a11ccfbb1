"""Every request bgkit sends is an operation of the official schema; every answer fits it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

from bgkit.commands.ovh_iplb import access_rules
from bgkit.errors import LoadBalancerError
from bgkit.sandbox.ovh_api.auth import Rule, rule_allows
from bgkit.sandbox.ovh_api.schema import load_schema
from bgkit.sandbox.ovh_api.seed import farm_json, frontend_json, server_json
from tests.unit.ovh.conftest import FARMS, FRONTEND_ID, SN, Harness, running_emulator

SCHEMA_SHA256 = "f90a048d9a449188813465b86341f7659277b9c942cdd840f3db113f53747242"
SB = "/ipLoadbalancing/{serviceName}"
BGKIT_OPERATIONS = {
    ("GET", f"{SB}/http/frontend/{{frontendId}}"),
    ("PUT", f"{SB}/http/frontend/{{frontendId}}"),
    ("GET", f"{SB}/http/farm/{{farmId}}"),
    ("GET", f"{SB}/http/farm/{{farmId}}/server"),
    ("GET", f"{SB}/http/farm/{{farmId}}/server/{{serverId}}"),
    ("GET", f"{SB}/pendingChanges"),
    ("POST", f"{SB}/refresh"),
    ("GET", f"{SB}/task"),
    ("GET", f"{SB}/task/{{id}}"),
}


def full_cycle(iplb: Harness) -> list[dict[str, Any]]:
    """Reads, two switches, and every way a switch can fail; the journal of it all."""
    iplb.plane.checks[("127.0.1.1", 8080)] = ("UP", "L7OK")
    provider = iplb.provider()
    provider.live_pool()
    provider.backend_health()
    provider.switch("green", timeout_s=5)
    provider.switch("blue", timeout_s=5)
    for faults in ({"error_next": 1, "error_match": "POST */refresh"},
                   {"error_next": 1, "error_match": "PUT *"},
                   {"task_outcome": "error"},
                   {"task_outcome": "doing", "refresh_delay_s": 0.01}):
        iplb.control("DELETE", "/_emulator/faults")
        iplb.faults(**faults)
        with pytest.raises(LoadBalancerError):
            provider.switch("green", timeout_s=0.4)
    return [entry for entry in iplb.journal() if entry["path"].startswith("/ipLoadbalancing")]


@pytest.fixture(scope="module")
def journal() -> Iterator[list[dict[str, Any]]]:
    """One full cycle's calls, recorded once for this module's tests."""
    with pytest.MonkeyPatch.context() as monkeypatch, running_emulator(monkeypatch) as iplb:
        yield full_cycle(iplb)


def test_every_request_matches_an_operation_its_query_and_its_request_model(
        journal: list[dict[str, Any]]) -> None:
    schema = load_schema()
    used = set()
    for entry in journal:
        found = schema.operation(entry["method"], entry["path"])
        assert found is not None, f"{entry['method']} {entry['path']} is not in the schema"
        operation, _ = found
        used.add((operation.method, operation.template))
        for name, value in entry["query"]:
            assert name in operation.query, f"{operation.template} takes no ?{name}"
            assert schema.check(value, operation.query[name], "request") == []
        if entry["body"] is not None:
            assert operation.body is not None
            assert schema.check(entry["body"], operation.body, "request") == [], entry
    assert used == BGKIT_OPERATIONS


def test_every_answer_of_the_emulator_fits_the_response_model_or_the_error_shape(
        journal: list[dict[str, Any]]) -> None:
    schema = load_schema()
    checked = 0
    for entry in journal:
        operation, _ = schema.operation(entry["method"], entry["path"]) or (None, None)
        assert operation is not None
        if entry["status"] == 200:
            if operation.response is None:
                assert entry["answer"] is None  # void
            else:
                assert schema.check(entry["answer"], operation.response, "response") == [], \
                    entry
                checked += 1
        else:
            assert set(entry["answer"]) in ({"class", "message"},
                                            {"errorCode", "httpCode", "message"}), entry
    assert checked > 20


def test_every_request_bgkit_makes_is_covered_by_the_consumer_key_rules(
        journal: list[dict[str, Any]]) -> None:
    for rules in (access_rules(SN),
                  access_rules(SN, frontend_id=FRONTEND_ID, farm_ids=[*FARMS.values()])):
        granted = tuple(Rule(rule["method"], rule["path"]) for rule in rules)
        for entry in journal:
            assert rule_allows(granted, entry["method"], entry["path"]), entry


def test_the_seeded_objects_are_whole_objects_of_their_models() -> None:
    schema = load_schema()
    model = "ipLoadbalancing.{}".format
    assert schema.check(frontend_json(frontend_id=1, port="80", zone="gra", default_farm_id=2),
                        schema.model(model("frontendHttp.FrontendHttp")), "response") == []
    assert schema.check(farm_json(farm_id=2, zone="gra", port=8080, health_path="/health"),
                        schema.model(model("backendHttp.BackendHttp")), "response") == []
    server = {**server_json(server_id=3, farm_id=2, address="10.0.0.1"), "serverState": []}
    server_model = schema.model(model("backendHttpCustomerServer.BackendHTTPServer"))
    assert schema.check(server, server_model, "response") == []
    assert schema.check({**server, "farmId": 2}, server_model, "response") == [
        "farmId: not a field of this model"]
    assert schema.check({**server, "port": "8080"}, server_model, "response") == [
        'port: expected integer, got "8080"']


def test_the_validator_catches_what_a_careless_emulator_or_client_would_get_wrong() -> None:
    schema = load_schema()
    frontend = schema.model("ipLoadbalancing.frontendHttp.FrontendHttp")
    whole = frontend_json(frontend_id=1, port="80", zone="gra", default_farm_id=2)
    assert schema.check({**whole, "port": 80}, frontend, "response") == [
        "port: expected string, got 80"]
    del whole["hsts"]
    assert schema.check(whole, frontend, "response") == ["hsts: missing"]
    assert schema.check("finished", schema.model("ipLoadbalancing.TaskStatusEnum"),
                        "response") == [
        '.: "finished" is not one of blocked, cancelled, doing, done, error, todo']
    task = schema.model("ipLoadbalancing.Task.Task")
    assert schema.check({"status": "done"}, task, "request") == [
        "status: read-only, cannot be sent"]


def test_the_vendored_schema_is_the_official_file_with_its_notice() -> None:
    package = resources.files("bgkit.sandbox.ovh_api")
    data = package.joinpath("iploadbalancing.openapi.json").read_bytes()
    assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256
    notice = package.joinpath("NOTICE.md").read_text(encoding="utf-8")
    for fact in ("ovh/ovhcloud-cli", "internal/assets/api-schemas/iploadbalancing.json",
                 "Apache License, Version 2.0", SCHEMA_SHA256):
        assert fact in notice
