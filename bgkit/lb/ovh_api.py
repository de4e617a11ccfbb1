"""The OVHcloud API through the official ``ovh`` package: endpoint, credentials, errors.

Shared by both OVHcloud providers, ``ovh-iplb`` and ``ovh-cloud-lb``; a :class:`Product`
says which one a message is about (its bgkit.toml table, what its service is called).

**Endpoint.** ``[lb.ovh_iplb].endpoint`` (or ``[lb.ovh_cloud_lb].endpoint``) is a
python-ovh endpoint name (``ovh-eu``,
``ovh-ca``, ``ovh-us``...) or the http(s) URL of an API root such as
``http://127.0.0.1:8765/1.0`` (the sandbox's emulator, or a proxy). python-ovh only
takes names from its module-level ``ovh.client.ENDPOINTS`` table, so a URL is added to
that table under the URL itself (``register_endpoint``) before the client is built:
no private attribute is touched, a real name is never redefined, and the URL is also
the ``ovh.conf`` section that holds its credentials.

**Credentials** come only from python-ovh's own places, read with its own
``ovh.config.ConfigurationManager``: ``OVH_APPLICATION_KEY``, ``OVH_APPLICATION_SECRET``
and ``OVH_CONSUMER_KEY``, else the endpoint's section of ``./ovh.conf``,
``~/.ovh.conf``, ``/etc/ovh.conf`` or the optional ``config_file`` of the table. They
are never read from bgkit.toml and no message ever quotes them.

**Errors.** :meth:`OvhApi.call` is the one place where ``ovh`` exceptions become
:class:`~bgkit.errors.LoadBalancerError`; :func:`explain` builds the message: what
failed, OVHcloud's own words, what to do, and OVHcloud's query id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ovh
import ovh.config
import ovh.exceptions
import requests.exceptions

from bgkit.commands.ovh_iplb import ApiRequest
from bgkit.errors import LoadBalancerError

__all__ = ["CLOUD_LB", "IPLB", "ConsumerKeyGrant", "Credentials", "OvhApi", "Product",
           "explain", "find_credentials", "make_client", "register_endpoint",
           "request_consumer_key"]

CONNECT_TIMEOUT_S = 5.0
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")


@dataclass(frozen=True, slots=True)
class Product:
    """How messages name one OVHcloud product bgkit drives."""

    table: str  # the bgkit.toml table of its settings
    kind: str  # what its service_name names: "IPLB lb-1", "Public Cloud project 0123..."
    lister: str  # the call that lists the account's services
    key_options: str = ""  # `bgkit ovh consumer-key` options before --service

    def service(self, service_name: str) -> str:
        return f"{self.kind} {service_name}"

    def key_command(self, service_name: str) -> str:
        return f"bgkit ovh consumer-key {self.key_options}--service {service_name}"


IPLB = Product(table="lb.ovh_iplb", kind="IPLB", lister="GET /ipLoadbalancing")
CLOUD_LB = Product(table="lb.ovh_cloud_lb", kind="Public Cloud project",
                   lister="GET /cloud/project", key_options="--provider ovh-cloud-lb ")


def register_endpoint(endpoint: str, *, product: Product = IPLB) -> str:
    """The python-ovh endpoint name for ``endpoint``; a URL is registered as its own name.

    Raises:
        LoadBalancerError: neither a known name nor an http(s) URL.
    """
    table: dict[str, str] = ovh.client.ENDPOINTS
    if endpoint in table:
        return endpoint
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", endpoint):
        raise LoadBalancerError(
            f"[{product.table}].endpoint {endpoint!r} is neither an OVHcloud endpoint name "
            f"({', '.join(table)}) nor an http(s) URL of an API root")
    url = endpoint.rstrip("/")
    table.setdefault(url, url)
    return url


@dataclass(frozen=True, slots=True)
class Credentials:
    """What python-ovh's lookup found; ``repr`` never shows a value."""

    section: str
    application_key: str | None
    application_secret: str | None
    consumer_key: str | None

    def __repr__(self) -> str:
        found = [name for name in ("application_key", "application_secret", "consumer_key")
                 if getattr(self, name)]
        return f"Credentials(section={self.section!r}, found={found})"

    def missing(self, *, consumer_key: bool = True) -> list[str]:
        names = ["application_key", "application_secret"] + (
            ["consumer_key"] if consumer_key else [])
        return [name for name in names if not getattr(self, name)]


def find_credentials(section: str, *, config_file: Path | None = None) -> Credentials:
    """AK, AS and CK from ``OVH_*`` variables, else ``[section]`` of the ovh.conf files."""
    manager = ovh.config.ConfigurationManager()
    if config_file is not None:
        manager.read(str(config_file))

    def get(name: str) -> str | None:
        value = manager.get(section, name)
        return str(value) if value else None

    return Credentials(section=section, application_key=get("application_key"),
                       application_secret=get("application_secret"),
                       consumer_key=get("consumer_key"))


