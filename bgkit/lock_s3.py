"""The deployment lease as one object in S3-compatible storage (``[lock] url = "s3://..."``).

The same four conditional primitives as the file store (:class:`bgkit.lock.LeaseStore`),
each one request whose condition the store itself enforces, as Terraform's S3 backend
locks state (``use_lockfile``):

- ``create``: ``PUT`` with ``If-None-Match: *`` — only one of two machines creates it;
- ``replace`` (renew, record an intent, take over an expired lease): ``PUT`` with
  ``If-Match: <ETag>`` — fails once anyone else wrote it;
- ``delete`` (release): ``DELETE`` with ``If-Match: <ETag>``;
- ``read``: ``GET``; the lease's revision *is* the object's ETag.

So the holder's ``verify`` right before a load-balancer change is a read whose ETag must
be the one its own last write got back. A lease is taken over only when its holder left
it or it expired (the lease's own ``stale``: a pid is judged only on the very machine
that holds it). Before first use, the store must show it enforces both conditions
(:meth:`bgkit.objectstore.ObjectStore.check_conditional_writes`).
"""

from __future__ import annotations

import json
from dataclasses import replace

from bgkit.errors import StorageError, UsageError
from bgkit.lock import LeaseInfo
from bgkit.objectstore import ObjectStore

__all__ = ["S3LeaseStore"]


class S3LeaseStore:
    """The lease as the JSON object ``key`` of ``store``'s bucket."""

    def __init__(self, store: ObjectStore, key: str) -> None:
        self.store = store
        self.key = key
        self.location = store.url(key)
        self._checked = False

    def read(self) -> LeaseInfo | None:
        found = self.store.get(self.key)
        if found is None:
            return None
        body, etag = found
        try:
            info = LeaseInfo.from_json(json.loads(body))
        except (ValueError, TypeError, KeyError) as error:
            raise UsageError(f"the lock object {self.location} is unreadable ({error}); "
                             "inspect it, then remove it with `bgkit lock release --force`") \
                from error
        return replace(info, revision=etag)

    def create(self, info: LeaseInfo) -> str | None:
        self._check()
        return self.store.create(self.key, _body(info))

    def replace(self, info: LeaseInfo, *, revision: str) -> str | None:
        self._check()
        return self.store.replace(self.key, _body(info), etag=revision)

    def delete(self, *, revision: str | None) -> bool:
        return self.store.delete(self.key, etag=revision)

    def _check(self) -> None:
        if not self._checked:
            prefix = self.key.rpartition("/")[0]
            try:
                self.store.check_conditional_writes(prefix)
            except StorageError as error:
                raise StorageError(f"refusing the lock {self.location}: {error}") from error
            self._checked = True


def _body(info: LeaseInfo) -> bytes:
    """The lease as stored: its revision is the object's ETag, never in the body."""
    return json.dumps(replace(info, revision="").to_json(), indent=2).encode()
