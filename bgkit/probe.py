"""Sample health and latency over HTTP: I/O only, one DataFrame row per sample.

``sample(targets, ...)`` probes every target concurrently (httpx, asyncio), each target
at an even pace so that all of them together stay under ``rate_per_s``. Timeouts,
refused and reset connections, bad statuses and wrong versions are rows with an error
kind, never exceptions. The columns are ``bgkit.samples.SAMPLE_COLUMNS``; judging the
rows is ``bgkit.analysis``'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TypeVar

import httpx
import pandas as pd

from bgkit.config import Config
from bgkit.health import health_url
from bgkit.version_signal import VersionSource, answers_release

__all__ = ["Reading", "Target", "classify", "frame_of", "host_targets", "lb_target",
           "pool_label", "probe", "reading_for", "run_coroutine", "sample"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Target:
    """One thing to probe: a host's health path, or the load balancer's public address."""

    pool: str
    host: str  # the host's address, or "lb"
    target: str  # "host" | "lb"
    url: str
    expected_version: str | None = None
    expected_pool: str | None = None  # the load balancer's pool header must name this
    expected_build: str | None = None  # an answer naming a build (``<version>+<build>``)


def host_targets(config: Config, pool: str, *, expected_version: str | None,
                 expected_build: str | None = None) -> list[Target]:
    return [Target(pool=pool, host=h.address, target="host", expected_version=expected_version,
                   url=health_url(h.address, config.service.port, config.service.health_path),
                   expected_build=expected_build)
            for h in config.pools.get(pool).hosts]  # type: ignore[arg-type]


def lb_target(config: Config, *, live_pool: str, expected_version: str | None,
              expected_pool: str | None = None, expected_build: str | None = None) -> Target:
    url = config.lb.public_url.rstrip("/") + config.service.health_path
    return Target(pool=live_pool, host="lb", target="lb", url=url,
                  expected_version=expected_version, expected_pool=expected_pool,
                  expected_build=expected_build)


def pool_label(config: Config, pool: str) -> str:
    """What the load balancer's pool header says for ``pool``: its HAProxy backend name."""
    settings = config.lb.haproxy
    if settings is not None:
        return str(getattr(settings.backends, pool))
    return pool