def make_client(endpoint: str, *, config_file: Path | None = None, timeout_s: float = 30.0,
                need_consumer_key: bool = True, service_name: str = "SERVICE",
                product: Product = IPLB) -> Any:
    """An ``ovh.Client`` for ``endpoint`` with credentials from the standard places.

    Raises:
        LoadBalancerError: a credential is missing (the message names the variables and
            the ovh.conf section to set) or python-ovh refuses the configuration.
    """
    name = register_endpoint(endpoint, product=product)
    credentials = find_credentials(name, config_file=config_file)
    missing = credentials.missing(consumer_key=need_consumer_key)
    if missing:
        where = f"the [{name}] section of ovh.conf (./ovh.conf, ~/.ovh.conf, /etc/ovh.conf"
        where += f" or {config_file})" if config_file else ")"
        hint = (f"; get a consumer key with `{product.key_command(service_name)}`"
                if "consumer_key" in missing else "")
        raise LoadBalancerError(
            f"no OVHcloud {', '.join(missing)} found for endpoint {name}: set "
            f"{', '.join('OVH_' + item.upper() for item in missing)} or put "
            f"{', '.join(missing)} in {where}{hint}")
    try:
        return ovh.Client(endpoint=name, application_key=credentials.application_key,
                          application_secret=credentials.application_secret,
                          consumer_key=credentials.consumer_key or None,
                          timeout=(CONNECT_TIMEOUT_S, timeout_s))
    except ovh.exceptions.APIError as error:  # InvalidConfiguration, InvalidRegion
        raise LoadBalancerError(f"python-ovh refused the configuration for endpoint {name}: "
                                f"{_said(error)}") from error


class OvhApi:
    """Signed calls to one service (an IPLB, a Public Cloud project); every failure is a
    LoadBalancerError."""

    def __init__(self, client: Any, *, endpoint: str, service_name: str,
                 product: Product = IPLB) -> None:
        self.client = client
        self.endpoint = endpoint
        self.service_name = service_name
        self.product = product

    @property
    def endpoint_url(self) -> str:
        return str(ovh.client.ENDPOINTS.get(self.endpoint, self.endpoint))

    def call(self, request: ApiRequest, *, config_key: str | None = None) -> Any:
        """Send ``request``; return the decoded JSON (None for a void answer).

        ``config_key`` names the bgkit.toml key behind the request's object, for a 404.

        Raises:
            LoadBalancerError: from :func:`explain`, for any ``ovh`` exception.
        """
        try:
            return self.client.call(request.method, request.target, request.body, True)
        except ovh.exceptions.APIError as error:
            raise explain(error, request, endpoint=self.endpoint_url,
                          service_name=self.service_name, config_key=config_key,
                          product=self.product) from error


@dataclass(frozen=True, slots=True)
class ConsumerKeyGrant:
    """A consumer key OVHcloud created, waiting for its owner to validate it."""

    endpoint: str
    consumer_key: str
    validation_url: str
    rules: tuple[tuple[str, str], ...]  # (method, path)

    def __repr__(self) -> str:
        return f"ConsumerKeyGrant(endpoint={self.endpoint!r}, rules={len(self.rules)})"


def request_consumer_key(*, endpoint: str, service_name: str,
                         rules: Sequence[Mapping[str, str]], product: Product = IPLB,
                         config_file: Path | None = None,
                         redirect_url: str | None = None) -> ConsumerKeyGrant:
    """Ask OVHcloud for a consumer key limited to ``rules`` (a provider's
    ``access_rules``: exactly the calls it makes on one service).

    The application key and secret come from the standard places (as for the provider).

    Raises:
        LoadBalancerError: no application key/secret, or OVHcloud refused the request.
    """
    name = register_endpoint(endpoint, product=product)
    client = make_client(name, config_file=config_file, need_consumer_key=False,
                         service_name=service_name, product=product)
    request = ApiRequest("POST", "/auth/credential", "a consumer key")
    granted = [dict(rule) for rule in rules]
    try:
        answer = client.request_consumerkey(granted, redirect_url=redirect_url)
    except ovh.exceptions.APIError as error:
        raise explain(error, request, endpoint=str(ovh.client.ENDPOINTS[name]),
                      service_name=service_name, product=product) from error
    return ConsumerKeyGrant(endpoint=name, consumer_key=str(answer["consumerKey"]),
                            validation_url=str(answer["validationUrl"]),
                            rules=tuple((rule["method"], rule["path"]) for rule in granted))


