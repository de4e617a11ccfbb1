"""The OVH boundary: every ovh exception becomes one LoadBalancerError that says what to do."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ovh
import ovh.exceptions as oe
import pytest
import requests.exceptions

from bgkit.commands import ovh_iplb as cmd
from bgkit.config import load_config
from bgkit.errors import LoadBalancerError
from bgkit.lb import get_provider
from bgkit.lb.ovh_api import explain, find_credentials, make_client, register_endpoint
from bgkit.lb.ovh_iplb import OvhIplbProvider
from tests.conftest import WriteConfig

PUT = cmd.set_default_farm("lb-1", 7, 9)
GET_FARM = cmd.get_farm("lb-1", 9)
QID = "EU.ext-3.5f2c1a.123.abcdef"
ENDPOINT = "https://eu.api.ovh.com/1.0"


class Response:
    """What python-ovh keeps of a ``requests.Response``: status and headers."""

    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers = {"X-OVH-QUERYID": QID}


def said(kind: type[Exception], message: str, status: int) -> Exception:
    return kind(message, response=Response(status))


def text(error: Exception, request: cmd.ApiRequest = PUT, **kwargs: Any) -> str:
    translated = explain(error, request, endpoint=ENDPOINT, service_name="lb-1", **kwargs)
    assert isinstance(translated, LoadBalancerError)
    return str(translated)


@pytest.fixture(autouse=True)
def no_ovh_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [name for name in os.environ if name.startswith("OVH_")]:
        monkeypatch.delenv(name)
    before = dict(ovh.client.ENDPOINTS)
    yield
    ovh.client.ENDPOINTS.clear()
    ovh.client.ENDPOINTS.update(before)


def test_a_call_not_granted_names_the_missing_rule_and_the_command() -> None:
    message = text(said(oe.NotGrantedCall, "This call has not been granted", 403))
    assert message == (
        "OVHcloud refused PUT /ipLoadbalancing/lb-1/http/frontend/7 (This call has not been "
        "granted): the consumer key has no access rule `PUT /ipLoadbalancing/lb-1/http/"
        "frontend/7`; create a consumer key with the rules bgkit needs (`bgkit ovh "
        "consumer-key --service lb-1`), validate it and set OVH_CONSUMER_KEY "
        f"(OVH query id {QID})")


@pytest.mark.parametrize(("error", "fragments"), [
    (said(oe.NotCredential, "This credential does not exist", 403),
     ["does not know the consumer key", "bgkit ovh consumer-key --service lb-1"]),
    (said(oe.InvalidCredential, "This credential is not valid", 403),
     ["not validated yet, expired or revoked", "open its validation URL"]),
    (said(oe.InvalidKey, "This application key is invalid", 403),
     ["refused the application key", f"created on ({ENDPOINT} here)", "OVH_APPLICATION_KEY"]),
    (said(oe.Forbidden, "Access denied by IAM policy", 403),
     ["forbids PUT /ipLoadbalancing/lb-1/http/frontend/7 (Access denied by IAM policy)",
      "must own IPLB lb-1"]),
    (said(oe.BadParametersError, "Invalid signature", 400),
     ["rejected the signature", "OVH_APPLICATION_SECRET"]),
    (said(oe.BadParametersError, "Query out of time", 400), ["clock", "NTP"]),
    (said(oe.BadParametersError, "[defaultFarmId] expected integer", 400),
     ["rejected PUT /ipLoadbalancing/lb-1/http/frontend/7 as bad parameters ([defaultFarmId]"]),
    (said(oe.ResourceConflictError, "Busy", 409), ["conflict (Busy)", "retry"]),
    (said(oe.APIError, "Internal server error", 500),
     ["OVHcloud failed PUT", "HTTP 500: Internal server error", "OVHcloud support"]),
    (said(oe.APIError, "Service unavailable", 503), ["HTTP 503"]),
    (said(oe.APIError, "You must login first", 401),
     ["wants a consumer key", "bgkit ovh consumer-key --service lb-1"]),
    (said(oe.APIError, "Too many requests", 429), ["rate-limiting", "wait a minute"]),
    (said(oe.APIError, "Method not allowed", 405), ["refused PUT", "(HTTP 405: Method"]),
])
def test_each_ovh_error_says_what_failed_what_to_do_and_keeps_the_query_id(
        error: Exception, fragments: list[str]) -> None:
    message = text(error)
    for fragment in fragments:
        assert fragment in message
    assert message.endswith(f"(OVH query id {QID})")


def test_a_missing_object_names_it_and_its_config_key() -> None:
    error = said(oe.ResourceNotFoundError,
                 "The requested object (farmId = 9) does not exist", 404)
    assert text(error, GET_FARM, config_key="farm_ids.green") == (
        "OVHcloud has no HTTP farm 9 of IPLB lb-1 (The requested object (farmId = 9) does "
        f"not exist); check [lb.ovh_iplb].farm_ids.green (OVH query id {QID})")


def test_a_missing_service_names_the_service_name_key() -> None:
    message = text(said(oe.ResourceNotFoundError, "This service does not exist", 404))
    assert "no IPLB service lb-1 for these credentials" in message
    assert "check [lb.ovh_iplb].service_name" in message


def test_network_errors_name_the_endpoint_and_the_cause_without_a_query_id() -> None:
    refused = requests.exceptions.ConnectionError(
        "HTTPSConnectionPool(host='eu.api.ovh.com', port=443): Max retries exceeded "
        "(Caused by NewConnectionError('<x>: Failed to establish a new connection: "
        "[Errno 111] Connection refused'))")
    message = text(oe.HTTPError("Low HTTP request failed error", refused))
    assert message == (f"cannot reach the OVHcloud API at {ENDPOINT} for PUT "
                       "/ipLoadbalancing/lb-1/http/frontend/7: [Errno 111] Connection refused; "
                       "check the network and [lb.ovh_iplb].endpoint")
    slow = oe.HTTPError("Low HTTP request failed error", requests.exceptions.ReadTimeout("x"))
    assert ": no answer in time;" in text(slow)


def test_a_non_json_answer_is_blamed_on_a_proxy_or_an_outage() -> None:
    error = oe.InvalidResponse("Failed to decode API response", ValueError("x"))
    assert "answered PUT /ipLoadbalancing/lb-1/http/frontend/7 with something that is not " \
           "JSON" in text(error)


def test_a_local_invalid_key_never_echoes_the_key_python_ovh_quoted() -> None:
    message = text(oe.InvalidKey("Invalid ConsumerKey 'S3cretValue'"))
    assert "S3cretValue" not in message
    assert "no application secret or consumer key was given" in message


def test_endpoint_names_are_kept_and_urls_are_registered_as_themselves() -> None:
    assert register_endpoint("ovh-ca") == "ovh-ca"
    assert register_endpoint("http://127.0.0.1:8765/1.0/") == "http://127.0.0.1:8765/1.0"
    assert ovh.client.ENDPOINTS["http://127.0.0.1:8765/1.0"] == "http://127.0.0.1:8765/1.0"
    assert ovh.client.ENDPOINTS["ovh-eu"] == "https://eu.api.ovh.com/1.0"
    for bad in ("eu", "ftp://x/1.0", "http://", "http://x y/1.0"):
        with pytest.raises(LoadBalancerError, match="neither an OVHcloud endpoint name"):
            register_endpoint(bad)


def test_credentials_come_from_the_environment_before_ovh_conf(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    conf = tmp_path / "ovh.conf"
    conf.write_text("[ovh-eu]\napplication_key=fileAK\napplication_secret=fileAS\n"
                    "consumer_key=fileCK\n")
    monkeypatch.setenv("OVH_CONSUMER_KEY", "envCK")
    found = find_credentials("ovh-eu", config_file=conf)
    assert (found.application_key, found.application_secret, found.consumer_key) == (
        "fileAK", "fileAS", "envCK")
    assert "fileAS" not in repr(found) and "envCK" not in repr(found)
    # Variables hold for every endpoint; file sections for theirs only.
    assert find_credentials("ovh-ca", config_file=conf).missing() == [
        "application_key", "application_secret"]


def test_missing_credentials_name_variables_and_section_and_never_values(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OVH_APPLICATION_KEY", "AK-value")
    conf = tmp_path / "ovh.conf"
    with pytest.raises(LoadBalancerError) as raised:
        make_client("ovh-eu", config_file=conf, service_name="lb-1")
    message = str(raised.value)
    assert message.startswith("no OVHcloud application_secret, consumer_key found for "
                              "endpoint ovh-eu: set OVH_APPLICATION_SECRET, OVH_CONSUMER_KEY")
    assert f"[ovh-eu] section of ovh.conf (./ovh.conf, ~/.ovh.conf, /etc/ovh.conf or {conf})" \
        in message
    assert "bgkit ovh consumer-key --service lb-1" in message and "AK-value" not in message


def test_a_client_for_a_url_endpoint_signs_for_that_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OVH_APPLICATION_KEY", "OVH_APPLICATION_SECRET", "OVH_CONSUMER_KEY"):
        monkeypatch.setenv(name, "x")
    client = make_client("http://127.0.0.1:9/1.0")
    assert client._get_target("/ipLoadbalancing") == "http://127.0.0.1:9/1.0/ipLoadbalancing"


OVH_LB = {"provider": "ovh-iplb", "ovh_iplb": {
    "service_name": "loadbalancer-1", "frontend_id": 1, "farm_ids": {"blue": 2, "green": 3}}}


def test_get_provider_builds_the_ovh_provider_without_calling_ovhcloud(
        write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OVH_APPLICATION_KEY", "OVH_APPLICATION_SECRET", "OVH_CONSUMER_KEY"):
        monkeypatch.setenv(name, "x")
    provider = get_provider(load_config(write_config({"lb": OVH_LB})))
    assert isinstance(provider, OvhIplbProvider)
    assert (provider.name, provider.api.endpoint_url, provider.farms) == (
        "ovh-iplb", "https://eu.api.ovh.com/1.0", {"blue": 2, "green": 3})


def test_get_provider_reads_config_file_relative_to_bgkit_toml(
        write_config: WriteConfig, tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ovh.conf").write_text(
        "[ovh-ca]\napplication_key=a\napplication_secret=b\nconsumer_key=c\n")
    lb = {**OVH_LB, "ovh_iplb": {**OVH_LB["ovh_iplb"], "endpoint": "ovh-ca",
                                 "config_file": "keys/ovh.conf"}}
    assert get_provider(load_config(write_config({"lb": lb}))).name == "ovh-iplb"


def test_get_provider_without_keys_says_where_keys_go(write_config: WriteConfig) -> None:
    with pytest.raises(LoadBalancerError, match=r"set OVH_APPLICATION_KEY, "
                                                r"OVH_APPLICATION_SECRET, OVH_CONSUMER_KEY .*"
                                                r"bgkit ovh consumer-key --service loadbalancer-1"):
        get_provider(load_config(write_config({"lb": OVH_LB})))


BLUE, GREEN = "3f0e2a64-1b2c-4d5e-8f90-a1b2c3d4e5f6", "4a1f3b75-2c3d-4e6f-9a01-b2c3d4e5f6a7"
CLOUD_LB = {"provider": "ovh-cloud-lb", "ovh_cloud_lb": {
    "service_name": "0123456789abcdef0123456789abcdef", "region": "GRA11",
    "loadbalancer_id": "5B2A4C86-3D4E-4F70-8B12-C3D4E5F6A7B8",
    "listener_id": "6c3b5d97-4e5f-4081-9c23-d4e5f6a7b8c9",
    "pool_ids": {"blue": BLUE, "green": GREEN}}}


def test_get_provider_builds_the_cloud_provider_with_the_configured_hosts(
        write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgkit.lb.ovh_cloud_lb import OvhCloudLbProvider

    for name in ("OVH_APPLICATION_KEY", "OVH_APPLICATION_SECRET", "OVH_CONSUMER_KEY"):
        monkeypatch.setenv(name, "x")
    config = load_config(write_config({"lb": CLOUD_LB, "switch": {"timeout_s": 42}}))
    provider = get_provider(config)
    assert isinstance(provider, OvhCloudLbProvider)
    assert provider.settings.loadbalancer_id == "5b2a4c86-3d4e-4f70-8b12-c3d4e5f6a7b8"
    assert provider.pools == {"blue": BLUE, "green": GREEN}
    assert provider.hosts == {"blue": (("127.0.1.1", config.service.port),),
                              "green": (("127.0.2.1", config.service.port),)}
    assert provider.apply_timeout_s == 42
    assert provider.api.product.table == "lb.ovh_cloud_lb"


@pytest.mark.parametrize(("changes", "problem"), [
    ({"pool_ids": {"blue": BLUE, "green": BLUE}},
     f"lb.ovh_cloud_lb: pool_ids: blue and green must be two different pools, both are {BLUE}"),
    ({"listener_id": "listener-1"},
     'lb.ovh_cloud_lb.listener_id: expected a uuid such as '
     '3f0e2a64-1b2c-4d5e-8f90-a1b2c3d4e5f6, got "listener-1"'),
    ({"region": "GRA 11"}, "lb.ovh_cloud_lb.region: expected a name"),
])
def test_the_cloud_table_names_each_mistake(changes: dict[str, Any], problem: str) -> None:
    from bgkit.config import parse_config
    from bgkit.errors import ConfigError
    from tests.conftest import example_data

    data = example_data()
    data["lb"] = {**data["lb"], **CLOUD_LB,
                  "ovh_cloud_lb": {**CLOUD_LB["ovh_cloud_lb"], **changes}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, path="bgkit.toml")
    assert caught.value.problems[0].startswith(problem), caught.value.problems


def test_the_cloud_provider_needs_its_table() -> None:
    from bgkit.config import parse_config
    from bgkit.errors import ConfigError
    from tests.conftest import example_data

    data = example_data()
    data["lb"]["provider"] = "ovh-cloud-lb"
    with pytest.raises(ConfigError, match=r'provider "ovh-cloud-lb" needs a '
                                          r'\[lb.ovh_cloud_lb\] table'):
        parse_config(data, path="bgkit.toml")
