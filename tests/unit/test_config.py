"""bgkit.toml: the example loads; each class of mistake names its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgkit.config import load_config, parse_config
from bgkit.errors import ConfigError
from tests.conftest import EXAMPLE_CONFIG, EXAMPLE_DIR, example_data


def problems_of(data: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, path="conf/bgkit.toml")
    return caught.value.problems


def test_the_shipped_example_loads_with_paths_resolved_against_its_folder() -> None:
    config = load_config(EXAMPLE_CONFIG)
    assert config.app.name == "hello-c"
    assert config.source_dir == EXAMPLE_DIR
    assert config.runs_dir == EXAMPLE_DIR.parents[1] / "runs"
    assert [h.address for h in config.pools.blue.hosts] == ["127.0.1.1"]
    assert config.gates.min_samples_per_host == 50


def test_config_is_frozen() -> None:
    config = load_config(EXAMPLE_CONFIG)
    with pytest.raises(ValueError, match="frozen"):
        config.app.name = "other"  # type: ignore[misc]


def test_a_bad_port_names_the_key_path_and_the_expectation() -> None:
    data = example_data()
    data["pools"]["green"]["hosts"].append(
        {"address": "127.0.2.2", "port": "22x", "user": "deploy", "deploy_root": "/srv/x"})
    assert problems_of(data) == (
        'pools.green.hosts[1].port: expected an integer 1-65535, got "22x"',)


@pytest.mark.parametrize("port", [0, 65536, -1, 22.5, True])
def test_ports_outside_1_to_65535_are_refused(port: object) -> None:
    data = example_data()
    data["service"]["port"] = port
    (problem,) = problems_of(data)
    assert problem.startswith("service.port: expected an integer 1-65535, got ")


def test_a_missing_key_is_named() -> None:
    data = example_data()
    del data["pools"]["blue"]["hosts"][0]["user"]
    assert problems_of(data) == ("pools.blue.hosts[0].user: required key is missing",)


def test_a_missing_table_is_named() -> None:
    data = example_data()
    del data["service"]
    assert problems_of(data) == ("service: required key is missing",)


def test_an_unknown_key_lists_the_valid_ones() -> None:
    data = example_data()
    data["app"]["nmae"] = "typo"
    assert problems_of(data) == (
        "app.nmae: unknown key (expected one of: build_type, cmake_options, dist_dir, name, "
        "source_dir, version)",)


def test_a_secret_in_the_config_is_refused_with_where_secrets_belong() -> None:
    data = example_data()
    data["lb"]["application_secret"] = "s3cr3t"
    (problem,) = problems_of(data)
    assert problem.startswith("lb.application_secret: unknown key; secrets never belong")
    assert "s3cr3t" not in problem


@pytest.mark.parametrize(("value", "shown"), [
    (5, "5"), ("yes", '"yes"'), ([1], "a list"), ({"a": 1}, "a table")])
def test_a_wrong_type_says_what_was_expected_and_what_was_found(value: object,
                                                                 shown: str) -> None:
    data = example_data()
    data["gates"]["require_version"] = value
    assert problems_of(data) == (f"gates.require_version: expected true or false, got {shown}",)


@pytest.mark.parametrize("address", ["300.1.1.1", "", "host name", "-bad.example", "a..b", 7])
def test_bad_addresses_are_refused(address: object) -> None:
    data = example_data()
    data["pools"]["blue"]["hosts"][0]["address"] = address
    (problem,) = problems_of(data)
    assert problem.startswith("pools.blue.hosts[0].address: expected an IP address or host name")


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "web-1.example.com", "localhost"])
def test_good_addresses_are_accepted(address: str) -> None:
    data = example_data()
    data["pools"]["blue"]["hosts"][0]["address"] = address
    config = parse_config(data, path="bgkit.toml")
    assert config.pools.blue.hosts[0].address == address


def test_every_problem_is_reported_at_once() -> None:
    data = example_data()
    data["service"]["port"] = "x"
    data["gates"]["max_error_ratio"] = 2
    data["lb"]["provider"] = "nginx"
    assert problems_of(data) == (
        'service.port: expected an integer 1-65535, got "x"',
        "lb.provider: expected 'haproxy' or 'ovh-iplb', got \"nginx\"",
        "gates.max_error_ratio: expected a ratio from 0 to 1 (0.01 = 1 %), got 2",
    )


def test_a_host_in_both_pools_is_refused() -> None:
    data = example_data()
    data["pools"]["green"]["hosts"][0] = dict(data["pools"]["blue"]["hosts"][0])
    (problem,) = problems_of(data)
    assert "green.hosts[0] is the same host and deploy root as blue.hosts[0]" in problem


def test_the_chosen_provider_needs_its_settings_table() -> None:
    data = example_data()
    data["lb"]["provider"] = "ovh-iplb"
    assert problems_of(data) == ('lb: provider "ovh-iplb" needs a [lb.ovh_iplb] table',)


def test_deploy_root_must_be_absolute_and_executable_relative() -> None:
    data = example_data()
    data["pools"]["blue"]["hosts"][0]["deploy_root"] = "srv/app"
    data["service"]["executable"] = "/usr/bin/evil"
    problems = problems_of(data)
    assert problems[0].startswith('service.executable: expected a path inside the release')
    assert problems[1].startswith('pools.blue.hosts[0].deploy_root: expected an absolute path')


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.toml"
    path.write_text('[app]\nname = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_toml_syntax_errors_are_config_errors_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bgkit.toml"
    path.write_text("[app\nname = 1\n")
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 1"):
        load_config(path)


def test_a_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file .*--config"):
        load_config(tmp_path / "absent.toml")


def test_the_environment_variable_names_the_default_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text(EXAMPLE_CONFIG.read_text())
    monkeypatch.setenv("BGKIT_CONFIG", str(path))
    assert load_config().path == path


# --- fuzzing: whatever the input, load_config only ever raises ConfigError -----------

toml_scalars = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=20))
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


def _leaf_paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _leaf_paths(v, (*prefix, k))] or [prefix]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _leaf_paths(v, (*prefix, i))] or [prefix]
    return [prefix]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), replacement=toml_values, delete=st.booleans())
def test_fuzzed_mutations_of_the_example_only_raise_config_error(
        data: st.DataObject, replacement: Any, delete: bool) -> None:
    config = example_data()
    paths = _leaf_paths(config)
    target = data.draw(st.sampled_from(paths))
    cut = data.draw(st.integers(min_value=1, max_value=len(target)))
    parent: Any = config
    for key in target[: cut - 1]:
        parent = parent[key]
    key = target[cut - 1]
    if delete and isinstance(parent, dict):
        del parent[key]
    else:
        parent[key] = replacement
    try:
        parse_config(config, path="fuzz.toml")
    except ConfigError as error:
        assert error.problems
        assert all(": " in problem for problem in error.problems)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_fuzzed_file_text_only_raises_config_error(text: str, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "bgkit.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except ConfigError as error:
        assert str(error).startswith(str(path))


@settings(max_examples=200, deadline=None)
@given(tables=st.dictionaries(st.sampled_from(
    ["app", "service", "pools", "lb", "gates", "runs", "extra"]), toml_values, max_size=6))
def test_fuzzed_top_level_tables_only_raise_config_error(tables: dict[str, Any]) -> None:
    tomli_w.dumps(tables)  # only what TOML itself can express
    try:
        parse_config(tables, path="fuzz.toml")
    except ConfigError as error:
        assert error.problems
