"""Helpers for tests against a real S3 store (SeaweedFS) and for "machines" on one host.

A *machine* here is a bgkit process with its own ``HOME`` (so its own local archive copy
and AWS files), its own hostname (a UTS namespace: ``unshare --uts``, root only) and its
own working directory. AWS settings never come from the user's ``~/.aws``: every
environment built here points ``AWS_CONFIG_FILE`` at a file in the test's folder and
turns the instance-metadata lookup off (no traffic leaves loopback).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import tomli_w

from bgkit.config import Config, load_config
from bgkit.sandbox.seaweed import PROFILE, S3Server
from tests.conftest import REPO

AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")


def isolated_aws_env(folder: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment with no AWS setting of the user's: only what bgkit.toml names."""
    env = {k: v for k, v in (base if base is not None else os.environ).items()
           if k not in AWS_VARIABLES}
    env["AWS_CONFIG_FILE"] = str(folder / "aws-config-none")
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def access(server: S3Server) -> dict[str, str]:
    """What [lock] / [runs] say to reach the test server (never its keys)."""
    return {"endpoint": server.endpoint, "profile": PROFILE,
            "credentials_file": str(server.credentials_file)}


def shared_tables(server: S3Server, bucket: str, *, lock: bool = True,
                  runs: bool = True) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    if lock:
        tables["lock"] = {"url": f"s3://{bucket}/locks/app.lock", **access(server)}
    if runs:
        tables["runs"] = {"url": f"s3://{bucket}/runs", **access(server)}
    return tables


def with_tables(path: Path, tables: dict[str, Any], *, name: str) -> Config:
    """A copy of bgkit.toml ``path`` whose [lock] / [runs] are replaced by ``tables``
    (the other keys of those tables, timeouts and TTL, kept unless given)."""
    data = tomllib.loads(path.read_text())
    for table, values in tables.items():
        kept = {k: v for k, v in data.get(table, {}).items()
                if k not in ("path", "dir", "url", "endpoint", "profile", "credentials_file")}
        data[table] = {**kept, **values}
    target = path.with_name(name)
    target.write_text(tomli_w.dumps(data))
    return load_config(target)


def admin(server: S3Server) -> Any:
    """A boto3 client with the server's keys: the tests' hands on the bucket."""
    import boto3

    access_key, secret = server.keys()
    return boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=access_key,
                        aws_secret_access_key=secret, region_name="us-east-1")


def can_be_a_machine() -> bool:
    """True when this process may give a child its own hostname (root, unshare)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "--uts", "true"], capture_output=True, check=False)
    return done.returncode == 0


def needs_machines() -> None:
    if not can_be_a_machine():
        pytest.skip("two machines on one host need `unshare --uts` (root)")


class Workstation:
    """A bgkit "machine": its own hostname, HOME and working directory."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.home = root / name / "home"
        self.cwd = root / name / "work"
        self.home.mkdir(parents=True, exist_ok=True)
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.env = isolated_aws_env(root / name, {**os.environ, "HOME": str(self.home)})
        self.env.pop("BGKIT_CONFIG", None)

    def argv(self, *args: str) -> list[str]:
        return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.name,
                sys.executable, "-m", "bgkit.cli", *args]

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), cwd=self.cwd, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run(self, *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), cwd=self.cwd, env=self.env, text=True,
                              capture_output=True, timeout=timeout_s, check=False)

    def start_python(self, code: str, *args: str) -> subprocess.Popen[str]:
        """Python code run as this machine (hostname, HOME), able to import the tests."""
        argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.name,
                sys.executable, "-c", code, *args]
        return subprocess.Popen(argv, cwd=self.cwd, env={**self.env, "PYTHONPATH": str(REPO)},
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# --- a store that ignores conditional writes ----------------------------------------------

class _CarelessStore(BaseHTTPRequestHandler):
    """Just enough of S3 for one bucket, answering every PUT 200: If-None-Match and
    If-Match are ignored, as some stores (and older proxies) do."""

    objects: ClassVar[dict[str, bytes]] = {}
    honour_puts = False  # True: conditional PUTs enforced, only DELETE's If-Match ignored

    def log_message(self, *_: object) -> None:
        return

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _missing(self) -> None:
        self._send(404, b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code><Message>"
                   b"not found</Message></Error>", {"Content-Type": "application/xml"})

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        key = self.path.split("?")[0]
        if self.honour_puts:
            current = self.objects.get(key)
            etag = None if current is None else f'"{hashlib.md5(current).hexdigest()}"'
            wanted = self.headers.get("If-Match")
            if (self.headers.get("If-None-Match") == "*" and current is not None) or \
                    (wanted is not None and wanted != etag):
                self._send(412, b"<?xml version='1.0'?><Error><Code>PreconditionFailed"
                           b"</Code><Message>no</Message></Error>",
                           {"Content-Type": "application/xml"})
                return
        self.objects[key] = body
        self._send(200, b"", {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    def do_GET(self) -> None:
        body = self.objects.get(self.path.split("?")[0])
        if body is None:
            self._missing()
            return
        self._send(200, body, {"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    do_HEAD = do_GET

    def do_DELETE(self) -> None:
        self.objects.pop(self.path.split("?")[0], None)
        self._send(204)


@contextmanager
def careless_store(*, honour_puts: bool = False) -> Iterator[str]:
    """An S3 endpoint on loopback that ignores conditional headers (with ``honour_puts``,
    only on DELETE); its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type(
        "Careless", (_CarelessStore,), {"objects": {}, "honour_puts": honour_puts}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def notebook_text(run_id: str, step: str = "04_switch") -> str:
    """A small run notebook as the archive stores it."""
    return json.dumps({"cells": [], "metadata": {"bgkit": {
        "run_id": run_id, "step": step, "outcome": "succeeded",
        "started_at": "2026-11-30T10:00:00+00:00"}}, "nbformat": 4, "nbformat_minor": 5},
        indent=1) + "\n"
