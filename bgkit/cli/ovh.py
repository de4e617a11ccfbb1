"""``bgkit ovh consumer-key``: a consumer key that can do exactly what bgkit does.

OVHcloud signs every call with an application key and secret (created once, on the
``createApp`` page of your endpoint) and a consumer key, which carries access rules.
This asks OVHcloud for a consumer key restricted to the calls one provider makes:

- ``--provider ovh-iplb`` (the default): on one IPLB service
  (``bgkit.commands.ovh_iplb.access_rules``);
- ``--provider ovh-cloud-lb``: on one Public Cloud project's load balancer
  (``bgkit.commands.ovh_cloud_lb.access_rules``);

then prints the URL where the account owner validates it and the key to set as
``OVH_CONSUMER_KEY``. The application key and secret come from
``OVH_APPLICATION_KEY`` / ``OVH_APPLICATION_SECRET`` or ovh.conf, as for the provider.
Errors propagate as ``bgkit.errors`` exceptions; ``bgkit.cli`` maps them to exit codes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from click.core import ParameterSource

from bgkit.commands import ovh_cloud_lb, ovh_iplb
from bgkit.errors import UsageError
from bgkit.lb.ovh_api import CLOUD_LB, IPLB, Product, request_consumer_key

__all__ = ["ovh_group"]

_IPLB_ONLY = {"--frontend-id": "frontend_id", "--farm-id": "farm_ids"}
_CLOUD_ONLY = {"--region": "region", "--loadbalancer-id": "loadbalancer_id",
               "--listener-id": "listener_id", "--pool-id": "pool_ids"}


@click.group("ovh")
def ovh_group() -> None:
    """OVHcloud helpers for the ovh-iplb and ovh-cloud-lb load balancer providers."""


@ovh_group.command("consumer-key")
@click.option("--provider", type=click.Choice(["ovh-iplb", "ovh-cloud-lb"]),
              default="ovh-iplb", show_default=True,
              help="The provider whose calls the key may make.")
@click.option("--service", "service_name", required=True, metavar="NAME",
              help="ovh-iplb: the IP Load Balancing service (loadbalancer-1a2b3c4d); "
                   "ovh-cloud-lb: the Public Cloud project id.")
@click.option("--endpoint", default="ovh-eu", show_default=True,
              help="ovh-eu, ovh-ca, ovh-us... or the URL of an API root.")
@click.option("--frontend-id", type=click.IntRange(min=0), default=None,
              help="ovh-iplb: only this frontend (default: any frontend of the service).")
@click.option("--farm-id", "farm_ids", type=click.IntRange(min=0), multiple=True,
              help="ovh-iplb: only these farms; repeat for blue and green (default: any).")
@click.option("--region", default=None,
              help="ovh-cloud-lb: only this region, e.g. GRA11 (default: any region).")
@click.option("--loadbalancer-id", default=None,
              help="ovh-cloud-lb: only this load balancer (default: any).")
@click.option("--listener-id", default=None,
              help="ovh-cloud-lb: only this listener (default: any).")
@click.option("--pool-id", "pool_ids", multiple=True,
              help="ovh-cloud-lb: only these pools; repeat for blue and green (default: any).")
@click.option("--ovh-conf", "config_file", default=None,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="An ovh.conf holding the application key and secret, read on top of "
                   "./ovh.conf, ~/.ovh.conf and /etc/ovh.conf.")
@click.option("--redirect-url", default=None,
              help="Where OVHcloud sends the browser once the key is validated.")
@click.pass_context
def consumer_key(context: click.Context, provider: str, service_name: str, endpoint: str,
                 frontend_id: int | None, farm_ids: tuple[int, ...], region: str | None,
                 loadbalancer_id: str | None, listener_id: str | None,
                 pool_ids: tuple[str, ...], config_file: Path | None,
                 redirect_url: str | None) -> None:
    """Request a consumer key limited to one provider's calls on one service."""
    wrong = _IPLB_ONLY if provider == "ovh-cloud-lb" else _CLOUD_ONLY
    misplaced = [option for option, param in wrong.items()
                 if context.get_parameter_source(param) == ParameterSource.COMMANDLINE]
    if misplaced:
        raise UsageError(f"{', '.join(misplaced)}: not an option of --provider {provider} "
                         f"(options of ovh-iplb: {', '.join(_IPLB_ONLY)}; of ovh-cloud-lb: "
                         f"{', '.join(_CLOUD_ONLY)})")
    product: Product = IPLB
    try:
        if provider == "ovh-iplb":
            rules = ovh_iplb.access_rules(service_name, frontend_id=frontend_id,
                                          farm_ids=farm_ids)
        else:
            rules = ovh_cloud_lb.access_rules(
                service_name, region=region, loadbalancer_id=loadbalancer_id,
                listener_id=listener_id, pool_ids=pool_ids)
            product = dataclasses.replace(CLOUD_LB, key_options=(
                f"--provider ovh-cloud-lb --region {region} " if region else
                "--provider ovh-cloud-lb "))
    except ValueError as error:
        raise UsageError(str(error)) from error
    grant = request_consumer_key(endpoint=endpoint, service_name=service_name, rules=rules,
                                 product=product, config_file=config_file,
                                 redirect_url=redirect_url)
    click.echo(f"OVHcloud created a consumer key for {grant.endpoint} with these rules:")
    for method, path in grant.rules:
        click.echo(f"  {method:<4} {path}")
    click.echo("\nValidate it: open this URL and log in as the account that owns "
               f"{service_name}:\n  {grant.validation_url}")
    click.echo("\nThen give it to bgkit (keep it secret, like the application secret):\n"
               f"  export OVH_CONSUMER_KEY={grant.consumer_key}\n"
               f"or put consumer_key={grant.consumer_key} in the [{grant.endpoint}] section "
               "of ovh.conf.")
