"""``bgkit ovh consumer-key``: a consumer key that can do exactly what bgkit does.

OVHcloud signs every call with an application key and secret (created once, on the
``createApp`` page of your endpoint) and a consumer key, which carries access rules.
This asks OVHcloud for a consumer key restricted to the calls the ``ovh-iplb``
provider makes on one IPLB service (``bgkit.commands.ovh_iplb.access_rules``), then
prints the URL where the account owner validates it and the key to set as
``OVH_CONSUMER_KEY``. The application key and secret come from
``OVH_APPLICATION_KEY`` / ``OVH_APPLICATION_SECRET`` or ovh.conf, as for the provider.
Errors propagate as ``bgkit.errors`` exceptions; ``bgkit.cli`` maps them to exit codes.
"""

from __future__ import annotations

from pathlib import Path

import click

from bgkit.lb.ovh_api import request_consumer_key

__all__ = ["ovh_group"]


@click.group("ovh")
def ovh_group() -> None:
    """OVHcloud helpers for the ovh-iplb load balancer provider."""


@ovh_group.command("consumer-key")
@click.option("--service", "service_name", required=True, metavar="NAME",
              help="The IP Load Balancing service, e.g. loadbalancer-1a2b3c4d.")
@click.option("--endpoint", default="ovh-eu", show_default=True,
              help="ovh-eu, ovh-ca, ovh-us... or the URL of an API root.")
@click.option("--frontend-id", type=click.IntRange(min=0), default=None,
              help="Only this frontend (default: any frontend of the service).")
@click.option("--farm-id", "farm_ids", type=click.IntRange(min=0), multiple=True,
              help="Only these farms; repeat for blue and green (default: any farm).")
@click.option("--ovh-conf", "config_file", default=None,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="An ovh.conf holding the application key and secret, read on top of "
                   "./ovh.conf, ~/.ovh.conf and /etc/ovh.conf.")
@click.option("--redirect-url", default=None,
              help="Where OVHcloud sends the browser once the key is validated.")
def consumer_key(service_name: str, endpoint: str, frontend_id: int | None,
                 farm_ids: tuple[int, ...], config_file: Path | None,
                 redirect_url: str | None) -> None:
    """Request a consumer key limited to bgkit's calls on one IPLB service."""
    grant = request_consumer_key(endpoint=endpoint, service_name=service_name,
                                 frontend_id=frontend_id, farm_ids=farm_ids,
                                 config_file=config_file, redirect_url=redirect_url)
    click.echo(f"OVHcloud created a consumer key for {grant.endpoint} with these rules:")
    for method, path in grant.rules:
        click.echo(f"  {method:<4} {path}")
    click.echo("\nValidate it: open this URL and log in as the account that owns "
               f"{service_name}:\n  {grant.validation_url}")
    click.echo("\nThen give it to bgkit (keep it secret, like the application secret):\n"
               f"  export OVH_CONSUMER_KEY={grant.consumer_key}\n"
               f"or put consumer_key={grant.consumer_key} in the [{grant.endpoint}] section "
               "of ovh.conf.")
