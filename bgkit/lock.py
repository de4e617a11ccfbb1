"""The deployment lease: one deploy or switch at a time, whoever runs it, wherever.

A lease says who holds it (operator or CI job, host, process), why, until when — an
expiry its holder renews in the background while it works — and, during a switch, the
**intent**: which load-balancer change it is about to make or is watching. Every write
is conditional on the lease still being what its writer last saw, so ownership is
checked right before every load-balancer change (``verify`` / ``record_intent``).

A lease may be taken over only when it is **stale**: its holder left it on purpose,
its process is gone (judged only on this very machine: same hostname, boot id and pid
namespace, and the process's start time), or it expired and its holder is not known
to be alive. A takeover is one conditional write — never a rename — so two takers can
never both win, and it records the lease it replaced (with its intent, which the
taker must finish or undo: see ``bgkit.switch``). A lease left with an unfinished
intent can only be taken over by a switch or rollback (``accept_intent=True``).

Stores implement four conditional primitives (:class:`LeaseStore`): ``read``,
``create`` (if absent), ``replace`` and ``delete`` (if the revision is unchanged) — the
semantics of S3's ``If-None-Match: *`` and ``If-Match: <etag>``; the revision is the
store's own version of the lease (an S3 store would use the ETag). :class:`FileLeaseStore`
(the default, ``[lock].path``) runs each one under an ``flock`` of a guard file beside
the lease, writes a fresh revision into the file and publishes with an atomic rename; a
crashed writer's draft is removed by the next writer. ``S3LeaseStore``
(:mod:`bgkit.lock_s3`, ``[lock] url = "s3://bucket/key"``) maps them onto conditional
requests to S3-compatible object storage; :func:`store_for` picks one from the config.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bgkit import flock
from bgkit.errors import LeaseLost, LockHeld, StorageError, UsageError
from bgkit.identity import operator

if TYPE_CHECKING:
    from bgkit.config import Config

__all__ = ["FileLeaseStore", "Lease", "LeaseInfo", "LeaseStore", "Machine", "acquire",
           "force_release", "held", "read_lock", "release", "store_for", "this_machine"]

GUARD_TIMEOUT_S = 10.0
MIN_RENEW_INTERVAL_S = 0.05


@dataclass(frozen=True, slots=True)
class Machine:
    """Where a process runs, precisely enough to tell whether it still runs.

    Two leases are "on this machine" only when hostname, boot id and pid namespace all
    match: containers may share a hostname, never all three. ``pid_start`` (clock ticks
    after boot) tells a reused pid from the holder.
    """

    host: str
    boot_id: str = ""
    pid_ns: str = ""
    pid_start: int = 0

    def same_as(self, other: Machine) -> bool:
        return bool(self.boot_id and self.pid_ns) and (self.host, self.boot_id, self.pid_ns) \
            == (other.host, other.boot_id, other.pid_ns)


def this_machine(pid: int | None = None) -> Machine:
    """This machine, with the start time of ``pid`` (default: this process)."""
    return Machine(host=socket.gethostname(), boot_id=_read("/proc/sys/kernel/random/boot_id"),
                   pid_ns=_pid_ns(), pid_start=_pid_start(pid or os.getpid()) or 0)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _pid_ns() -> str:
    try:
        return str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        return ""


def _pid_start(pid: int) -> int | None:
    """The process's start time (field 22 of /proc/PID/stat); None if gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    if not fields or fields[0] == "Z":
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """What a lease says. ``revision`` is the store's version of it, new at every write."""

    owner: str
    message: str
    host: str
    pid: int
    acquired_at: float
    ttl_s: float
    token: str
    expires_at: float = 0.0
    renewed_at: float = 0.0
    machine: Machine | None = None
    took_over: dict[str, Any] | None = None
    intent: dict[str, Any] | None = None
    left: dict[str, Any] | None = None  # {"at", "reason"}: its holder left it on purpose
    revision: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LeaseInfo:
        """A lease from its JSON; older lock files (without expiry) are read too."""
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        machine = known.get("machine")
        known["machine"] = Machine(**machine) if isinstance(machine, dict) else None
        info = cls(**known)
        if not info.expires_at:
            info = replace(info, expires_at=info.acquired_at + info.ttl_s)
        return info

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def holder_alive(self) -> bool | None:
        """True/False when the holder runs on this machine; None when it cannot be told."""
        here = this_machine()
        if self.machine is not None and self.machine.boot_id:
            if not self.machine.same_as(here):
                return None
            start = _pid_start(self.pid)
            return start is not None and start == self.machine.pid_start
        if self.host != here.host:  # a lock file from before leases: hostname and pid only
            return None
        return _pid_start(self.pid) is not None

    def stale(self, *, now: float | None = None) -> str | None:
        """Why this lease may be taken over, or None while its holder may still act."""
        moment = time.time() if now is None else now
        if self.left:
            return f"its holder left it at {_when(self.left['at'])}: {self.left['reason']}"
        alive = self.holder_alive()
        if alive is False:
            return f"its process {self.pid} on {self.host} is gone"
        if alive is None and moment > self.expires_at:
            return (f"it expired at {_when(self.expires_at)} (not renewed within its "
                    f"{self.ttl_s:g} s TTL)")
        return None

    def unfinished(self) -> str | None:
        """The load-balancer change this lease was making and never finished, if any."""
        if not self.intent:
            return None
        intent = self.intent
        return (f"a {intent.get('action', 'switch')} from {intent.get('from_pool')} to "
                f"{intent.get('to_pool')} ({intent.get('phase')})")

    def describe(self) -> str:
        text = (f"held by {self.owner} (pid {self.pid} on {self.host}) since "
                f"{_when(self.acquired_at)} for {self.message!r}, until {_when(self.expires_at)}")
        unfinished = self.unfinished()
        return text + (f", in the middle of {unfinished}" if unfinished else "")

    def summary(self) -> dict[str, Any]:
        """What a record keeps of a lease: who, why, since when, and its intent."""
        return {"owner": self.owner, "message": self.message, "host": self.host,
                "pid": self.pid, "acquired_at": _when(self.acquired_at),
                "expires_at": _when(self.expires_at), "intent": self.intent,
                "left": self.left}


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