def classify(error: BaseException) -> str:
    """The error kind of a failed request: timeout, refused, reset or other."""
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == \
                errno.ECONNREFUSED:
            return "refused"
        if isinstance(cause, ConnectionResetError | BrokenPipeError) or \
                getattr(cause, "errno", None) in (errno.ECONNRESET, errno.EPIPE):
            return "reset"
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, httpx.ConnectError):
        return "refused" if "refused" in str(error).lower() else "other"
    if isinstance(error, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "reset"
    return "other"


def sample(targets: Sequence[Target], *, samples_per_target: int | None = None,
           duration_s: float | None = None, rate_per_s: float = 200.0,
           timeout_s: float = 2.0, version_header: str = "X-App-Version",
           version_from: VersionSource | None = None,
           pool_header: str | None = None) -> pd.DataFrame:
    """Probe every target ``samples_per_target`` times, or for ``duration_s`` seconds.

    The version is read as ``version_from`` says (default: the ``version_header``
    header); with ``pool_header`` each row also has ``served_by``, that header's value
    (the pool the load balancer sent the request to), checked against a target's
    ``expected_pool``.

    Raises:
        ValueError: neither or both of ``samples_per_target`` and ``duration_s``, or a
            non-positive rate.
    """
    if (samples_per_target is None) == (duration_s is None):
        raise ValueError("give exactly one of samples_per_target and duration_s")
    if rate_per_s <= 0 or not targets:
        raise ValueError("rate_per_s must be above 0 and there must be targets")
    interval = len(targets) / rate_per_s
    count = samples_per_target if samples_per_target is not None else \
        max(1, int((duration_s or 0) / interval))
    reading = Reading(version_from or VersionSource("header", version_header), pool_header)
    rows = run_coroutine(_sample_all(targets, count=count, interval=interval,
                                     timeout_s=timeout_s, reading=reading))
    return frame_of(rows)


@dataclass(frozen=True, slots=True)
class Reading:
    """How an answer is read: where its version is, and which header names the pool the
    load balancer sent it to (None: not read)."""

    version_from: VersionSource
    pool_header: str | None


def reading_for(config: Config) -> Reading:
    """The answers of ``config``'s service, read as ``[service].version_from`` and
    ``[lb].pool_header`` say."""
    from bgkit.version_signal import version_source

    return Reading(version_source(config.service.version_source), config.lb.pool_header)


def run_coroutine(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also from inside a running loop (a Jupyter kernel).

    In the main thread a SIGTERM handler that raises never raises inside the loop: its
    exception is kept, the coroutine is cancelled, and the exception is raised once the
    loop has closed. Raised between two steps of the loop, it could drop the next step of
    a task, and ``asyncio.run`` would then wait forever for that task's cancellation.

    From inside a running loop the coroutine runs on a thread's own loop; an interrupt of
    the waiting caller (the kernel's Ctrl-C) cancels it there rather than waiting out a
    hold or a watch.
    """
    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _run_here(work)
        return _run_in_a_thread(work)
    finally:
        if inspect.getcoroutinestate(work) == inspect.CORO_CREATED:
            work.close()  # never started (a signal came first): no "never awaited"


def _run_here(work: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(work)``, with a SIGTERM handler's exception deferred as
    :func:`run_coroutine` says. The handler itself runs at once (what it prints, what it
    arms); only what it raises waits for the loop to close."""
    handler = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(handler):
        return asyncio.run(work)
    original: Callable[[int, FrameType | None], Any] = handler
    raised: list[BaseException] = []
    main: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[T]]] = []

    def deferred(signum: int, frame: FrameType | None) -> None:
        try:
            original(signum, frame)
        except BaseException as stop:  # kept, and raised once the loop has closed
            if raised:
                return  # the work is already being cancelled: never interrupt its cleanup
            raised.append(stop)
            if main and not main[0][0].is_closed():  # only queue the cancel: the loop may
                main[0][0].call_soon_threadsafe(main[0][1].cancel)  # be between two steps

    async def cancellable() -> T:
        main.append((asyncio.get_running_loop(), asyncio.current_task()))  # type: ignore[arg-type]
        if raised:  # the signal came while the loop was being set up
            raise asyncio.CancelledError
        return await work

    try:
        signal.signal(signal.SIGTERM, deferred)
        with asyncio.Runner() as runner:  # its close (cancelling what is left) is covered
            return runner.run(cancellable())
    except asyncio.CancelledError:
        if not raised:
            raise
        raise raised[0] from None
    finally:
        signal.signal(signal.SIGTERM, original)
        if raised:  # whatever the loop ended with (a result, the work's own error), the
            raise raised[0]  # signal's exception wins, as it would without a loop


def _run_in_a_thread(work: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(work)`` on a worker thread; an exception in the waiting caller (a
    kernel's ``KeyboardInterrupt``) cancels the work, whose own cleanup is waited for.

    A second interrupt during that wait leaves the thread to finish on its own; work that
    swallows its cancellation is waited out."""
    stop = threading.Event()
    main: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[T]]] = []

    async def cancellable() -> T:
        main.append((asyncio.get_running_loop(), asyncio.current_task()))  # type: ignore[arg-type]
        if stop.is_set():  # the caller was interrupted before the loop started
            raise asyncio.CancelledError
        return await work

    thread = ThreadPoolExecutor(max_workers=1)
    try:
        return thread.submit(asyncio.run, cancellable()).result()
    except BaseException:
        stop.set()  # set before looking: either the task sees it or it is in ``main``
        if main:
            with contextlib.suppress(RuntimeError):  # the loop had already closed
                main[0][0].call_soon_threadsafe(main[0][1].cancel)
        raise
    finally:
        thread.shutdown(wait=True)


async def _sample_all(targets: Sequence[Target], *, count: int, interval: float,
                      timeout_s: float, reading: Reading) -> list[dict[str, Any]]:
    limits = httpx.Limits(max_connections=len(targets) * 2,
                          max_keepalive_connections=len(targets) * 2)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        start = time.monotonic()
        per_target = await asyncio.gather(*(
            _sample_one(client, target, count=count, interval=interval, start=start,
                        offset=index * interval / len(targets), reading=reading)
            for index, target in enumerate(targets)))
    return [row for rows in per_target for row in rows]


async def _sample_one(client: httpx.AsyncClient, target: Target, *, count: int, interval: float,
                      start: float, offset: float, reading: Reading) -> list[dict[str, Any]]:
    rows = []
    for index in range(count):
        due = start + offset + index * interval
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        rows.append(await probe(client, target, reading=reading))
    return rows


async def probe(client: httpx.AsyncClient, target: Target, *,
                reading: Reading) -> dict[str, Any]:
    """One request to ``target``: a sample row (never raises for an HTTP failure)."""
    stamp = datetime.now(UTC)
    began = time.perf_counter()
    status: int | None = None
    version: str | None = None
    served_by: str | None = None
    try:
        response = await client.get(target.url)
        status, version = response.status_code, reading.version_from.read(response)
        if reading.pool_header:
            served_by = response.headers.get(reading.pool_header)
        error = _answer_error(status, version, target, served_by)
    except httpx.HTTPError as failure:
        error = classify(failure)
    latency_ms = (time.perf_counter() - began) * 1000.0
    row = {"timestamp": stamp, "pool": target.pool, "host": target.host,
           "target": target.target, "status": status, "ok": error == "",
           "latency_ms": latency_ms, "version": version, "error": error}
    if reading.pool_header:
        row["served_by"] = served_by
    return row


def _answer_error(status: int, version: str | None, target: Target,
                  served_by: str | None) -> str:
    """An answer from another release is ``wrong_version``, whichever signal says so: the
    version it names, or the pool the load balancer says served it."""
    if status != 200:
        return "bad_status"
    if target.expected_version is not None and not answers_release(
            version, version=target.expected_version, build=target.expected_build):
        return "wrong_version"
    if target.expected_pool is not None and served_by is not None and \
            served_by != target.expected_pool:
        return "wrong_version"
    return ""


def frame_of(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Sample rows as a validated sample frame, in time order."""
    from bgkit.samples import empty_samples, validate_samples

    if not rows:
        return empty_samples()
    frame = pd.DataFrame(rows)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["status"] = frame["status"].astype("Int64")
    return validate_samples(frame.sort_values("timestamp", kind="stable").reset_index(drop=True))

