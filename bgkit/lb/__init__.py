"""Load balancer providers by name: ``get_provider(config)`` builds the configured one.

Providers are imported only when asked for, so importing ``bgkit.lb`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bgkit.errors import UsageError
from bgkit.lb.base import (
    BackendServer,
    LbState,
    LoadBalancer,
    PoolName,
    SwitchResult,
    other_pool,
)

if TYPE_CHECKING:
    from bgkit.config import Config

__all__ = [
    "BackendServer",
    "LbState",
    "LoadBalancer",
    "PoolName",
    "SwitchResult",
    "get_provider",
    "other_pool",
    "provider_names",
]

Factory = Callable[["Config"], LoadBalancer]


def _haproxy(config: Config) -> LoadBalancer:
    from bgkit.lb.haproxy import HaproxyProvider

    if config.lb.haproxy is None:  # load_config already refuses this
        raise UsageError('provider "haproxy" needs a [lb.haproxy] table in bgkit.toml')
    return HaproxyProvider(config.lb.haproxy, base_dir=config.path.parent)


def _ovh_iplb(config: Config) -> LoadBalancer:
    from pathlib import Path

    from bgkit.lb.ovh_iplb import OvhIplbProvider

    settings = config.lb.ovh_iplb
    if settings is None:  # load_config already refuses this
        raise UsageError('provider "ovh-iplb" needs a [lb.ovh_iplb] table in bgkit.toml')
    config_file = (config.resolve(str(Path(settings.config_file).expanduser()))
                   if settings.config_file else None)
    return OvhIplbProvider.from_settings(settings, config_file=config_file)


def _ovh_cloud_lb(config: Config) -> LoadBalancer:
    from pathlib import Path

    from bgkit.lb.ovh_cloud_lb import OvhCloudLbProvider

    settings = config.lb.ovh_cloud_lb
    if settings is None:  # load_config already refuses this
        raise UsageError('provider "ovh-cloud-lb" needs a [lb.ovh_cloud_lb] table in '
                         "bgkit.toml")
    config_file = (config.resolve(str(Path(settings.config_file).expanduser()))
                   if settings.config_file else None)
    hosts: dict[PoolName, tuple[tuple[str, int], ...]] = {
        pool: tuple((host.address, config.service.port) for host in config.pools.get(pool).hosts)
        for pool in ("blue", "green")}
    return OvhCloudLbProvider.from_settings(settings, hosts=hosts, config_file=config_file,
                                            apply_timeout_s=config.switch.timeout_s)


_PROVIDERS: dict[str, Factory] = {
    "haproxy": _haproxy,
    "ovh-iplb": _ovh_iplb,
    "ovh-cloud-lb": _ovh_cloud_lb,
}


def provider_names() -> list[str]:
    """Every provider name ``[lb].provider`` may hold, in registry order."""
    return list(_PROVIDERS)


def get_provider(config: Config) -> LoadBalancer:
    """The provider named by ``config.lb.provider``, built from its settings.

    Raises:
        UsageError: no provider has that name (the message lists the valid ones).
        LoadBalancerError: the provider exists but cannot be used here.
    """
    name = config.lb.provider
    factory = _PROVIDERS.get(name)
    if factory is None:
        raise UsageError(f'no load balancer provider named "{name}" '
                         f"(providers: {', '.join(provider_names())})")
    return factory(config)