# --- stores ------------------------------------------------------------------------------

class LeaseStore(Protocol):
    """Where the lease lives. Writes are conditional: ``create`` and ``replace`` return
    the new revision, or None when the condition failed (someone else wrote first);
    they raise only when the store cannot be reached."""

    location: str

    def read(self) -> LeaseInfo | None:
        """The lease as stored now (``revision`` set), or None when nobody holds it."""
        ...

    def create(self, info: LeaseInfo) -> str | None:
        """Store ``info`` if there is no lease (S3: ``If-None-Match: *``)."""
        ...

    def replace(self, info: LeaseInfo, *, revision: str) -> str | None:
        """Store ``info`` if the stored lease's revision is ``revision`` (``If-Match``)."""
        ...

    def delete(self, *, revision: str | None) -> bool:
        """Remove the lease if its revision is ``revision`` (None: whatever it is)."""
        ...


class FileLeaseStore:
    """The lease as a JSON file; every write under an ``flock`` of ``.<name>.guard``.

    Readers need no lock: a lease file is only ever replaced whole (written aside, then
    renamed). The guard file stays (it is empty); nothing else is left behind, also
    after a crash (drafts are removed by the next writer).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.guard = path.with_name(f".{path.name}.guard")
        self.location = str(path)

    def read(self) -> LeaseInfo | None:
        try:
            data = json.loads(self.path.read_text())
            return LeaseInfo.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise UsageError(f"lock file {self.path} is unreadable ({error}); inspect it, then "
                             "remove it with `bgkit lock release --force`") from error

    def create(self, info: LeaseInfo) -> str | None:
        with self._guarded():
            if self.path.exists():
                return None
            return self._publish(info)

    def replace(self, info: LeaseInfo, *, revision: str) -> str | None:
        with self._guarded():
            current = self._read_quietly()
            if current is None or current.revision != revision:
                return None
            return self._publish(info)

    def delete(self, *, revision: str | None) -> bool:
        with self._guarded():
            current = self._read_quietly()
            if current is None and not self.path.exists():
                return False
            if revision is not None and (current is None or current.revision != revision):
                return False
            self.path.unlink(missing_ok=True)
            return True

    def _read_quietly(self) -> LeaseInfo | None:
        try:
            return self.read()
        except UsageError:
            return None

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        """The ``flock`` of the guard file beside the lease: one writer at a time, on this
        machine (re-entrant within a thread, as :func:`bgkit.flock.guard` says: a lease
        written in the cleanup after an interrupt must not wait behind its own process)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        busy = partial(LockHeld, f"the lock guard {self.guard} stayed locked for "
                                 f"{GUARD_TIMEOUT_S:g} s; is the storage of {self.path} "
                                 "hanging?")
        with flock.guard(self.guard, timeout_s=GUARD_TIMEOUT_S, poll_s=0.002, mode=0o644,
                         busy=busy):
            self._sweep_drafts()
            yield

    def _sweep_drafts(self) -> None:
        """Drafts exist only while a writer holds the guard: any found now are a crash's.
        ``<name>.stale-*`` files are what takeovers of bgkit before leases left behind."""
        for draft in [*self.path.parent.glob(f".{self.path.name}.*.draft"),
                      *self.path.parent.glob(f"{self.path.name}.stale-*")]:
            draft.unlink(missing_ok=True)

    def _publish(self, info: LeaseInfo) -> str:
        revision = _revision()
        draft = self.path.with_name(f".{self.path.name}.{revision}.draft")
        try:
            with draft.open("w") as handle:
                json.dump(replace(info, revision=revision).to_json(), handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            draft.replace(self.path)
        finally:
            draft.unlink(missing_ok=True)
        return revision


def _store(where: Path | LeaseStore) -> LeaseStore:
    return FileLeaseStore(where) if isinstance(where, Path) else where


def store_for(config: Config) -> LeaseStore:
    """The lease store ``[lock]`` names: a file (``path``, or ``url = "file:///..."``) or
    an object in S3-compatible storage (``url = "s3://bucket/key"``)."""
    url = config.lock_url
    if not url.startswith("s3://"):
        return FileLeaseStore(config.lock_path)
    from bgkit.lock_s3 import S3LeaseStore
    from bgkit.objectstore import StoreSettings, open_store, split_url

    return S3LeaseStore(open_store(url, StoreSettings.of(config.lock, config)),
                        split_url(url)[1])


# --- the lease as held --------------------------------------------------------------------

@dataclass(slots=True)
class Lease:
    """A lease this process holds. Thread-safe: the renewer and the caller share it."""

    store: LeaseStore
    info: LeaseInfo
    lost: str | None = None  # why it is no longer ours, once known
    _mutex: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def path(self) -> Path:
        return Path(self.store.location)

    @property
    def took_over(self) -> dict[str, Any] | None:
        return self.info.took_over

    def renew(self) -> None:
        """Push the expiry ``ttl_s`` ahead. Raises LeaseLost if the lease is not ours."""
        now = time.time()
        self._write(lambda info: replace(info, expires_at=now + info.ttl_s, renewed_at=now))

    def verify(self) -> None:
        """Check, right now, that the lease is still ours and unexpired.

        Raises:
            LeaseLost: it was taken over, released by force, or expired unrenewed.
        """
        with self._mutex:
            self._check(self._read_or_stop())

    def record_intent(self, intent: dict[str, Any] | None) -> None:
        """Write what this holder is about to do (or None: nothing in progress).

        A conditional write, so it also verifies ownership. Raises LeaseLost.
        """
        self._write(lambda info: replace(info, intent=dict(intent) if intent else None))

    def release(self) -> None:
        """Give the lease back if it is still ours (a lease taken over is left alone)."""
        with self._mutex:
            if self.lost is None:
                self.store.delete(revision=self.info.revision)
            self.lost = self.lost or "released"

    def leave(self, reason: str) -> None:
        """Stop holding it but leave it in place, with its intent, for the next switch or
        rollback to take over and converge; a deploy is refused meanwhile."""
        now = time.time()
        with contextlib.suppress(LeaseLost):
            self._write(lambda info: replace(info, left={"at": now, "reason": reason}))
        with self._mutex:
            self.lost = self.lost or "left"

    def _write(self, change: Callable[[LeaseInfo], LeaseInfo]) -> None:
        with self._mutex:
            if self.lost is not None:
                raise LeaseLost(f"the deployment lock {self.store.location} is no longer "
                                f"ours ({self.lost}); nothing more is changed")
            updated = change(self.info)
            try:
                revision = self.store.replace(updated, revision=self.info.revision)
            except StorageError as error:
                raise self._unchecked(error) from error
            if revision is None:
                self._check(self._read_or_stop())  # raises with who holds it now
                raise LeaseLost(f"the deployment lock {self.store.location} changed under us")
            self.info = replace(updated, revision=revision)

    def _read_or_stop(self) -> LeaseInfo | None:
        try:
            return self.store.read()
        except StorageError as error:
            raise self._unchecked(error) from error

    def _unchecked(self, error: StorageError) -> LeaseLost:
        """Ownership that cannot be checked is not ownership: stop (the lease is not marked
        lost, so a later renewal may still succeed)."""
        return LeaseLost(f"the deployment lock {self.store.location} cannot be checked "
                         f"({error}); bgkit stops before changing the load balancer")

    def _check(self, current: LeaseInfo | None) -> None:
        """Raise LeaseLost unless ``current`` is our lease, unexpired (mutex held)."""
        why = None
        if current is None:
            why = "it was released by someone else (`bgkit lock release --force`?)"
        elif current.token != self.info.token:
            why = f"it is now {current.describe()}"
        elif current.revision != self.info.revision:
            why = "it was changed by another writer"
        elif time.time() > current.expires_at:
            why = f"it expired at {_when(current.expires_at)} without being renewed"
        if why is not None:
            self.lost = why
            raise LeaseLost(f"the deployment lock {self.store.location} is no longer ours: "
                            f"{why}; bgkit stops before changing the load balancer")


def _revision() -> str:
    return os.urandom(8).hex()


def acquire(where: Path | LeaseStore, *, message: str, ttl_s: float, owner: str | None = None,
            accept_intent: bool = False, attempts: int = 5) -> Lease:
    """Take the lease, or take over a stale one (recorded in ``took_over``).

    ``accept_intent``: also take over a stale lease whose holder left a load-balancer
    change unfinished (only a switch or rollback, which converge it, may).

    Raises:
        LockHeld: a valid lease is held (the message says by whom and why), or a stale one
            carries an unfinished change and ``accept_intent`` is False.
    """
    store = _store(where)
    now = time.time()
    mine = LeaseInfo(owner=owner or operator(), message=message, host=socket.gethostname(),
                     pid=os.getpid(), acquired_at=now, ttl_s=ttl_s, token=_revision(),
                     expires_at=now + ttl_s, renewed_at=now, machine=this_machine())
    for _ in range(attempts):
        current = store.read()
        if current is None:
            revision = store.create(mine)
            if revision is not None:
                return Lease(store, replace(mine, revision=revision))
            continue
        reason = current.stale()
        if reason is None:
            raise LockHeld(f"the deployment lock {store.location} is {current.describe()}; "
                           "wait for it, or if its owner is gone run `bgkit lock release "
                           "--force`")
        unfinished = current.unfinished()
        if unfinished and not accept_intent:
            raise LockHeld(f"the deployment lock {store.location} was left by "
                           f"{current.owner} in the middle of {unfinished} ({reason}); run "
                           "`bgkit switch` or `bgkit rollback` first: it finishes or undoes "
                           "that change")
        taker = replace(mine, took_over={**current.to_json(), "reason": reason})
        revision = store.replace(taker, revision=current.revision)
        if revision is not None:
            return Lease(store, replace(taker, revision=revision))
    raise LockHeld(f"could not take the deployment lock {store.location}: others are racing "
                   "for it; retry")


def release(lease: Lease) -> None:
    """Give ``lease`` back, if it is still ours."""
    lease.release()


def read_lock(where: Path | LeaseStore) -> LeaseInfo | None:
    """The lease as stored, or None when nobody holds it."""
    return _store(where).read()


def force_release(where: Path | LeaseStore) -> LeaseInfo | None:
    """Remove the lease whoever holds it; returns what it said."""
    store = _store(where)
    try:
        current = store.read()
    except UsageError:
        current = None
    store.delete(revision=None)
    return current


class _Renewer:
    """Renews a lease every third of its TTL until stopped; marks it lost if it is."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bgkit-lease-renewer",
                                       daemon=True)

    def _run(self) -> None:
        interval = max(MIN_RENEW_INTERVAL_S, self.lease.info.ttl_s / 3)
        while not self.stop.wait(interval):
            try:
                self.lease.renew()
            except LeaseLost:
                if self.lease.lost is not None:
                    return
            except (OSError, LockHeld, UsageError, StorageError):
                continue  # the store hiccuped: retry; verify() fails once it expires


@contextmanager
def held(where: Path | LeaseStore, *, message: str, ttl_s: float,
         accept_intent: bool = False) -> Iterator[Lease]:
    """Hold the lease for the ``with`` block, renewed in the background.

    On exit the lease is released — unless the block called ``lease.leave(reason)``,
    which keeps it in place for the next switch to converge.
    """
    lease = acquire(where, message=message, ttl_s=ttl_s, accept_intent=accept_intent)
    renewer = _Renewer(lease)
    renewer.thread.start()
    try:
        yield lease
    finally:
        renewer.stop.set()
        renewer.thread.join()
        # A store out of reach now leaves the lease to expire within its TTL; the next
        # holder then takes it over and records that.
        with contextlib.suppress(StorageError):
            lease.release()
