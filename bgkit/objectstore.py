"""S3-compatible object storage, as bgkit uses it: a few conditional requests through boto3.

The lease (:mod:`bgkit.lock_s3`) and the archive (:mod:`bgkit.runbook.s3_archive`) need
exactly four things from a store, each one request:

- ``get``: an object's bytes and its ETag (None when absent);
- ``create``: write only if absent (``If-None-Match: *``), else None;
- ``replace``: write only if the ETag is unchanged (``If-Match``), else None;
- ``delete``: remove only if the ETag is unchanged (``If-Match``), else False;

plus listing a prefix. A store that ignores ``If-None-Match`` or ``If-Match`` would make
two writers both "win": :meth:`ObjectStore.check_conditional_writes` tries it once per
bucket and process and refuses such a store with a :class:`~bgkit.errors.StorageError`.
(A store that enforces them on writes but ignores ``If-Match`` on ``DELETE`` is used with
a compare-then-delete instead.)

Credentials come from where every AWS tool reads them (environment, shared credentials
file, profile), never from bgkit.toml; ``endpoint`` (an S3-compatible service such as
OVHcloud Object Storage) from the config, else ``AWS_ENDPOINT_URL``. boto3 errors are
translated here, at the boundary, into :class:`~bgkit.errors.StorageError`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bgkit.errors import StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from bgkit.config import Config, StoreAccess

__all__ = ["ObjectStore", "Retention", "StoreSettings", "open_store", "split_url"]

DEFAULT_REGION = "us-east-1"  # S3-compatible stores accept any; AWS needs the bucket's own
_PROBE_PREFIX = ".bgkit-probe-"
_WRONG_ETAG = '"0123456789abcdef0123456789abcdef"'
# (endpoint, bucket) checked -> whether it also enforces If-Match on DELETE
_checked: dict[tuple[str, str], bool] = {}
_checked_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How to reach a store: what ``[lock]`` / ``[runs]`` say (never credentials)."""

    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None
    credentials_file: Path | None = None

    @classmethod
    def of(cls, access: StoreAccess, config: Config) -> StoreSettings:
        credentials = access.credentials_file
        return cls(endpoint=access.endpoint, region=access.region, profile=access.profile,
                   credentials_file=config.resolve(str(Path(credentials).expanduser()))
                   if credentials else None)


@dataclass(frozen=True, slots=True)
class Retention:
    """Object Lock retention for new objects: mode and days."""

    mode: Literal["GOVERNANCE", "COMPLIANCE"]
    days: int

    def until(self) -> datetime:
        return datetime.now(UTC) + timedelta(days=self.days)


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key/or/prefix`` -> (bucket, key or prefix, without edge slashes)."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key.strip("/")


def open_store(url: str, settings: StoreSettings) -> ObjectStore:
    """The store holding ``url`` (``s3://bucket/...``), with a boto3 client of its own."""
    bucket, _ = split_url(url)
    return ObjectStore(bucket=bucket, client=_client(settings), settings=settings)


