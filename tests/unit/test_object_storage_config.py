"""[lock] and [runs] in object storage: how bgkit.toml says it, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgkit import lock as locking
from bgkit.config import load_config
from bgkit.errors import ConfigError
from bgkit.runbook.backends import LocalArchive, open_archive
from bgkit.runbook.scrub import archive_secrets, aws_credential_values
from tests.conftest import WriteConfig

S3_LOCK = {"url": "s3://acme-deploys/locks/hello-c.lock",
           "endpoint": "https://s3.gra.io.cloud.ovh.net", "region": "gra"}


def without(path: Path, *lines: str) -> Path:
    text = path.read_text()
    for line in lines:
        text = "\n".join(row for row in text.splitlines() if not row.startswith(line)) + "\n"
    path.write_text(text)
    return path


def test_the_lock_is_a_file_by_default_and_a_file_url_is_the_same_store(
        write_config: WriteConfig, tmp_path: Path) -> None:
    config = load_config(write_config())
    assert config.lock_url == f"file://{tmp_path / 'bgkit.lock'}"
    store = locking.store_for(config)
    assert isinstance(store, locking.FileLeaseStore) and store.path == tmp_path / "bgkit.lock"
    explicit = load_config(without(write_config({"lock": {"url": "file:///srv/locks/app"}}),
                                   "path = "))
    assert locking.store_for(explicit).location == "/srv/locks/app"


def test_an_s3_lock_and_archive_are_read_from_the_config(
        write_config: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = write_config({"lock": S3_LOCK, "runs": {
        "url": "s3://acme-deploys/runs/", "endpoint": "https://s3.gra.io.cloud.ovh.net",
        "retain_days": 400, "retain_mode": "COMPLIANCE"}})
    config = load_config(without(path, "path = ", "dir = "))
    assert config.lock_url == "s3://acme-deploys/locks/hello-c.lock"
    assert config.runs_url == "s3://acme-deploys/runs"
    assert config.runs_dir == (tmp_path / "cache" / "bgkit" / "archives" /
                               "s3.gra.io.cloud.ovh.net" / "acme-deploys" / "runs" / "archive")
    assert config.runs.retain_days == 400 and config.runs.retain_mode == "COMPLIANCE"


@pytest.mark.parametrize(("changes", "message"), [
    ({"lock": {"url": "s3://Acme/x"}}, "lock.url: expected file:///absolute/path or "
     "s3://bucket/key, got \"s3://Acme/x\": the bucket name"),
    ({"lock": {"url": "s3://acme-deploys"}}, "the object key must be"),
    ({"lock": {"url": "s3://acme-deploys/a/../b"}}, "no '.' or '..' parts"),
    ({"lock": {"url": "http://example.com/lock"}}, "lock.url: expected"),
    ({"lock": {"url": "file://relative/lock"}}, "lock.url: expected"),
    ({"lock": {"endpoint": "https://s3.gra.io.cloud.ovh.net"}},
     "lock: endpoint: only for object storage"),
    ({"runs": {"retain_days": 30}}, "runs: retain_days: only for an archive in object storage"),
    ({"runs": {"url": "s3://acme-deploys/runs", "retain_days": 0}},
     "runs.retain_days: expected a whole number of days 1-36500"),
    ({"runs": {"url": "s3://acme-deploys/runs",
               "endpoint": "https://AKIA:secret@s3.gra.io.cloud.ovh.net"}},
     "credentials never belong in bgkit.toml, not even in a URL"),
    ({"runs": {"url": "s3://acme-deploys/runs", "aws_secret_access_key": "abc"}},
     "runs.aws_secret_access_key: unknown key; secrets never belong in bgkit.toml"),
])
def test_object_storage_settings_are_checked_and_errors_name_the_key(
        write_config: WriteConfig, changes: dict[str, object], message: str) -> None:
    path = without(write_config(changes), *(["dir = "] if "url" in str(changes.get("runs"))
                                            else []))
    if "url" in str(changes.get("lock")):
        without(path, "path = ")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert message in str(raised.value)


def test_a_place_given_twice_is_refused(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match="lock: path and url both say where the lock is"):
        load_config(write_config({"lock": S3_LOCK}))
    with pytest.raises(ConfigError, match="runs: dir and url both say where the archive is"):
        load_config(write_config({"runs": {"url": "s3://acme-deploys/runs"}}))


def test_a_folder_archive_stays_the_default_and_the_folder_given_wins(
        write_config: WriteConfig, tmp_path: Path) -> None:
    config = load_config(write_config())
    archive = open_archive(config)
    assert isinstance(archive, LocalArchive) and archive.folder == tmp_path / "runs"
    assert open_archive(config, runs_dir=tmp_path / "other").folder == tmp_path / "other"


def test_keys_of_the_credentials_file_an_s3_config_names_are_scrubbed_and_only_then(
        write_config: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    credentials = tmp_path / "credentials"
    credentials.write_text("[deploys]\naws_access_key_id = AKIAEXAMPLEKEY01\n"
                           "aws_secret_access_key = wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY\n")
    plain = load_config(write_config())
    assert aws_credential_values(plain) == set()
    path = write_config({"lock": {**S3_LOCK, "profile": "deploys",
                                  "credentials_file": str(credentials)}})
    config = load_config(without(path, "path = "))
    assert aws_credential_values(config) == {"AKIAEXAMPLEKEY01",
                                             "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"}
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-environment-1234")
    assert "from-the-environment-1234" in archive_secrets(plain)
