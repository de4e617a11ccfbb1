"""The emulator's config file, the objects it starts with, and the blue-green seed.

The config file is JSON, kept with mode 0600 because it holds the application secret
and the consumer keys (OVHcloud's side of the credentials)::

    {"listen": {"host": "127.0.0.1", "port": 8765},
     "applications": {"<application key>": "<application secret>"},
     "consumer_keys": [{"key": "<consumer key>", "application_key": "<application key>",
                        "rules": [{"method": "GET", "path": "/*"}]}],
     "time_window_s": 180, "clock_offset_s": 0,
     "faults": {"refresh_delay_s": 0.5},
     "services": [{"serviceName": "loadbalancer-sandbox", "zones": ["gra"],
                   "frontends": [...], "farms": [...], "servers": [...],
                   "data_plane": {"zone": "gra", "frontend_id": 70089,
                                  "runtime_api": "...", "map_file": "...",
                                  "farm_pools": {"77212": "blue", "77213": "green"}}}],
     "clouds": [{"serviceName": "<project id>", "region": "GRA11",
                 "loadbalancers": [...], "listeners": [...], "pools": [...],
                 "members": {"<pool id>": [...]}, "unmonitored_pools": [],
                 "data_plane": {"listener_id": "...", "runtime_api": "...",
                                "map_file": "...",
                                "pool_colours": {"<pool id>": "blue", ...}}}]}

Frontends, farms and servers (IPLB), load balancers, listeners, pools and members
(Public Cloud, ``clouds``, optional) are whole objects of the schemas' models; the
builders below and in ``cloud_seed`` make them so. ``load_emulator`` raises ValueError
naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from bgkit.lb.base import PoolName
from bgkit.sandbox.ovh_api.app import Emulator
from bgkit.sandbox.ovh_api.auth import ApiError, ConsumerKey, Keyring, parse_rules
from bgkit.sandbox.ovh_api.cloudlb import CloudRegion
from bgkit.sandbox.ovh_api.dataplane import BackendId, DataPlane, HaproxyDataPlane
from bgkit.sandbox.ovh_api.faults import Faults
from bgkit.sandbox.ovh_api.iplb import IplbService

__all__ = ["blue_green_service", "farm_json", "frontend_json", "load_emulator",
           "server_json"]


def frontend_json(*, frontend_id: int, port: str, zone: str, default_farm_id: int | None,
                  display_name: str | None = None) -> dict[str, Any]:
    """A whole ``ipLoadbalancing.frontendHttp.FrontendHttp``."""
    return {"allowedSource": None, "dedicatedIpfo": None, "defaultFarmId": default_farm_id,
            "defaultSslId": None, "deniedSource": None, "disabled": False,
            "displayName": display_name, "frontendId": frontend_id, "hsts": False,
            "httpHeader": None, "port": port, "redirectLocation": None, "ssl": False,
            "vrackNetworkId": None, "vrackVrouterId": None, "zone": zone}


def farm_json(*, farm_id: int, zone: str, port: int | None, health_path: str,
              display_name: str | None = None) -> dict[str, Any]:
    """A whole ``ipLoadbalancing.backendHttp.BackendHttp`` with an HTTP status probe."""
    probe = {"forceSsl": False, "interval": 30, "match": "status", "method": "GET",
             "negate": False, "pattern": "200", "port": None, "type": "http",
             "url": health_path}
    return {"balance": "roundrobin", "displayName": display_name, "farmId": farm_id,
            "port": port, "probe": probe, "stickiness": None, "vrackNetworkId": None,
            "zone": zone}


def server_json(*, server_id: int, farm_id: int, address: str, port: int | None = None,
                display_name: str | None = None) -> dict[str, Any]:
    """A ``BackendHTTPServer`` without ``serverState`` (the emulator adds it live)."""
    return {"address": address, "backendId": farm_id, "backup": False, "chain": None,
            "cookie": None, "displayName": display_name, "onMarkedDown": None, "port": port,
            "probe": True, "proxyProtocolVersion": None, "serverId": server_id,
            "ssl": False, "status": "active", "weight": 1}


def blue_green_service(*, service_name: str, zone: str, frontend_id: int, public_port: int,
                       farm_ids: Mapping[PoolName, int], live: PoolName, app_port: int,
                       health_path: str, hosts: Sequence[tuple[PoolName, str, str]],
                       first_server_id: int = 300_001) -> dict[str, Any]:
    """OVHcloud's blue-green layout: one farm per pool, one frontend on the live one.

    ``hosts`` are ``(pool, name, address)``; servers inherit the farm's port.
    """
    servers = [server_json(server_id=first_server_id + index, farm_id=farm_ids[pool],
                           address=address, display_name=name)
               for index, (pool, name, address) in enumerate(hosts)]
    return {
        "serviceName": service_name, "zones": [zone],
        "frontends": [frontend_json(frontend_id=frontend_id, port=str(public_port),
                                    zone=zone, default_farm_id=farm_ids[live],
                                    display_name="bgkit-public")],
        "farms": [farm_json(farm_id=farm_ids[pool], zone=zone, port=app_port,
                            health_path=health_path, display_name=pool)
                  for pool in ("blue", "green")],
        "servers": servers,
    }


DataPlaneFactory = Callable[[Mapping[str, Any]], DataPlane]


def _haproxy(data: Mapping[str, Any]) -> DataPlane:
    pools: dict[BackendId, PoolName] = (
        {int(farm): cast(PoolName, pool) for farm, pool in data["farm_pools"].items()}
        if "farm_pools" in data else
        {str(pool_id): cast(PoolName, pool) for pool_id, pool in data["pool_colours"].items()})
    return HaproxyDataPlane(runtime_api=str(data["runtime_api"]),
                            map_file=str(data["map_file"]), farm_pools=pools)


def load_emulator(config: Mapping[str, Any], *, log: Callable[[str], None] | None = None,
                  data_plane: DataPlaneFactory = _haproxy) -> tuple[Emulator, str, int]:
    """The emulator a config file describes, and the host and port it listens on.

    Raises:
        ValueError: a section is missing or malformed.
    """
    try:
        keyring = Keyring(applications=dict(config["applications"]),
                          time_window_s=float(config.get("time_window_s", 180.0)))
        for item in config.get("consumer_keys", ()):
            key = ConsumerKey(key=str(item["key"]),
                              application_key=str(item["application_key"]),
                              rules=parse_rules(item["rules"]))
            keyring.consumer_keys[key.key] = key
        services = {item["serviceName"]: _service(item, data_plane)
                    for item in config.get("services", ())}
        clouds = {(str(item["serviceName"]), str(item["region"])): _cloud(item, data_plane)
                  for item in config.get("clouds", ())}
        listen = config.get("listen", {})
        host, port = str(listen.get("host", "127.0.0.1")), int(listen.get("port", 0))
    except (KeyError, TypeError) as error:
        raise ValueError(f"emulator config: missing or malformed {error}") from error
    except ApiError as error:  # malformed access rules
        raise ValueError(f"emulator config: consumer key rules: {error}") from error
    emulator = Emulator(keyring=keyring, services=services,
                        faults=Faults.from_json(config.get("faults", {})),
                        clock_offset_s=float(config.get("clock_offset_s", 0.0)), log=log,
                        clouds=clouds)
    return emulator, host, port


def _cloud(item: Mapping[str, Any], data_plane: DataPlaneFactory) -> CloudRegion:
    plane = item.get("data_plane")
    return CloudRegion(
        service_name=str(item["serviceName"]), region=str(item["region"]),
        loadbalancers=list(item["loadbalancers"]), listeners=list(item["listeners"]),
        pools=list(item["pools"]), members=dict(item.get("members", {})),
        unmonitored_pools=tuple(item.get("unmonitored_pools", ())),
        data_plane=data_plane(plane) if plane else None,
        data_plane_listener=str(plane["listener_id"]) if plane else None)


def _service(item: Mapping[str, Any], data_plane: DataPlaneFactory) -> IplbService:
    plane = item.get("data_plane")
    return IplbService(
        service_name=str(item["serviceName"]), zones=list(item["zones"]),
        frontends=list(item["frontends"]), farms=list(item["farms"]),
        servers=list(item["servers"]),
        data_plane=data_plane(plane) if plane else None,
        data_plane_zone=plane.get("zone") if plane else None,
        data_plane_frontend=int(plane["frontend_id"]) if plane else None)