def explain(error: Any, request: ApiRequest, *, endpoint: str, service_name: str,
            config_key: str | None = None, product: Product = IPLB) -> LoadBalancerError:
    """The LoadBalancerError for one ``ovh`` exception raised by ``request``."""
    call = f"{request.method} {request.path}"
    said = _said(error)
    errors = ovh.exceptions
    new_key = (f"create a consumer key with the rules bgkit needs "
               f"(`{product.key_command(service_name)}`), validate it and set "
               "OVH_CONSUMER_KEY")
    if isinstance(error, errors.NotGrantedCall):
        text = (f"OVHcloud refused {call} ({said}): the consumer key has no access rule "
                f"`{request.method} {request.path}`; {new_key}")
    elif isinstance(error, errors.NotCredential):
        text = f"OVHcloud does not know the consumer key ({said}); {new_key}"
    elif isinstance(error, errors.InvalidCredential):
        text = (f"OVHcloud refused the consumer key ({said}): it is not validated yet, "
                f"expired or revoked; open its validation URL, or {new_key}")
    elif isinstance(error, errors.InvalidKey):
        text = (f"OVHcloud refused the application key ({said}): an application key works "
                f"only on the API it was created on ({endpoint} here); check "
                "OVH_APPLICATION_KEY or ovh.conf")
    elif isinstance(error, errors.Forbidden):
        text = (f"OVHcloud forbids {call} ({said}): the account behind these keys must own "
                f"{product.service(service_name)} and its IAM policies must allow the call")
    elif isinstance(error, errors.ResourceNotFoundError):
        text = _not_found(request, said, service_name, config_key, product)
    elif isinstance(error, errors.BadParametersError):
        text = _bad_parameters(call, said)
    elif isinstance(error, errors.ResourceConflictError):
        text = (f"OVHcloud refused {call} because of a conflict ({said}); another change "
                "may be under way on this service: retry in a moment")
    elif isinstance(error, errors.HTTPError):
        text = (f"cannot reach the OVHcloud API at {endpoint} for {call}: "
                f"{_network_cause(error)}; check the network and [{product.table}].endpoint")
    elif isinstance(error, errors.InvalidResponse):
        text = (f"the OVHcloud API at {endpoint} answered {call} with something that is not "
                "JSON (a proxy or an outage?); retry later")
    else:
        text = _other_status(call, said, getattr(getattr(error, "response", None),
                                                 "status_code", None), new_key)
    query_id = getattr(error, "query_id", None)
    return LoadBalancerError(text + (f" (OVH query id {query_id})" if query_id else ""))


def _said(error: Any) -> str:
    """OVHcloud's own message (python-ovh puts it in args[0]), never credentials."""
    if isinstance(error, ovh.exceptions.InvalidKey) and getattr(error, "response", None) is None:
        return "no application secret or consumer key was given to python-ovh"
    first = error.args[0] if getattr(error, "args", None) else ""
    return str(first).strip() or type(error).__name__


def _not_found(request: ApiRequest, said: str, service_name: str,
               config_key: str | None, product: Product) -> str:
    if "service" in said.lower():
        kind = "IPLB service" if product == IPLB else product.kind
        return (f"OVHcloud has no {kind} {service_name} for these credentials ({said}); "
                f"check [{product.table}].service_name (`{product.lister}` lists yours) and "
                "that the keys belong to the account that owns it")
    key = f"[{product.table}].{config_key}" if config_key else f"[{product.table}]"
    return f"OVHcloud has no {request.subject} ({said}); check {key}"


def _bad_parameters(call: str, said: str) -> str:
    lowered = said.lower()
    if "signature" in lowered:
        return (f"OVHcloud rejected the signature of {call} ({said}): the application secret "
                "does not belong to the application key; check OVH_APPLICATION_SECRET or "
                "ovh.conf")
    if "out of time" in lowered or "timestamp" in lowered:
        return (f"OVHcloud rejected {call} as out of time ({said}): this machine's clock "
                "moved since the first call; fix its time (NTP) and retry")
    return f"OVHcloud rejected {call} as bad parameters ({said})"


def _other_status(call: str, said: str, status: int | None, new_key: str) -> str:
    if status == 401:
        return f"OVHcloud wants a consumer key for {call} ({said}); {new_key}"
    if status == 429:
        return (f"OVHcloud is rate-limiting these keys ({call}: {said}); wait a minute and "
                "retry")
    if status is not None and 400 <= status < 500:
        return f"OVHcloud refused {call} (HTTP {status}: {said})"
    return (f"OVHcloud failed {call} (HTTP {status or '?'}: {said}); the fault is on "
            "OVHcloud's side: retry later, and give OVHcloud support the query id if it "
            "persists")


def _network_cause(error: Any) -> str:
    cause = error.args[1] if len(getattr(error, "args", ())) > 1 else None
    if isinstance(cause, requests.exceptions.ReadTimeout):
        return "no answer in time"
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return "could not connect in time"
    found = _ERRNO.search(str(cause)) if cause is not None else None
    return found.group(0).strip() if found else type(cause).__name__ if cause else str(error)
