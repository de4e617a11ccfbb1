"""``bgkit ovh consumer-key`` against the emulator: the key it prints runs the provider."""

from __future__ import annotations

import re
import urllib.request

import pytest
from click.testing import CliRunner

from bgkit.cli.ovh import ovh_group
from bgkit.commands.ovh_cloud_lb import access_rules as cloud_access_rules
from bgkit.errors import LoadBalancerError, UsageError
from tests.unit.ovh.conftest import (
    CLOUD,
    LB_ID,
    LISTENER_ID,
    POOLS,
    PROJECT,
    REGION,
    SN,
    CloudHarness,
    Harness,
)


def run(*args: str) -> str:
    result = CliRunner().invoke(ovh_group, ["consumer-key", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_printed_key_once_validated_is_all_the_provider_needs(
        iplb: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVH_CONSUMER_KEY")
    output = run("--service", SN, "--endpoint", iplb.url, "--frontend-id", "70089",
                 "--farm-id", "77212", "--farm-id", "77213")
    assert f"  PUT  /ipLoadbalancing/{SN}/http/frontend/70089\n" in output
    assert f"  POST /ipLoadbalancing/{SN}/refresh\n" in output
    url = re.search(r"^  (http://\S+credentialToken=\S+)$", output, re.MULTILINE)
    key = re.search(r"^  export OVH_CONSUMER_KEY=(\w{32})$", output, re.MULTILINE)
    assert url and key
    assert f"in the [{iplb.url}] section of ovh.conf" in output
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    opener.open(urllib.request.Request(url.group(1), data=b"", method="POST"), timeout=5).close()
    monkeypatch.setenv("OVH_CONSUMER_KEY", key.group(1))
    provider = iplb.provider()
    assert provider.switch("green", timeout_s=5).live == "green"
    assert len(provider.backend_health()) == 4


def test_without_an_application_key_it_says_where_to_put_one(
        iplb: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVH_APPLICATION_KEY")
    monkeypatch.delenv("OVH_APPLICATION_SECRET")
    with pytest.raises(LoadBalancerError, match="set OVH_APPLICATION_KEY, "
                                                "OVH_APPLICATION_SECRET or put"):
        run("--service", SN, "--endpoint", iplb.url)


def test_an_unknown_application_key_is_refused_by_ovhcloud(
        iplb: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVH_APPLICATION_KEY", "UnknownAppKey123")
    with pytest.raises(LoadBalancerError, match="refused the application key"):
        run("--service", SN, "--endpoint", iplb.url)


def test_a_service_name_that_cannot_go_in_a_rule_is_a_usage_error(iplb: Harness) -> None:
    with pytest.raises(UsageError, match="service name"):
        run("--service", "lb/*", "--endpoint", iplb.url)


def test_a_cloud_key_grants_exactly_the_cloud_providers_calls_and_runs_it(
        cloud: CloudHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVH_CONSUMER_KEY")
    output = run("--provider", "ovh-cloud-lb", "--service", PROJECT, "--endpoint", cloud.url,
                 "--region", REGION, "--loadbalancer-id", LB_ID, "--listener-id", LISTENER_ID,
                 "--pool-id", POOLS["blue"], "--pool-id", POOLS["green"])
    rules = re.findall(r"^  (GET|PUT|POST|DELETE) +(\S+)$", output, re.MULTILINE)
    assert rules == [(rule["method"], rule["path"]) for rule in cloud_access_rules(
        PROJECT, region=REGION, loadbalancer_id=LB_ID, listener_id=LISTENER_ID,
        pool_ids=[POOLS["blue"], POOLS["green"]])]
    assert ("PUT", f"{CLOUD}/listener/{LISTENER_ID}") in rules and len(rules) == 7
    url = re.search(r"^  (http://\S+credentialToken=\S+)$", output, re.MULTILINE)
    key = re.search(r"^  export OVH_CONSUMER_KEY=(\w{32})$", output, re.MULTILINE)
    assert url and key
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    opener.open(urllib.request.Request(url.group(1), data=b"", method="POST"), timeout=5).close()
    monkeypatch.setenv("OVH_CONSUMER_KEY", key.group(1))
    provider = cloud.provider()
    assert provider.switch("green", timeout_s=5).live == "green"
    assert len(provider.backend_health()) == 4


def test_without_ids_the_cloud_rules_hold_wildcards(cloud: CloudHarness) -> None:
    output = run("--provider", "ovh-cloud-lb", "--service", PROJECT, "--endpoint", cloud.url)
    assert f"  PUT  /cloud/project/{PROJECT}/region/*/loadbalancing/listener/*\n" in output


@pytest.mark.parametrize(("args", "message"), [
    (["--provider", "ovh-cloud-lb", "--frontend-id", "1"],
     "--frontend-id: not an option of --provider ovh-cloud-lb"),
    (["--region", "GRA11"], "--region: not an option of --provider ovh-iplb"),
    (["--provider", "ovh-cloud-lb", "--pool-id", "blue"], "pool id must be a lower-case uuid"),
    (["--provider", "ovh-cloud-lb", "--region", "GRA/11"], "region 'GRA/11' must be"),
])
def test_options_of_the_other_provider_or_bad_ids_are_usage_errors(
        cloud: CloudHarness, args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        run(*args, "--service", PROJECT, "--endpoint", cloud.url)
