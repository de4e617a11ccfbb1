"""A small, bounded load generator for demos and drills (loopback or your own hosts).

Threads send requests through one URL until stopped or until ``max_seconds`` pass: some
keep their connection alive, one opens a new connection per request. Every answer's
status and version is counted; any error is a failed request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

import httpx

__all__ = ["LoadGenerator", "LoadReport"]


@dataclass(slots=True)
class LoadReport:
    sent: int = 0
    failed: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class LoadGenerator:
    """``with LoadGenerator(url) as load: ...`` then read ``load.report``."""

    def __init__(self, url: str, *, keep_alive_workers: int = 3, max_seconds: float = 300.0,
                 version_header: str = "X-App-Version") -> None:
        self.url = url
        self.report = LoadReport()
        self._header = version_header
        self._deadline = time.monotonic() + max_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(True,), daemon=True)
                         for _ in range(keep_alive_workers)]
        self._threads.append(threading.Thread(target=self._run, args=(False,), daemon=True))

    def _run(self, keep_alive: bool) -> None:
        headers = {} if keep_alive else {"Connection": "close"}
        with httpx.Client(timeout=5, headers=headers) as client:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                try:
                    response = client.get(self.url)
                    outcome = None if response.status_code == 200 else \
                        f"HTTP {response.status_code}"
                    version = response.headers.get(self._header, "?")
                except httpx.HTTPError as error:
                    outcome, version = type(error).__name__, ""
                with self._lock:
                    self.report.sent += 1
                    if outcome is None:
                        self.report.versions[version] += 1
                    else:
                        self.report.failed += 1
                        self.report.errors[outcome] += 1

    def __enter__(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
