"""Secrets never reach the archive: the values are found and scrubbed everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_escaped_forms_of_a_secret_are_scrubbed_too() -> None:
    secret = 'p4ss"w\\ord<é>'
    import html
    import json

    shown = {"json": json.dumps({"k": secret}), "repr": repr(secret),
             "html": html.escape(secret), "ascii-json": json.dumps(secret)}
    cleaned, count = scrub(shown, {secret})
    assert count == 4
    assert all(secret not in text and "p4ss" not in text for text in cleaned.values()), cleaned


def test_a_secret_used_as_a_key_is_scrubbed() -> None:
    cleaned, count = scrub({"hunter22": {"tok-abcdef": 1}}, {"hunter22", "tok-abcdef"})
    assert cleaned == {MASK: {MASK: 1}} and count == 2


def test_scrubbing_a_whole_notebook_text_keeps_it_valid_json() -> None:
    import json

    from bgkit.runbook.scrub import scrub_text

    secret = 'x"y\\z-secret'
    inner = json.dumps({"printed": secret})  # a cell that printed JSON holding the secret
    document = json.dumps({"outputs": [inner, secret, repr(secret)]}, ensure_ascii=False)
    cleaned, count = scrub_text(document, {secret})
    assert count == 3 and "secret" not in cleaned
    assert json.loads(cleaned)["outputs"][1] == MASK


@pytest.mark.parametrize(("name", "secret"), [
    ("api_key", True), ("OVH_APPLICATION_SECRET", True), ("OVH_CONSUMER_KEY", True),
    ("db_password", True), ("dbPass", True), ("authToken", True), ("PRIVATE_KEY_PATH", True),
    ("credentials", True), ("PWD", False), ("OLDPWD", False), ("monkey", False),
    ("keyboard_layout", False), ("release", False), ("approve", False), ("passes", False),
    ("known_hosts", False)])
def test_one_rule_decides_which_names_look_secret(name: str, secret: bool) -> None:
    from bgkit.runbook.scrub import looks_secret

    assert looks_secret(name) is secret
