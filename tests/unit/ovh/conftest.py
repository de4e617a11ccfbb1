"""An OVH API emulator per test, in this process, with an in-memory data plane.

``iplb`` serves one blue-green IPLB service on a loopback port; ``cloud`` one
blue-green Public Cloud load balancer (a listener, a pool per colour). bgkit's keys (the
``OVH_*`` variables it sets) carry exactly bgkit's access rules; ``admin`` is an
all-access consumer key for arranging a test (staging unrelated changes...).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ovh
import pytest

from bgkit.commands.ovh_cloud_lb import access_rules as cloud_access_rules
from bgkit.commands.ovh_iplb import access_rules
from bgkit.config import OvhCloudLbSettings, OvhIplbSettings
from bgkit.lb.ovh_cloud_lb import OvhCloudLbProvider
from bgkit.lb.ovh_iplb import OvhIplbProvider
from bgkit.sandbox.ovh_api.cloud_seed import blue_green_cloud, stable_id
from bgkit.sandbox.ovh_api.dataplane import MemoryDataPlane
from bgkit.sandbox.ovh_api.seed import blue_green_service, load_emulator
from bgkit.sandbox.ovh_api.server import EmulatorServer, start_in_thread

SN = "loadbalancer-test"
FRONTEND_ID = 70089
FARMS = {"blue": 77212, "green": 77213}
AK, AS = "AppKey0123456789", "AppSecret0123456789abcdefghijklm"
CK, ADMIN_CK = "ConsumerKey0123456789abcdefghijk", "AdminKey0123456789abcdefghijklmn"
HOSTS = [("blue", "blue-1", "127.0.1.1"), ("blue", "blue-2", "127.0.1.2"),
         ("green", "green-1", "127.0.2.1"), ("green", "green-2", "127.0.2.2")]
APP_PORT = 8080
ALL_ACCESS = [{"method": m, "path": "/*"} for m in ("GET", "POST", "PUT", "DELETE")]


def emulator_config(**faults: Any) -> dict[str, Any]:
    service = blue_green_service(service_name=SN, zone="gra", frontend_id=FRONTEND_ID,
                                 public_port=8000, farm_ids=FARMS, live="blue",
                                 app_port=APP_PORT, health_path="/health", hosts=HOSTS)
    service["data_plane"] = {"zone": "gra", "frontend_id": FRONTEND_ID}
    return {"applications": {AK: AS},
            "consumer_keys": [
                {"key": CK, "application_key": AK,
                 "rules": access_rules(SN, frontend_id=FRONTEND_ID, farm_ids=[*FARMS.values()])},
                {"key": ADMIN_CK, "application_key": AK, "rules": ALL_ACCESS}],
            "services": [service], "faults": {"refresh_delay_s": 0.1, **faults}}


@dataclass
class Harness:
    server: EmulatorServer
    plane: MemoryDataPlane

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def root(self) -> str:
        return self.url.removesuffix("/1.0")

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.root}{path}", data=data, method=method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=5) as answer:
            return json.loads(answer.read())

    def faults(self, **changes: Any) -> None:
        self.control("POST", "/_emulator/faults", changes)

    def journal(self) -> list[dict[str, Any]]:
        return list(self.control("GET", "/_emulator/journal"))

    def client(self, consumer_key: str = ADMIN_CK, secret: str = AS,
               application_key: str = AK) -> Any:
        name = self.url
        ovh.client.ENDPOINTS.setdefault(name, name)
        return ovh.Client(endpoint=name, application_key=application_key,
                          application_secret=secret, consumer_key=consumer_key)

    def settings(self, **changes: Any) -> OvhIplbSettings:
        values: dict[str, Any] = {"endpoint": self.url, "service_name": SN,
                                  "frontend_id": FRONTEND_ID, "farm_ids": FARMS}
        values.update(changes)
        return OvhIplbSettings(**values)

    def provider(self, *, request_timeout_s: float = 5.0, **changes: Any) -> OvhIplbProvider:
        built = OvhIplbProvider.from_settings(self.settings(**changes),
                                              request_timeout_s=request_timeout_s)
        built.poll_interval_s = built.max_poll_interval_s = 0.02
        return built

    def frontend(self) -> dict[str, Any]:
        return dict(self.client().get(f"/ipLoadbalancing/{SN}/http/frontend/{FRONTEND_ID}"))

    def pending(self) -> list[dict[str, Any]]:
        return list(self.client().get(f"/ipLoadbalancing/{SN}/pendingChanges"))


@pytest.fixture(autouse=True)
def ovh_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No stray OVH_* keys or proxies: only what a test sets."""
    for name in [name for name in os.environ if name.startswith("OVH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@contextlib.contextmanager
def running_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """A fresh emulator, and bgkit's keys in the environment."""
    plane = MemoryDataPlane()
    emulator, _, _ = load_emulator(emulator_config(), data_plane=lambda data: plane)
    server = start_in_thread(emulator)
    monkeypatch.setenv("OVH_APPLICATION_KEY", AK)
    monkeypatch.setenv("OVH_APPLICATION_SECRET", AS)
    monkeypatch.setenv("OVH_CONSUMER_KEY", CK)
    try:
        yield Harness(server, plane)
    finally:
        server.close()


@pytest.fixture
def iplb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    with running_emulator(monkeypatch) as harness:
        yield harness


# --- the Public Cloud Load Balancer (ovh-cloud-lb) -------------------------------------

PROJECT = "0123456789abcdef0123456789abcdef"
REGION = "GRA11"
LB_ID = stable_id("test/loadbalancer")
LISTENER_ID = stable_id("test/listener")
POOLS = {"blue": stable_id("test/pool/blue"), "green": stable_id("test/pool/green")}
CLOUD = f"/cloud/project/{PROJECT}/region/{REGION}/loadbalancing"
CLOUD_HOSTS = {"blue": (("127.0.1.1", APP_PORT), ("127.0.1.2", APP_PORT)),
               "green": (("127.0.2.1", APP_PORT), ("127.0.2.2", APP_PORT))}


def cloud_emulator_config(*, unmonitored: tuple[str, ...] = (), **faults: Any) -> dict[str, Any]:
    region = blue_green_cloud(service_name=PROJECT, region=REGION, loadbalancer_id=LB_ID,
                              listener_id=LISTENER_ID, pool_ids=POOLS, live="blue",
                              public_port=8000, app_port=APP_PORT, hosts=HOSTS)
    region["data_plane"] = {"listener_id": LISTENER_ID}
    region["unmonitored_pools"] = list(unmonitored)
    rules = cloud_access_rules(PROJECT, region=REGION, loadbalancer_id=LB_ID,
                               listener_id=LISTENER_ID, pool_ids=[*POOLS.values()])
    return {"applications": {AK: AS},
            "consumer_keys": [{"key": CK, "application_key": AK, "rules": rules},
                              {"key": ADMIN_CK, "application_key": AK, "rules": ALL_ACCESS}],
            "clouds": [region], "faults": {"provisioning_delay_s": 0.1, **faults}}


class CloudHarness(Harness):
    """The emulator serving one blue-green Public Cloud load balancer."""

    def cloud_settings(self, **changes: Any) -> OvhCloudLbSettings:
        values: dict[str, Any] = {"endpoint": self.url, "service_name": PROJECT,
                                  "region": REGION, "loadbalancer_id": LB_ID,
                                  "listener_id": LISTENER_ID, "pool_ids": POOLS}
        values.update(changes)
        return OvhCloudLbSettings(**values)

    def provider(self, *, request_timeout_s: float = 5.0,  # type: ignore[override]
                 apply_timeout_s: float = 5.0, hosts: Any = None,
                 **changes: Any) -> OvhCloudLbProvider:
        built = OvhCloudLbProvider.from_settings(
            self.cloud_settings(**changes), hosts=hosts or CLOUD_HOSTS,
            request_timeout_s=request_timeout_s, apply_timeout_s=apply_timeout_s)
        built.poll_interval_s = built.max_poll_interval_s = 0.02
        return built

    def listener(self) -> dict[str, Any]:
        return dict(self.client().get(f"{CLOUD}/listener/{LISTENER_ID}"))

    def loadbalancer(self) -> dict[str, Any]:
        return dict(self.client().get(f"{CLOUD}/loadbalancer/{LB_ID}"))

    def wait_active(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.loadbalancer()["provisioningStatus"] != "active":
            assert time.monotonic() < deadline, "the load balancer never became active"
            time.sleep(0.02)


@contextlib.contextmanager
def running_cloud_emulator(monkeypatch: pytest.MonkeyPatch, **config: Any) -> \
        Iterator[CloudHarness]:
    plane = MemoryDataPlane()
    emulator, _, _ = load_emulator(cloud_emulator_config(**config),
                                   data_plane=lambda data: plane)
    server = start_in_thread(emulator)
    monkeypatch.setenv("OVH_APPLICATION_KEY", AK)
    monkeypatch.setenv("OVH_APPLICATION_SECRET", AS)
    monkeypatch.setenv("OVH_CONSUMER_KEY", CK)
    try:
        yield CloudHarness(server, plane)
    finally:
        server.close()


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudHarness]:
    with running_cloud_emulator(monkeypatch) as harness:
        yield harness
