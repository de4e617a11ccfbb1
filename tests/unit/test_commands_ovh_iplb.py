"""The OVH IPLB requests as data, the consumer-key rules, and the answer parsers."""

from __future__ import annotations

from typing import Any

import pytest

from bgkit.commands import ovh_iplb as cmd

SN = "loadbalancer-1a2b"


def test_reading_the_frontend_is_one_get_of_its_path() -> None:
    request = cmd.get_frontend(SN, 70089)
    assert (request.method, request.target, request.body) == (
        "GET", "/ipLoadbalancing/loadbalancer-1a2b/http/frontend/70089", None)
    assert request.subject == "HTTP frontend 70089 of IPLB loadbalancer-1a2b"


def test_the_switch_puts_only_the_default_farm_id() -> None:
    request = cmd.set_default_farm(SN, 70089, 77213)
    assert (request.method, request.target) == (
        "PUT", "/ipLoadbalancing/loadbalancer-1a2b/http/frontend/70089")
    assert request.body == {"defaultFarmId": 77213}


def test_refresh_names_the_frontends_zone_and_sends_no_body_for_zone_all() -> None:
    assert cmd.refresh_zone("gra") == "gra"
    assert cmd.refresh_zone("all") is None
    with_zone = cmd.refresh(SN, "gra")
    assert (with_zone.method, with_zone.target, with_zone.body) == (
        "POST", "/ipLoadbalancing/loadbalancer-1a2b/refresh", {"zone": "gra"})
    assert cmd.refresh(SN, None).body is None


def test_refresh_tasks_are_listed_by_action_then_status_in_the_query() -> None:
    request = cmd.list_refresh_tasks(SN, "doing")
    assert request.path == "/ipLoadbalancing/loadbalancer-1a2b/task"
    assert request.target == (
        "/ipLoadbalancing/loadbalancer-1a2b/task?action=refreshIplb&status=doing")


def test_the_other_reads_have_these_exact_paths() -> None:
    assert [r.target for r in (
        cmd.get_farm(SN, 77212), cmd.list_servers(SN, 77212), cmd.get_server(SN, 77212, 9),
        cmd.pending_changes(SN), cmd.get_task(SN, 4200001))] == [
        "/ipLoadbalancing/loadbalancer-1a2b/http/farm/77212",
        "/ipLoadbalancing/loadbalancer-1a2b/http/farm/77212/server",
        "/ipLoadbalancing/loadbalancer-1a2b/http/farm/77212/server/9",
        "/ipLoadbalancing/loadbalancer-1a2b/pendingChanges",
        "/ipLoadbalancing/loadbalancer-1a2b/task/4200001"]


@pytest.mark.parametrize("name", [
    "", "../other", "lb/../../me", "lb?x=1", "lb#x", "lb x", "lb\n", "lb%2F", "-lb", "lb;rm -rf /"])
def test_a_service_name_that_is_not_a_plain_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="service name"):
        cmd.get_frontend(name, 1)


@pytest.mark.parametrize("bad", [-1, True, "7", 1.5])
def test_ids_must_be_whole_numbers(bad: Any) -> None:
    with pytest.raises(ValueError, match="must be a whole number"):
        cmd.get_task(SN, bad)


def test_the_consumer_key_rules_with_explicit_ids_are_exactly_these() -> None:
    rules = cmd.access_rules(SN, frontend_id=70089, farm_ids=[77212, 77213])
    base = "/ipLoadbalancing/loadbalancer-1a2b"
    assert rules == [
        {"method": "GET", "path": f"{base}/http/frontend/70089"},
        {"method": "PUT", "path": f"{base}/http/frontend/70089"},
        {"method": "GET", "path": f"{base}/http/farm/77212"},
        {"method": "GET", "path": f"{base}/http/farm/77212/server"},
        {"method": "GET", "path": f"{base}/http/farm/77212/server/*"},
        {"method": "GET", "path": f"{base}/http/farm/77213"},
        {"method": "GET", "path": f"{base}/http/farm/77213/server"},
        {"method": "GET", "path": f"{base}/http/farm/77213/server/*"},
        {"method": "GET", "path": f"{base}/pendingChanges"},
        {"method": "GET", "path": f"{base}/task"},
        {"method": "GET", "path": f"{base}/task/*"},
        {"method": "POST", "path": f"{base}/refresh"},
    ]


