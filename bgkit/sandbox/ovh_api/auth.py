"""How OVHcloud authenticates API calls, as the emulator checks them.

A signed call carries ``X-Ovh-Application`` (AK), ``X-Ovh-Consumer`` (CK),
``X-Ovh-Timestamp`` and ``X-Ovh-Signature`` = ``"$1$" + sha1_hex(AS + "+" + CK + "+" +
METHOD + "+" + full URL with query + "+" + body + "+" + timestamp)``. Checks, in order,
each with the body and status OVHcloud answers (as recorded by OVH's own SDK tests and
users' reports): unknown AK -> 403 ``INVALID_KEY``; no CK -> 401 ``NOT_AUTHENTICATED``
(inferred: no published example); unknown CK -> 403 ``NOT_CREDENTIAL``; CK of another
application or not validated -> 403 ``INVALID_CREDENTIAL``; timestamp outside the
window -> 400 ``QUERY_TIME_OUT``; wrong signature -> 400 ``INVALID_SIGNATURE``; a call
no access rule of the CK grants -> 403 ``NOT_GRANTED_CALL``. In a rule's path ``*``
stands for any run of characters, ``/`` included (``GET /*`` grants every GET); the
query string is not part of the match. The timestamp window is ``time_window_s`` (180 s
unless configured; OVHcloud does not publish its own).

Errors that are not about authentication have OVHcloud's other shape,
``{"class": "Client::NotFound", "message": ...}``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

__all__ = [
    "ApiError",
    "ConsumerKey",
    "Keyring",
    "Rule",
    "api_error",
    "auth_error",
    "new_key",
    "parse_rules",
    "rule_allows",
    "signature",
]

METHODS = ("GET", "POST", "PUT", "DELETE")
CredentialState = Literal["pendingValidation", "validated", "refused", "expired"]
_AUTH_ERRORS: dict[str, tuple[int, str]] = {
    "INVALID_KEY": (403, "This application key is invalid"),
    "NOT_AUTHENTICATED": (401, "You must login first"),
    "NOT_CREDENTIAL": (403, "This credential does not exist"),
    "INVALID_CREDENTIAL": (403, "This credential is not valid"),
    "QUERY_TIME_OUT": (400, "Query out of time"),
    "INVALID_SIGNATURE": (400, "Invalid signature"),
    "NOT_GRANTED_CALL": (403, "This call has not been granted"),
}
_CLASSES = {400: "Client::BadRequest", 404: "Client::NotFound", 409: "Client::Conflict",
            500: "Server::InternalServerError", 501: "Server::NotImplemented",
            503: "Server::ServiceUnavailable"}


class ApiError(Exception):
    """An answer other than 2xx: its status and its JSON body."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        self.status = status
        self.body = dict(body)
        super().__init__(f"{status} {body.get('message')}")


def auth_error(code: str) -> ApiError:
    """The authentication error ``code`` exactly as OVHcloud answers it."""
    status, message = _AUTH_ERRORS[code]
    return ApiError(status, {"errorCode": code,
                             "httpCode": f"{status} {HTTPStatus(status).phrase}",
                             "message": message})


def api_error(status: int, message: str) -> ApiError:
    """A non-authentication error: ``{"class": "Client::NotFound", "message": ...}``."""
    return ApiError(status, {"class": _CLASSES.get(status, "Server::InternalServerError"),
                             "message": message})


def signature(*, application_secret: str, consumer_key: str, method: str, url: str,
              body: str, timestamp: str) -> str:
    """OVHcloud's request signature (python-ovh's ``raw_call`` computes the same)."""
    text = "+".join([application_secret, consumer_key, method.upper(), url, body, timestamp])
    return "$1$" + hashlib.sha1(text.encode("utf-8")).hexdigest()  # noqa: S324 (OVH's scheme)


@dataclass(frozen=True, slots=True)
class Rule:
    method: str
    path: str

    def allows(self, method: str, path: str) -> bool:
        if method.upper() != self.method:
            return False
        pattern = ".*".join(re.escape(part) for part in self.path.split("*"))
        return re.fullmatch(pattern, path) is not None


