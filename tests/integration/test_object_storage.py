"""The lease and the archive in a real S3 store (SeaweedFS on loopback), without a fleet."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bgkit import lock as locking
from bgkit.config import Config
from bgkit.errors import LeaseLost, LockHeld, StorageError
from bgkit.lock import LeaseInfo, Machine
from bgkit.runbook.backends import open_archive
from bgkit.runbook.index import verify_archive
from bgkit.runbook.s3_archive import S3Archive
from bgkit.runbook.scrub import archive_secrets
from bgkit.sandbox import seaweed
from tests.conftest import WriteConfig
from tests.integration.s3_support import (
    Workstation,
    access,
    admin,
    careless_store,
    needs_machines,
    notebook_text,
    shared_tables,
    with_tables,
)


def s3_config(write_config: WriteConfig, server: seaweed.S3Server, bucket: str,
              **extra: object) -> Config:
    """The example bgkit.toml with its lock and archive in ``bucket``."""
    path = write_config()
    return with_tables(path, {table: {**values, **(extra if table == "runs" else {})}
                              for table, values in shared_tables(server, bucket).items()},
                       name=f"s3-{bucket}.toml")


def run_name(day: int, run_id: str) -> str:
    return f"2026/11/202611{day:02d}T100000Z_04_switch_{run_id}.ipynb"


def test_the_s3_lease_is_created_once_renewed_by_etag_and_released(
        write_config: WriteConfig, s3_server: seaweed.S3Server, s3_bucket: str) -> None:
    config = s3_config(write_config, s3_server, s3_bucket)
    store = locking.store_for(config)
    assert store.location == f"s3://{s3_bucket}/locks/app.lock"
    lease = locking.acquire(store, message="deploy 2.0.0", ttl_s=30, owner="ci:job-7")
    with pytest.raises(LockHeld, match=r"held by ci:job-7 .* for 'deploy 2.0.0'"):
        locking.acquire(locking.store_for(config), message="switch", ttl_s=30)
    first = lease.info.revision
    lease.renew()
    assert lease.info.revision != first, "every write gets a new ETag"
    lease.verify()
    stored = admin(s3_server).head_object(Bucket=s3_bucket, Key="locks/app.lock")
    assert stored["ETag"] == lease.info.revision
    lease.release()
    assert locking.read_lock(store) is None


@pytest.mark.parametrize("how", ["deleted", "overwritten"])
def test_a_lease_whose_object_was_taken_away_stops_its_holder_before_acting(
        how: str, write_config: WriteConfig, s3_server: seaweed.S3Server,
        s3_bucket: str) -> None:
    config = s3_config(write_config, s3_server, s3_bucket)
    lease = locking.acquire(locking.store_for(config), message="switch", ttl_s=30)
    client = admin(s3_server)
    if how == "deleted":
        client.delete_object(Bucket=s3_bucket, Key="locks/app.lock")
    else:
        other = json.loads(client.get_object(Bucket=s3_bucket, Key="locks/app.lock")["Body"]
                           .read())
        other.update(owner="someone@elsewhere", token="f" * 16)
        client.put_object(Bucket=s3_bucket, Key="locks/app.lock", Body=json.dumps(other))
    with pytest.raises(LeaseLost, match="no longer ours"):
        lease.record_intent({"action": "switch", "from_pool": "blue", "to_pool": "green",
                             "phase": "switching"})
    lease.release()  # a lost lease is left alone
    if how == "overwritten":
        assert locking.read_lock(locking.store_for(config)).owner == "someone@elsewhere"


def test_an_expired_lease_of_another_machine_is_taken_over_and_the_takeover_recorded(
        write_config: WriteConfig, s3_server: seaweed.S3Server, s3_bucket: str) -> None:
    config = s3_config(write_config, s3_server, s3_bucket)
    now = time.time()
    # Same pid as ours, on a machine that is not this one: only its expiry may count.
    gone = LeaseInfo(owner="root@runner-3", message="switch", host="runner-3",
                     pid=1, acquired_at=now - 100, ttl_s=10, token="a" * 16,
                     expires_at=now + 3, renewed_at=now - 7,
                     machine=Machine(host="runner-3", boot_id="x", pid_ns="y", pid_start=1))
    admin(s3_server).put_object(Bucket=s3_bucket, Key="locks/app.lock",
                                Body=json.dumps(gone.to_json()))
    with pytest.raises(LockHeld, match="root@runner-3"):
        locking.acquire(locking.store_for(config), message="deploy", ttl_s=10)
    time.sleep(3.2)
    lease = locking.acquire(locking.store_for(config), message="deploy", ttl_s=10)
    assert lease.took_over is not None
    assert lease.took_over["owner"] == "root@runner-3"
    assert "expired" in lease.took_over["reason"]
    lease.release()


def test_a_store_that_ignores_conditional_writes_is_refused(
        write_config: WriteConfig, tmp_path: Path, s3_bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "careless-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "careless-secret")
    with careless_store() as endpoint:
        config = with_tables(write_config(), {
            "lock": {"url": "s3://careless/locks/app.lock", "endpoint": endpoint},
            "runs": {"url": "s3://careless/runs", "endpoint": endpoint,
                     "cache_dir": str(tmp_path / "copy")}}, name="careless.toml")
        with pytest.raises(StorageError, match=r"ignores conditional writes \(If-None-Match"):
            locking.acquire(locking.store_for(config), message="switch", ttl_s=30)
        with pytest.raises(StorageError, match="refusing the archive s3://careless/runs"):
            open_archive(config).publish(run_name(1, "a" * 12), notebook_text("a" * 12))


def test_a_store_ignoring_if_match_on_delete_gets_compare_then_delete_and_keeps_a_takeover(
        write_config: WriteConfig, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "careless-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "careless-secret")
    with careless_store(honour_puts=True) as endpoint:
        config = with_tables(write_config(), {"lock": {
            "url": "s3://careless/locks/app.lock", "endpoint": endpoint}}, name="half.toml")
        lease = locking.acquire(locking.store_for(config), message="switch", ttl_s=30)
        taker = locking.store_for(config)
        current = taker.read()
        assert current is not None
        assert taker.replace(dataclasses.replace(current, owner="root@elsewhere"),
                             revision=current.revision) is not None
        lease.release()  # its ETag is stale: the taker's lease stays
        left = locking.read_lock(taker)
        assert left is not None and left.owner == "root@elsewhere"


def test_published_runs_are_write_once_and_every_machine_reads_one_chain(
        write_config: WriteConfig, s3_server: seaweed.S3Server, s3_bucket: str,
        tmp_path: Path) -> None:
    config = s3_config(write_config, s3_server, s3_bucket, cache_dir=str(tmp_path / "one"))
    archive = open_archive(config)
    assert isinstance(archive, S3Archive)
    names = [run_name(day, f"{day:012x}") for day in (1, 2, 3)]
    heads = [archive.publish(name, notebook_text(name[-17:-5]))[1].hash for name in names]
    with pytest.raises(FileExistsError):
        archive.publish(names[0], notebook_text("other"))
    keys = admin(s3_server).list_objects_v2(Bucket=s3_bucket, Prefix="runs/")["Contents"]
    assert sorted(item["Key"] for item in keys) == sorted(
        [f"runs/{name}" for name in names] + ["runs/index.jsonl"])
    elsewhere = open_archive(s3_config(write_config, s3_server, s3_bucket,
                                       cache_dir=str(tmp_path / "two")))
    assert elsewhere.refresh() == []
    check = verify_archive(elsewhere.folder, expect_head=heads[-1])
    assert check.ok and check.entries == 3, check.findings


def test_runs_verify_catches_an_edited_a_deleted_and_an_inserted_object_in_the_bucket(
        write_config: WriteConfig, s3_server: seaweed.S3Server, s3_bucket: str,
        tmp_path: Path) -> None:
    needs_machines()
    config = s3_config(write_config, s3_server, s3_bucket)
    archive = open_archive(config)
    names = [run_name(day, f"{day:012x}") for day in (1, 2, 3, 4)]
    for name in names:
        archive.publish(name, notebook_text(name[-17:-5]))
    reviewer = Workstation(tmp_path, "reviewer")
    done = reviewer.run("runs", "verify", "--config", str(config.path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "in order; 4 indexed run(s)" in done.stdout
    client = admin(s3_server)
    client.put_object(Bucket=s3_bucket, Key=f"runs/{names[0]}",
                      Body=notebook_text("edited000000"))
    client.delete_object(Bucket=s3_bucket, Key=f"runs/{names[1]}")
    inserted = run_name(9, "9" * 12)
    client.put_object(Bucket=s3_bucket, Key=f"runs/{inserted}", Body=notebook_text("9" * 12))
    client.put_object(Bucket=s3_bucket, Key="runs/notes.txt", Body=b"not a run")
    done = reviewer.run("runs", "verify", "--config", str(config.path))
    assert done.returncode == 1
    assert f"modified {names[0]}" in done.stdout
    assert f"deleted {names[1]}" in done.stdout
    assert f"inserted {inserted}" in done.stdout
    assert f"inserted s3://{s3_bucket}/runs/notes.txt" in done.stdout
    # The reviewer's own local copy is no evidence: tampering with it changes nothing.
    copy = next(reviewer.home.rglob(names[2]))
    copy.chmod(0o644)
    copy.write_text(notebook_text("local-edit00"))
    again = reviewer.run("runs", "verify", "--config", str(config.path))
    assert f"modified {names[2]}" not in again.stdout


def test_two_machines_archiving_at_once_land_in_one_chain_with_every_run(
        write_config: WriteConfig, s3_server: seaweed.S3Server, s3_bucket: str,
        tmp_path: Path) -> None:
    needs_machines()
    config = s3_config(write_config, s3_server, s3_bucket)
    code = ("import sys\n"
            "from bgkit.config import load_config\n"
            "from bgkit.runbook.backends import open_archive\n"
            "from tests.integration.s3_support import notebook_text\n"
            "archive = open_archive(load_config(sys.argv[1]))\n"
            "for n in range(12):\n"
            "    run_id = f'{sys.argv[2]}{n:011x}'\n"
            "    name = f'2026/11/20261130T10{n:02d}00Z_04_switch_{run_id}.ipynb'\n"
            "    archive.publish(name, notebook_text(run_id))\n")
    machines = [Workstation(tmp_path, name) for name in ("machine-a", "machine-b")]
    started = [m.start_python(code, str(config.path), m.name[-1]) for m in machines]
    for process in started:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    reviewer = Workstation(tmp_path, "reviewer")
    done = reviewer.run("runs", "verify", "--config", str(config.path))
    assert done.returncode == 0, done.stdout
    assert "in order; 24 indexed run(s), 24 notebook(s)" in done.stdout
    index = admin(s3_server).get_object(Bucket=s3_bucket, Key="runs/index.jsonl")
    entries = [json.loads(line) for line in index["Body"].read().splitlines()]
    assert [entry["seq"] for entry in entries] == list(range(1, 25))
    assert {entry["run_id"][0] for entry in entries} == {"a", "b"}


def test_new_runs_are_retained_on_a_bucket_with_object_lock(
        write_config: WriteConfig, s3_server: seaweed.S3Server, s3_bucket: str) -> None:
    locked = f"{s3_bucket}-lock"
    seaweed.create_bucket(s3_server, locked, object_lock=True)
    config = s3_config(write_config, s3_server, locked, retain_days=7)
    archive = open_archive(config)
    name = run_name(5, "5" * 12)
    archive.publish(name, notebook_text("5" * 12))
    head = admin(s3_server).head_object(Bucket=locked, Key=f"runs/{name}")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert timedelta(days=6) < until - datetime.now(UTC) <= timedelta(days=7)
    assert "retained 7 day(s) in GOVERNANCE mode" in archive.describe()
    # The same setting on a bucket without Object Lock publishes, unretained, and says so.
    plain = open_archive(s3_config(write_config, s3_server, s3_bucket, retain_days=7))
    plain.publish(name, notebook_text("5" * 12))
    assert "has no Object Lock" in plain.describe()


def test_the_keys_in_the_credentials_file_bgkit_toml_names_are_scrubbed(
        write_config: WriteConfig, s3_server: seaweed.S3Server, s3_bucket: str) -> None:
    config = s3_config(write_config, s3_server, s3_bucket)
    access_key, secret = s3_server.keys()
    assert {access_key, secret} <= archive_secrets(config)
    assert access(s3_server)["credentials_file"] in config.path.read_text()
    assert secret not in config.path.read_text()


def test_a_weed_that_exits_on_a_port_taken_since_it_was_picked_is_started_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One of weed's seven ports taken between its pick and weed's bind (another program,
    a stale socket): weed exits at once, and start() tries once more on fresh ports."""
    import socket

    from bgkit.sandbox import seaweed

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    real = seaweed._argv
    calls: list[list[str]] = []

    def first_one_collides(folder: Path, s3_port: int) -> list[str]:
        argv = real(folder, s3_port)
        if not calls:  # the filer's port is the one another program holds
            argv = [f"-filer.port={taken.getsockname()[1]}" if a.startswith("-filer.port=")
                    else a for a in argv]
        calls.append(argv)
        return argv

    monkeypatch.setattr(seaweed, "_argv", first_one_collides)
    try:
        server = seaweed.start(tmp_path / "weed", timeout_s=60)
        seaweed.create_bucket(server, "after-a-retry")
    finally:
        seaweed.stop_server(tmp_path / "weed")
        taken.close()
    assert len(calls) == 2
