"""Secrets never reach the archive: the values are found and scrubbed everywhere."""

from __future__ import annotations

from pathlib import Path

from bgkit.runbook.scrub import MASK, scrub, secret_values


def test_secret_looking_environment_values_are_found_and_short_ones_ignored() -> None:
    env = {"OVH_APPLICATION_SECRET": "s3cr3t-value", "OVH_CONSUMER_KEY": "ck-123456",
           "DB_PASSWORD": "hunter22", "API_TOKEN": "tok-abcdef", "HOME": "/root",
           "SOME_KEY": "1", "MONKEY_BUSINESS": "not-a-secret"}
    found = secret_values(environ=env)
    assert {"s3cr3t-value", "ck-123456", "hunter22", "tok-abcdef"} <= found
    assert "/root" not in found and "1" not in found and "not-a-secret" not in found


def test_ovh_conf_keys_and_private_key_lines_are_found(tmp_path: Path) -> None:
    conf = tmp_path / "ovh.conf"
    conf.write_text("[default]\nendpoint=ovh-eu\n[ovh-eu]\napplication_key=AKAKAKAK\n"
                    "application_secret=ASASASAS\nconsumer_key=CKCKCKCK\n")
    key = tmp_path / "id"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
                   "-----END OPENSSH PRIVATE KEY-----\n")
    found = secret_values(environ={}, ovh_conf=conf, identity_file=key)
    assert {"AKAKAKAK", "ASASASAS", "CKCKCKCK", "b3BlbnNzaC1rZXktdjEAAAAA"} <= found
    assert "ovh-eu" not in found


def test_scrub_replaces_every_occurrence_in_nested_notebook_json() -> None:
    notebook = {"cells": [{"source": "print('hunter22')", "outputs": [
        {"text": "the password is hunter22 and hunter22x"},
        {"data": {"text/plain": ["tok-abcdef", 3]}}]}],
        "metadata": {"papermill": {"parameters": {"x": "hunter22"}}}}
    cleaned, count = scrub(notebook, {"hunter22", "tok-abcdef"})
    assert count == 5
    assert cleaned["cells"][0]["source"] == f"print('{MASK}')"
    assert cleaned["cells"][0]["outputs"][0]["text"] == f"the password is {MASK} and {MASK}x"
    assert cleaned["cells"][0]["outputs"][1]["data"]["text/plain"] == [MASK, 3]
    assert cleaned["metadata"]["papermill"]["parameters"]["x"] == MASK


def test_longer_secrets_are_masked_before_their_prefixes() -> None:
    cleaned, _ = scrub({"t": "abcdefgh-long"}, {"abcdefgh", "abcdefgh-long"})
    assert cleaned == {"t": MASK}