def rule_allows(rules: tuple[Rule, ...], method: str, path: str) -> bool:
    """Whether one of ``rules`` grants ``METHOD path`` (path without query string)."""
    return any(rule.allows(method, path) for rule in rules)


def parse_rules(value: object) -> tuple[Rule, ...]:
    """``accessRules`` of ``POST /auth/credential``; 400 as OVHcloud words it if malformed."""
    malformed = api_error(400, "Body parameter accessRules isn't formated correctly")
    if not isinstance(value, list) or not value:
        raise malformed
    rules: list[Rule] = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) != {"method", "path"}:
            raise malformed
        method, path = item["method"], item["path"]
        if method not in METHODS or not isinstance(path, str) or not path.startswith("/"):
            raise malformed
        rules.append(Rule(method, path))
    return tuple(rules)


def _same(expected: str, given: str) -> bool:
    """Constant-time comparison that accepts any text (headers may not be ASCII)."""
    return secrets.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def new_key(length: int) -> str:
    """A random key of letters and digits, like OVHcloud's AK (16), AS and CK (32)."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(slots=True)
class ConsumerKey:
    key: str
    application_key: str
    rules: tuple[Rule, ...]
    state: CredentialState = "validated"
    token: str = field(default_factory=lambda: new_key(64))  # of its validation URL
    redirection: str | None = None


@dataclass(slots=True)
class Keyring:
    """Applications (AK -> AS) and consumer keys; the caller holds the lock."""

    applications: dict[str, str] = field(default_factory=dict)
    consumer_keys: dict[str, ConsumerKey] = field(default_factory=dict)
    time_window_s: float = 180.0

    def request_consumer_key(self, application_key: str | None, rules: tuple[Rule, ...],
                             redirection: str | None) -> ConsumerKey:
        if not application_key or application_key not in self.applications:
            raise auth_error("INVALID_KEY")
        key = ConsumerKey(key=new_key(32), application_key=application_key, rules=rules,
                          state="pendingValidation", redirection=redirection)
        self.consumer_keys[key.key] = key
        return key

    def validate(self, token: str) -> ConsumerKey | None:
        """Mark the consumer key of validation ``token`` validated; None if unknown."""
        for key in self.consumer_keys.values():
            if _same(key.token, token):
                key.state = "validated"
                return key
        return None

    def pending(self, token: str) -> ConsumerKey | None:
        return next((key for key in self.consumer_keys.values()
                     if _same(key.token, token)), None)

    def authenticate(self, *, method: str, url: str, path: str, body: str,
                     headers: Mapping[str, str], now: float) -> ConsumerKey:
        """The consumer key a signed call is made with, after every check.

        ``headers`` has lower-case names.

        Raises:
            ApiError: the first check that fails, with OVHcloud's body and status.
        """
        application_key = headers.get("x-ovh-application", "")
        secret = self.applications.get(application_key)
        if secret is None:
            raise auth_error("INVALID_KEY")
        consumer = headers.get("x-ovh-consumer", "")
        if not consumer:
            raise auth_error("NOT_AUTHENTICATED")
        key = self.consumer_keys.get(consumer)
        if key is None:
            raise auth_error("NOT_CREDENTIAL")
        if key.application_key != application_key or key.state != "validated":
            raise auth_error("INVALID_CREDENTIAL")
        timestamp = headers.get("x-ovh-timestamp", "")
        if not timestamp.isdigit() or abs(int(timestamp) - now) > self.time_window_s:
            raise auth_error("QUERY_TIME_OUT")
        expected = signature(application_secret=secret, consumer_key=consumer, method=method,
                             url=url, body=body, timestamp=timestamp)
        if not _same(expected, headers.get("x-ovh-signature", "")):
            raise auth_error("INVALID_SIGNATURE")
        if not rule_allows(key.rules, method, path):
            raise auth_error("NOT_GRANTED_CALL")
        return key
