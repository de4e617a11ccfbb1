"""The deployment lock: one deploy or switch at a time, whoever runs it.

The lock is a JSON file created atomically (``O_CREAT | O_EXCL``) at ``[lock].path``. It
says who holds it (operator or CI job, host, pid), why, since when and until when. A
lock past its TTL — or whose process is gone from this very host — is stale and may be
taken over: the stale file is renamed away (only one taker can win that rename) and the
new lock records whose lock it replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bgkit.errors import LockHeld, UsageError
from bgkit.identity import operator

__all__ = ["Lock", "LockInfo", "acquire", "force_release", "held", "read_lock", "release"]


@dataclass(frozen=True, slots=True)
class LockInfo:
    """What a lock file says."""

    owner: str
    message: str
    host: str
    pid: int
    acquired_at: float
    ttl_s: float
    token: str
    took_over: dict[str, Any] | None = None

    @property
    def expires_at(self) -> float:
        return self.acquired_at + self.ttl_s

    def stale(self, *, now: float | None = None) -> str | None:
        """Why this lock may be taken over, or None while it is valid."""
        moment = time.time() if now is None else now
        if moment > self.expires_at:
            return f"it expired at {_when(self.expires_at)} (TTL {self.ttl_s:g} s)"
        if self.host == socket.gethostname() and not _pid_alive(self.pid):
            return f"its process {self.pid} on {self.host} is gone"
        return None

    def describe(self) -> str:
        return (f"held by {self.owner} (pid {self.pid} on {self.host}) since "
                f"{_when(self.acquired_at)} for {self.message!r}, until {_when(self.expires_at)}")


@dataclass(frozen=True, slots=True)
class Lock:
    path: Path
    info: LockInfo


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def read_lock(path: Path) -> LockInfo | None:
    """The lock at ``path``, or None when nobody holds it."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise UsageError(f"lock file {path} is unreadable ({error}); inspect it, then "
                         "remove it with `bgkit lock release --force`") from error
    return LockInfo(**data)


def acquire(path: Path, *, message: str, ttl_s: float, owner: str | None = None) -> Lock:
    """Take the lock, or take over a stale one.

    Raises:
        LockHeld: a valid lock is held by someone (the message says who and why).
    """
    info = LockInfo(owner=owner or operator(), message=message, host=socket.gethostname(),
                    pid=os.getpid(), acquired_at=time.time(), ttl_s=ttl_s,
                    token=os.urandom(8).hex())
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        if _create(path, info):
            return Lock(path, info)
        current = read_lock(path)
        if current is None:
            continue
        reason = current.stale()
        if reason is None:
            raise LockHeld(f"the deployment lock {path} is {current.describe()}; wait for it, "
                           "or if its owner is gone run `bgkit lock release --force`")
        if _set_aside(path, current):
            info = LockInfo(**{**asdict(info), "took_over": {**asdict(current),
                                                             "reason": reason}})
    raise LockHeld(f"could not take the deployment lock {path}: others are racing for it")


def _create(path: Path, info: LockInfo) -> bool:
    """Publish a complete lock file atomically: written aside, then hard-linked into place
    (``link`` fails if the lock exists), so nobody ever reads a half-written lock."""
    draft = path.with_name(f".{path.name}.{info.token}.draft")
    try:
        with draft.open("w") as handle:
            json.dump(asdict(info), handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(draft, path)
        except FileExistsError:
            return False
        return True
    finally:
        draft.unlink(missing_ok=True)


def _set_aside(path: Path, stale: LockInfo) -> bool:
    """Rename a stale lock away; False when another taker got there first.

    Two takers may both have read the same stale lock: if the file this rename moved is
    not that stale lock but a fresh one, it is put back untouched.
    """
    aside = path.with_name(f"{path.name}.stale-{stale.token}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        return False
    try:
        moved = LockInfo(**json.loads(aside.read_text()))
    except (OSError, ValueError, TypeError):
        return True
    if moved.token == stale.token:
        return True
    with contextlib.suppress(FileExistsError):
        os.link(aside, path)
    aside.unlink(missing_ok=True)
    return False


def release(lock: Lock) -> None:
    """Give the lock back, if it is still ours (a taken-over lock is left alone)."""
    current = read_lock(lock.path)
    if current is not None and current.token == lock.info.token:
        lock.path.unlink(missing_ok=True)


def force_release(path: Path) -> LockInfo | None:
    """Remove the lock whoever holds it; returns what it said."""
    current = read_lock(path)
    path.unlink(missing_ok=True)
    return current


@contextmanager
def held(path: Path, *, message: str, ttl_s: float) -> Iterator[Lock]:
    """Hold the lock for the ``with`` block; released however the block ends."""
    lock = acquire(path, message=message, ttl_s=ttl_s)
    try:
        yield lock
    finally:
        release(lock)
