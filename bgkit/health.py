"""Wait until a host's service answers its health path with the expected version.

The version is read where ``[service].version_from`` says (:mod:`bgkit.version_signal`);
with ``none`` a 200 is enough. A 200 that names another version fails at once: the
restart finished before the wait began, so that answer comes from the new process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from bgkit.version_signal import VersionSource

__all__ = ["HealthAnswer", "health_url", "probe_once", "wait_healthy"]


@dataclass(frozen=True, slots=True)
class HealthAnswer:
    ok: bool
    status: int | None
    version: str | None
    problem: str  # "" when ok
    wrong_version: bool = False


def health_url(address: str, port: int, path: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}{path}"


def probe_once(client: httpx.Client, url: str, *, version_from: VersionSource,
               expected_version: str | None) -> HealthAnswer:
    """One health request; never raises for network trouble."""
    try:
        response = client.get(url)
    except httpx.ConnectError:
        return HealthAnswer(False, None, None, "connection refused")
    except httpx.TimeoutException:
        return HealthAnswer(False, None, None, "timed out")
    except httpx.HTTPError as error:
        return HealthAnswer(False, None, None, f"{type(error).__name__}: {error}")
    version = version_from.read(response)
    if response.status_code != 200:
        return HealthAnswer(False, response.status_code, version,
                            f"answered {response.status_code}")
    if expected_version is not None and version_from.says_version and \
            version != expected_version:
        return HealthAnswer(False, 200, version, f"answers version {version!r} in "
                            f"{version_from.describe()}, expected {expected_version!r}",
                            wrong_version=True)
    return HealthAnswer(True, 200, version, "")


def wait_healthy(url: str, *, version_from: VersionSource, expected_version: str | None,
                 timeout_s: float, still_running: Callable[[], bool] | None = None,
                 check_every_s: float = 1.0) -> HealthAnswer:
    """Poll with backoff (50 ms doubling to 1 s) until healthy or ``timeout_s`` passes.

    ``still_running`` is asked about once a second; when it says the process is gone
    the wait ends at once instead of running out the clock. A 200 naming another
    version ends it at once too.
    """
    deadline = time.monotonic() + timeout_s
    delay, next_check = 0.05, time.monotonic() + check_every_s
    with httpx.Client(timeout=min(5.0, timeout_s)) as client:
        while True:
            answer = probe_once(client, url, version_from=version_from,
                                expected_version=expected_version)
            if answer.ok or answer.wrong_version:
                return answer
            now = time.monotonic()
            if still_running is not None and now >= next_check:
                next_check = now + check_every_s
                if not still_running():
                    return HealthAnswer(False, answer.status, answer.version,
                                        f"the service process exited ({answer.problem})")
            if now >= deadline:
                return HealthAnswer(False, answer.status, answer.version,
                                    f"not healthy after {timeout_s:g} s: {answer.problem}")
            time.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 1.0)
