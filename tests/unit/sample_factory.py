"""Build sample frames (the ``bgkit.samples`` contract) by hand, for tests.

    make_samples([10, 12, 11], pool="green", host="127.0.1.1")
    make_samples([5.0] * 3, pool="green", host="127.0.1.2", errors="refused")
    make_samples([1, 2, 3], pool="blue", host="h", errors=["", "timeout", ""])

Each latency is one sample, ``step_s`` apart from ``start`` unless ``timestamps`` are
given. ``errors`` decides the rest: "" is ok (200, ``version``); "bad_status" answers
503; "wrong_version" answers 200 with ``wrong_version``; any other kind got no answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from bgkit.samples import validate_samples

NO_ANSWER = ("timeout", "refused", "reset", "other")


def make_samples(
    latencies_ms: Sequence[float],
    *,
    pool: str = "green",
    host: str = "127.0.1.1",
    target: str = "host",
    errors: str | Sequence[str] = "",
    version: str | None = "1.0.0",
    wrong_version: str = "0.9.0",
    start: str = "2024-05-01T12:00:00Z",
    step_s: float = 0.1,
    timestamps: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One host's (or the load balancer's) samples, validated against the contract."""
    count = len(latencies_ms)
    kinds = [errors] * count if isinstance(errors, str) else list(errors)
    assert len(kinds) == count, "one error kind per latency"
    if timestamps is None:
        offsets = pd.to_timedelta([i * step_s for i in range(count)], unit="s")
        stamps = pd.Timestamp(start) + offsets
    else:
        stamps = pd.DatetimeIndex(pd.to_datetime(list(timestamps), utc=True))
    status = [None if k in NO_ANSWER else 503 if k == "bad_status" else 200 for k in kinds]
    versions = [None if k in NO_ANSWER else wrong_version if k == "wrong_version" else version
                for k in kinds]
    frame = pd.DataFrame({
        "timestamp": pd.Series(stamps, dtype="datetime64[ns, UTC]"),
        "pool": pool,
        "host": host if target == "host" else "lb",
        "target": target,
        "status": pd.Series(status, dtype="Int64"),
        "ok": [k == "" for k in kinds],
        "latency_ms": pd.Series(latencies_ms, dtype="float64"),
        "version": pd.Series(versions, dtype=object),
        "error": pd.Series(kinds, dtype="str"),
    })
    return validate_samples(frame)


def join(*frames: pd.DataFrame) -> pd.DataFrame:
    """Several hosts' samples as one frame (row order kept)."""
    return validate_samples(pd.concat(frames, ignore_index=True))


def make_pool(
    pool: str,
    hosts: Sequence[str],
    latencies_ms: Sequence[float],
    *,
    version: str | None = "1.0.0",
    start: str = "2024-05-01T12:00:00Z",
) -> pd.DataFrame:
    """Every host of ``pool`` answering ok with the same latencies, hosts interleaved."""
    frames = [make_samples(latencies_ms, pool=pool, host=host, version=version, start=start)
              for host in hosts]
    return join(*frames).sort_values("timestamp", kind="stable").reset_index(drop=True)
