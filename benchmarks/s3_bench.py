"""The lock and the archive in S3-compatible storage: latency against a local SeaweedFS.

    .venv/bin/python benchmarks/s3_bench.py --repeat 30 --runs 30

Starts SeaweedFS (``bgkit.sandbox.seaweed``) on free loopback ports in a temporary folder,
then times, each ``--repeat`` times: the lease's acquire (one conditional create; the
first one of a process also tries the store's conditional writes once), renew and
record-intent (a conditional replace each), verify (a read) and release (a conditional
delete) — beside the same operations on the default file store. Then it publishes
``--runs`` run notebooks of ``--size-kb`` KiB each into an S3 archive (write-once put +
index compare-and-swap + local copy), into one on a bucket with Object Lock (retention on
every put), and into a folder archive; two writers publishing at once into one archive;
and a second machine's first refresh and a fresh ``runs verify`` of the result. The
server is stopped by pid at the end. AWS settings of the user are never read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bgkit import lock as locking
from bgkit.lock_s3 import S3LeaseStore
from bgkit.objectstore import Retention, StoreSettings, open_store
from bgkit.runbook.backends import LocalArchive
from bgkit.runbook.index import verify_archive
from bgkit.runbook.s3_archive import S3Archive
from bgkit.sandbox import seaweed


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (f"| {name} | {statistics.median(samples):.1f} | {p90:.1f} | {max(samples):.1f} "
            f"| {len(samples)} |")


def lease_rows(store: locking.LeaseStore, label: str, repeat: int) -> list[str]:
    acquire, renew, intent, verify, release = [], [], [], [], []
    for _ in range(repeat):
        started = time.perf_counter()
        lease = locking.acquire(store, message="bench", ttl_s=60)
        acquire.append((time.perf_counter() - started) * 1000)
        renew.append(timed(lease.renew))
        intent.append(timed(lambda lease=lease: lease.record_intent(  # type: ignore[misc]
            {"action": "switch", "phase": "switching"})))
        verify.append(timed(lease.verify))
        release.append(timed(lease.release))
    return [row(f"{label}: acquire", acquire), row(f"{label}: renew", renew),
            row(f"{label}: record intent (verify + write)", intent),
            row(f"{label}: verify", verify), row(f"{label}: release", release)]


def notebook(run_id: str, size_kb: int) -> str:
    padding = "x" * (size_kb * 1024)
    return json.dumps({"cells": [{"cell_type": "markdown", "id": "a", "metadata": {},
                                  "source": padding}],
                       "metadata": {"bgkit": {"run_id": run_id, "step": "04_switch",
                                              "outcome": "succeeded",
                                              "started_at": "2026-11-30T10:00:00+00:00"}},
                       "nbformat": 4, "nbformat_minor": 5}) + "\n"


def name(n: int, tag: str) -> str:
    run_id = f"{tag}{n:011x}"
    return f"2026/11/20261130T{n // 3600 % 24:02d}{n // 60 % 60:02d}{n % 60:02d}Z_04_switch_" \
        f"{run_id}.ipynb"


def publish_many(archive: LocalArchive | S3Archive, runs: int, size_kb: int,
                 tag: str) -> list[float]:
    return [timed(lambda n=n: archive.publish(name(n, tag), notebook(name(n, tag)[-17:-5],  # type: ignore[misc]
                                                                   size_kb)))
            for n in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size-kb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bgkit-s3-bench-") as temp:
        folder = Path(temp)
        os.environ.update(AWS_CONFIG_FILE=str(folder / "none"), AWS_EC2_METADATA_DISABLED="true")
        for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                         "AWS_ENDPOINT_URL", "AWS_SHARED_CREDENTIALS_FILE"):
            os.environ.pop(variable, None)
        started = time.perf_counter()
        server = seaweed.start(folder / "weed")
        up_s = time.perf_counter() - started
        try:
            run(server, folder, args, up_s)
        finally:
            seaweed.stop_server(folder / "weed")


def run(server: seaweed.S3Server, folder: Path, args: argparse.Namespace, up_s: float) -> None:
    seaweed.create_bucket(server, "bench")
    seaweed.create_bucket(server, "bench-locked", object_lock=True)
    settings = StoreSettings(endpoint=server.endpoint, profile=seaweed.PROFILE,
                             credentials_file=server.credentials_file)
    print(f"SeaweedFS took its first write {up_s:.1f} s after start\n")
    print("| measure (ms) | median | p90 | max | n |")
    print("|---|---|---|---|---|")
    store = S3LeaseStore(open_store("s3://bench/locks/app.lock", settings), "locks/app.lock")
    first = timed(lambda: locking.acquire(store, message="bench", ttl_s=60).release())
    print(f"| S3 lease: first acquire + release of a process (with the one-time "
          f"conditional-write check) | {first:.1f} | | | 1 |")
    for line in lease_rows(store, "S3 lease", args.repeat):
        print(line)
    for line in lease_rows(locking.FileLeaseStore(folder / "bgkit.lock"), "file lease",
                           args.repeat):
        print(line)

    def s3_archive(bucket: str, copy: str, retention: Retention | None = None) -> S3Archive:
        return S3Archive(url=f"s3://{bucket}/runs", store=open_store(f"s3://{bucket}/runs",
                                                                      settings),
                         folder=folder / copy / "archive", retention=retention)

    plain = s3_archive("bench", "copy-a")
    print(row(f"S3 archive: publish a {args.size_kb} KiB run (put + index CAS + local copy)",
              publish_many(plain, args.runs, args.size_kb, "a")))
    locked = s3_archive("bench-locked", "copy-l", Retention(mode="GOVERNANCE", days=1))
    print(row("S3 archive with Object Lock (retention on each put): publish",
              publish_many(locked, args.runs, args.size_kb, "c")))
    print(row("folder archive: publish", publish_many(
        LocalArchive(folder / "local"), args.runs, args.size_kb, "d")))
    both: dict[str, list[float]] = {}
    writers = [threading.Thread(target=lambda tag=tag: both.__setitem__(  # type: ignore[misc]
        tag, publish_many(s3_archive("bench", f"copy-{tag}"), args.runs, args.size_kb, tag)))
        for tag in ("e", "f")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    print(row("S3 archive: publish, two writers at once (each)", both["e"] + both["f"]))
    total = args.runs * 3
    reader = s3_archive("bench", "copy-reader")
    print(row(f"second machine: first refresh of {total} runs", [timed(reader.refresh)]))
    print(row(f"second machine: refresh with nothing new ({total} runs)",
              [timed(reader.refresh) for _ in range(5)]))
    verify = [timed(lambda: (reader.refresh(fresh=True), verify_archive(reader.folder)))]
    print(row(f"runs verify (every object read again, {total} runs)", verify))
    check = verify_archive(reader.folder)
    print(f"\nthe two writers' chain: {check.entries} entries, "
          f"{'in order' if check.ok else check.findings}")


if __name__ == "__main__":
    main()