def _client(settings: StoreSettings) -> S3Client:
    import boto3
    import botocore.session
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError

    session = botocore.session.Session()
    if settings.credentials_file is not None:
        session.set_config_variable("credentials_file", str(settings.credentials_file))
    try:
        boto = boto3.Session(botocore_session=session, profile_name=settings.profile)
        region = settings.region or boto.region_name or DEFAULT_REGION
        # Only the checksums a request needs: S3-compatible stores (OVHcloud's among them)
        # may refuse the CRC headers boto3 adds by default since 1.36.
        config = BotoConfig(
            region_name=region, connect_timeout=5, read_timeout=20,
            retries={"mode": "standard", "max_attempts": 3},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path" if settings.endpoint else "auto"})
        return boto.client("s3", endpoint_url=settings.endpoint, config=config)
    except BotoCoreError as error:  # an unknown profile, an unreadable config file
        raise StorageError(f"cannot set up the S3 client: {error}") from error


class ObjectStore:
    """One bucket of an S3-compatible store, through conditional requests only."""

    def __init__(self, *, bucket: str, client: S3Client, settings: StoreSettings) -> None:
        self.bucket = bucket
        self.client = client
        self.settings = settings

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    # --- the four primitives -----------------------------------------------------------

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag, or None when there is none."""
        with self._translated(f"read {self.url(key)}"):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=key)
            except self.client.exceptions.NoSuchKey:
                return None
            return answer["Body"].read(), answer["ETag"]

    def create(self, key: str, body: bytes, *, retention: Retention | None = None,
               content_type: str = "application/json") -> str | None:
        """Write ``body`` only if ``key`` does not exist; the new ETag, else None."""
        return self._put(key, body, retention=retention, content_type=content_type,
                         IfNoneMatch="*")

    def replace(self, key: str, body: bytes, *, etag: str, retention: Retention | None = None,
                content_type: str = "application/json") -> str | None:
        """Write ``body`` only if the object's ETag is still ``etag``; the new ETag, else
        None (it changed, or is gone)."""
        return self._put(key, body, retention=retention, content_type=content_type,
                         IfMatch=etag)

    def delete(self, key: str, *, etag: str | None) -> bool:
        """Remove the object if its ETag is ``etag`` (None: whatever it is); False when
        the condition failed or there was nothing to remove."""
        with self._translated(f"delete {self.url(key)}"):
            try:
                if etag is not None and not _checked.get(self._marker, True):
                    # A store that ignores If-Match on DELETE: compare, then delete (only a
                    # takeover in between could be lost, and it was due to expire anyway).
                    if self.get_etag(key) != etag:
                        return False
                    etag = None
                if etag is None:
                    if self.get_etag(key) is None:
                        return False
                    self.client.delete_object(Bucket=self.bucket, Key=key)
                else:
                    self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
            except self._client_error() as error:
                if _status(error) in (404, 412):
                    return False
                raise
            return True

    def get_etag(self, key: str) -> str | None:
        """The object's ETag, or None when there is none (a HEAD request)."""
        with self._translated(f"read {self.url(key)}"):
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)["ETag"]
            except self._client_error() as error:
                if _status(error) == 404:
                    return None
                raise

    def list(self, prefix: str) -> dict[str, str]:
        """Every object key under ``prefix`` with its ETag."""
        found: dict[str, str] = {}
        with self._translated(f"list {self.url(prefix)}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    found[item["Key"]] = item["ETag"]
        return found

    def object_lock(self) -> bool:
        """Whether the bucket has Object Lock enabled."""
        with self._translated(f"read the Object Lock configuration of s3://{self.bucket}"):
            try:
                answer = self.client.get_object_lock_configuration(Bucket=self.bucket)
            except self._client_error() as error:
                if _code(error) in ("ObjectLockConfigurationNotFoundError",
                                    "ObjectLockConfigurationNotFound", "NotImplemented") \
                        or _status(error) in (400, 404, 501):
                    return False
                raise
            return answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") \
                == "Enabled"

    # --- refusing a store that would let two writers win -------------------------------

    def check_conditional_writes(self, prefix: str) -> None:
        """Try, once per bucket and process, that the store refuses a second create of
        one key (``If-None-Match: *``) and a replace with a wrong ETag (``If-Match``).

        Raises:
            StorageError: it does not: a lock or an index there would not be safe.
        """
        with _checked_lock:
            if self._marker in _checked:
                return
        key = f"{prefix.rstrip('/') + '/' if prefix.strip('/') else ''}" \
              f"{_PROBE_PREFIX}{os.urandom(6).hex()}"
        first = self.create(key, b"1")
        try:
            if first is None:
                raise StorageError(f"{self.url(key)}: the store refused to create a new object "
                                   "with If-None-Match: *; it cannot hold a lock")
            second = self.create(key, b"2")
            wrong = self.replace(key, b"3", etag=_WRONG_ETAG)
            self.delete(key, etag=_WRONG_ETAG)
            deletes_checked = self.get_etag(key) is not None
        finally:
            self.delete(key, etag=None)
        if second is not None or wrong is not None:
            ignored = "If-None-Match: *" if second is not None else "If-Match"
            raise StorageError(
                f"the object store at {self.settings.endpoint or 'AWS'} (bucket "
                f"{self.bucket}) ignores conditional writes ({ignored}: a second write "
                "should fail with 412 Precondition Failed, and it succeeded), so two "
                "machines could both take the lock or both append to the archive index. "
                "Use a store that enforces conditional writes (AWS S3, OVHcloud Object "
                "Storage, SeaweedFS, MinIO...)")
        with _checked_lock:
            _checked[self._marker] = deletes_checked

    @property
    def _marker(self) -> tuple[str, str]:
        return (str(self.settings.endpoint), self.bucket)

    # --- plumbing ----------------------------------------------------------------------

    def _put(self, key: str, body: bytes, *, retention: Retention | None, content_type: str,
             **condition: str) -> str | None:
        extra: dict[str, Any] = dict(condition)
        if retention is not None:  # Object Lock wants Content-MD5 (or a checksum)
            extra.update(ObjectLockMode=retention.mode,
                         ObjectLockRetainUntilDate=retention.until(),
                         ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode())  # noqa: S324
        with self._translated(f"write {self.url(key)}"):
            try:
                answer = self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                                ContentType=content_type, **extra)
            except self._client_error() as error:
                if _status(error) in (409, 412) or _code(error) in (
                        "PreconditionFailed", "ConditionalRequestConflict"):
                    return None
                raise
            return answer["ETag"]

    def _client_error(self) -> type[Exception]:
        from botocore.exceptions import ClientError

        return ClientError

    def _translated(self, what: str) -> _Translated:
        return _Translated(what, self)


class _Translated:
    """Turns boto3's errors into a StorageError that says what failed and what to do."""

    def __init__(self, what: str, store: ObjectStore) -> None:
        self.what = what
        self.store = store

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 _trace: object) -> None:
        if error is None or isinstance(error, StorageError):
            return
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = self.store.settings.endpoint or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
        if isinstance(error, NoCredentialsError):
            raise StorageError(
                f"cannot {self.what}: no S3 credentials found. Set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or a profile (AWS_PROFILE or [lock]/[runs] profile) "
                "in the shared credentials file (~/.aws/credentials, AWS_SHARED_CREDENTIALS_FILE"
                " or [lock]/[runs] credentials_file); never in bgkit.toml") from error
        if isinstance(error, ClientError):
            code, status = _code(error), _status(error)
            hint = {403: "check the credentials and that they may use this bucket",
                    404: f"does the bucket {self.store.bucket} exist?"}.get(status, "")
            if code == "NoSuchBucket":
                hint = f"create the bucket {self.store.bucket} first"
            raise StorageError(f"cannot {self.what} at {where}: {code or status} "
                               f"({_message(error)}){'; ' + hint if hint else ''}") from error
        if isinstance(error, BotoCoreError):
            raise StorageError(f"cannot {self.what}: {error} (is {where} reachable?)") \
                from error


def _status(error: Any) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _code(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _message(error: Any) -> str:
    return str(error.response.get("Error", {}).get("Message", "")) or "no message"