def test_without_ids_the_consumer_key_rules_hold_wildcards_but_stay_on_one_service() -> None:
    assert [f"{r['method']} {r['path']}" for r in cmd.access_rules("lb-9")] == [
        "GET /ipLoadbalancing/lb-9/http/frontend/*",
        "PUT /ipLoadbalancing/lb-9/http/frontend/*",
        "GET /ipLoadbalancing/lb-9/http/farm/*",
        "GET /ipLoadbalancing/lb-9/http/farm/*/server",
        "GET /ipLoadbalancing/lb-9/http/farm/*/server/*",
        "GET /ipLoadbalancing/lb-9/pendingChanges",
        "GET /ipLoadbalancing/lb-9/task",
        "GET /ipLoadbalancing/lb-9/task/*",
        "POST /ipLoadbalancing/lb-9/refresh",
    ]


def frontend(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"frontendId": 70089, "defaultFarmId": 77212, "zone": "gra",
                            "port": "80", "displayName": None}
    data.update(changes)
    return data


def test_a_frontend_parses_with_its_port_as_a_string() -> None:
    assert cmd.parse_frontend(frontend()) == cmd.Frontend(70089, 77212, "gra", "80")
    assert cmd.parse_frontend(frontend(defaultFarmId=None)).default_farm_id is None


@pytest.mark.parametrize(("changes", "field"), [
    ({"port": 80}, "port"), ({"frontendId": "70089"}, "frontendId"),
    ({"defaultFarmId": True}, "defaultFarmId"), ({"zone": None}, "zone")])
def test_a_frontend_field_of_the_wrong_type_is_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"field '{field}'"):
        cmd.parse_frontend(frontend(**changes))


def test_list_answers_must_be_ids() -> None:
    assert cmd.parse_ids([3, 1, 2]) == [3, 1, 2]
    for bad in ({"ids": [1]}, [1, "2"], [True], None):
        with pytest.raises(ValueError, match="list of ids"):
            cmd.parse_ids(bad)


def test_a_server_names_its_farm_with_backend_id() -> None:
    server = cmd.parse_server({
        "serverId": 5, "backendId": 77212, "address": "10.0.0.5", "port": None,
        "displayName": "blue-1", "status": "active", "probe": True,
        "serverState": [{"instanceId": 1, "status": "UP", "checkStatus": "L7OK",
                         "checkCode": "200", "lastCheckContent": None, "checkTime": None}]})
    assert (server.farm_id, server.port, server.checks[0].check_code) == (77212, None, "200")
    with pytest.raises(ValueError, match="field 'backendId'"):
        cmd.parse_server({"serverId": 5, "farmId": 77212, "address": "10.0.0.5",
                          "status": "active"})


def test_pending_changes_keep_only_zones_with_changes() -> None:
    assert cmd.parse_pending_changes([{"zone": "gra", "number": 2},
                                      {"zone": "rbx", "number": 0}]) == [
        cmd.PendingChange("gra", 2)]
    assert cmd.parse_pending_changes([]) == []


def test_a_task_parses_its_status_and_zones() -> None:
    task = cmd.parse_task({"id": 4, "action": "refreshIplb", "status": "doing",
                           "progress": 50, "zones": ["gra"], "creationDate": "x",
                           "doneDate": None})
    assert task == cmd.Task(4, "refreshIplb", "doing", 50, ("gra",))


def server(status: str = "active", probe: bool = True,
           *checks: tuple[str, str, str]) -> cmd.Server:
    return cmd.Server(server_id=1, farm_id=2, address="10.0.0.1", port=None,
                      display_name=None, status=status, probe=probe,
                      checks=tuple(cmd.ServerCheck(index, s, c, code, "")
                                   for index, (s, c, code) in enumerate(checks, start=1)))


def test_a_server_up_on_every_instance_after_a_check_is_healthy() -> None:
    assert cmd.server_health(server("active", True, ("UP", "L7OK", "200"))) == (
        "UP", True, "L7OK 200")
    two = server("active", True, ("UP", "L7OK", "200"), ("UP", "L7OK", "200"))
    assert cmd.server_health(two) == (
        "UP", True, "instance 1: L7OK 200; instance 2: L7OK 200")


def test_a_server_down_on_one_instance_is_unhealthy_and_says_where() -> None:
    status, healthy, detail = cmd.server_health(
        server("active", True, ("UP", "L7OK", "200"), ("DOWN", "L4CON", "")))
    assert (status, healthy, detail) == ("DOWN/UP", False, "instance 2: L4CON")


def test_not_yet_checked_inactive_or_unreported_servers_are_not_healthy() -> None:
    assert cmd.server_health(server("active", True, ("UP", "INI", "")))[1] is False
    assert cmd.server_health(server("inactive", True, ("UP", "L7OK", "200"))) == (
        "inactive", False, "inactive in its farm (not load balanced)")
    assert cmd.server_health(server("active", False)) == (
        "unknown", False, "no serverState (probe off)")
    assert cmd.server_health(server("active", True))[2] == (
        "no serverState (no instance reported a check yet)")
