"""Time the verify step's analysis on a million synthetic samples.

    .venv/bin/python benchmarks/analysis_bench.py [--rows 1000000] [--repeat 5]

Two pools of 10 hosts each (blue live, green idle), log-normal latencies with a slow
tail, ~0.5 % errors of every kind, samples over 10 minutes. Times ``summarise`` and
``evaluate`` (median of ``--repeat``, data generation excluded), once with rows in
arrival order (as the probe writes them) and once shuffled. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bgkit.analysis import Verdict, evaluate, summarise  # noqa: E402
from bgkit.config import GatesConfig  # noqa: E402
from bgkit.samples import ERROR_KINDS, validate_samples  # noqa: E402

HOSTS = {"blue": [f"127.0.1.{i}" for i in range(1, 11)],
         "green": [f"127.0.2.{i}" for i in range(1, 11)]}
VERSIONS = {"blue": "1.4.2", "green": "1.5.0"}
ERROR_SHARE = 0.005
# in ERROR_KINDS order; no wrong_version, so the verdict passes (the full happy path)
KIND_WEIGHTS = [0.4, 0.2, 0.2, 0.15, 0.0, 0.05]
NO_ANSWER = ("timeout", "refused", "reset", "other")


def synthetic_samples(rows: int, seed: int = 7) -> pd.DataFrame:
    """``rows`` samples in arrival order, as the probe would hand them over."""
    rng = np.random.default_rng(seed)
    hosts = np.array([h for pool in HOSTS.values() for h in pool], dtype=object)
    pools = np.array([p for p, names in HOSTS.items() for _ in names], dtype=object)
    which = rng.integers(0, len(hosts), rows)
    pool = pools[which]
    green = pool == "green"
    latency = rng.lognormal(np.log(np.where(green, 13.0, 12.0)), 0.35)
    slow = rng.random(rows) < 0.01
    latency[slow] *= rng.uniform(3, 8, slow.sum())
    kinds = np.array(["", *ERROR_KINDS], dtype=object)
    failed = rng.random(rows) < ERROR_SHARE
    error = np.zeros(rows, dtype=np.intp)
    error[failed] = 1 + rng.choice(len(ERROR_KINDS), failed.sum(), p=KIND_WEIGHTS)
    kind = kinds[error]
    no_answer = np.isin(kind, NO_ANSWER)
    latency[kind == "timeout"] = 2000.0
    latency[kind == "refused"] = rng.uniform(0.05, 0.3, (kind == "refused").sum())
    status = pd.array(np.where(kind == "bad_status", 503, 200), dtype="Int64")
    status[no_answer] = pd.NA
    # one str object per answer, as header parsing makes them; pools and hosts are
    # shared objects, as when they come from the config
    version = np.where(green, VERSIONS["green"], VERSIONS["blue"]).astype(object)
    version[kind == "wrong_version"] = VERSIONS["blue"]
    version[no_answer] = None
    start = pd.Timestamp("2024-05-01T12:00:00Z").value
    stamps = np.sort(start + rng.integers(0, 600 * 10**9, rows))
    frame = pd.DataFrame({
        "timestamp": pd.to_datetime(stamps, utc=True).as_unit("ns"),
        "pool": pd.Series(pool, dtype="str"),
        "host": pd.Series(hosts[which], dtype="str"),
        "target": pd.Series(np.array(["host"], dtype=object)[np.zeros(rows, int)], dtype="str"),
        "status": status,
        "ok": error == 0,
        "latency_ms": latency.round(3),
        "version": version,
        "error": pd.Series(kind, dtype="str"),
    })
    return validate_samples(frame)


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    spent = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        spent.append(time.perf_counter() - started)
    return spent


def figure(spent: list[float]) -> str:
    return f"{statistics.median(spent):.3f} ({min(spent):.3f}-{max(spent):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    gates = GatesConfig(max_error_ratio=0.01, max_consecutive_failures=5)
    ordered = synthetic_samples(args.rows)
    shuffled = ordered.sample(frac=1.0, random_state=1).reset_index(drop=True)
    print(f"| rows ({args.rows:,}) | `summarise` | `evaluate` | `summarise` + `evaluate` |")
    print("|---|---|---|---|")
    verdict = None
    for label, frame in (("arrival order", ordered), ("shuffled", shuffled)):
        summary_only = partial(summarise, frame)
        verdict_only = partial(evaluate, frame, gates, idle_pool="green", live_pool="blue",
                               expected_version=VERSIONS["green"])

        def both(summary_only: Callable[[], object] = summary_only,
                 verdict_only: Callable[[], Verdict] = verdict_only) -> Verdict:
            summary_only()
            return verdict_only()

        verdict = both()
        assert verdict.overall == "pass", verdict.reasons()
        row = [timed(action, args.repeat) for action in (summary_only, verdict_only, both)]
        print(f"| {label} | " + " | ".join(figure(spent) for spent in row) + " |")
    assert verdict is not None
    print(f"\nseconds, median of {args.repeat} (min-max); verdict on the synthetic data: "
          f"{verdict.overall}")


if __name__ == "__main__":
    main()
