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
from tests.conftest import EXAMPLE_CONFIG, EXAMPLE_DIR, example_data, merge


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
    del data["pools"]["blue"]["hosts"][0]["deploy_root"]
    assert problems_of(data) == ("pools.blue.hosts[0].deploy_root: required key is missing",)


def test_a_missing_table_is_named() -> None:
    data = example_data()
    del data["service"]
    assert problems_of(data) == ("service: required key is missing",)


def test_an_unknown_key_lists_the_valid_ones() -> None:
    data = example_data()
    data["app"]["nmae"] = "typo"
    assert problems_of(data) == (
        "app.nmae: unknown key (expected one of: build_type, cmake_options, ctest, ctest_args, "
        "dist_dir, include, install_components, name, source_dir, version)",)


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
        "lb.provider: expected 'haproxy', 'ovh-iplb' or 'ovh-cloud-lb', got \"nginx\"",
        "gates.max_error_ratio: expected a ratio from 0 to 1 (0.01 = 1 %), got 2",
    )


def test_a_host_in_both_pools_is_refused() -> None:
    data = example_data()
    data["pools"]["green"]["hosts"][0] = dict(data["pools"]["blue"]["hosts"][0])
    (problem,) = problems_of(data)
    assert "green.hosts[0] is the same host and deploy root as blue.hosts[0]" in problem


def test_an_address_in_both_pools_is_refused_even_with_another_deploy_root() -> None:
    data = example_data()
    data["pools"]["green"]["hosts"][0]["address"] = data["pools"]["blue"]["hosts"][0]["address"]
    data["pools"]["green"]["hosts"][0]["deploy_root"] = "/srv/green"
    (problem,) = problems_of(data)
    assert "green.hosts[0] has the address" in problem and "of blue.hosts[0]" in problem
    assert "expected each address in one pool only" in problem


def test_two_hosts_with_one_name_are_refused() -> None:
    data = example_data()
    data["pools"]["blue"]["hosts"][0]["name"] = "web"
    data["pools"]["green"]["hosts"][0]["name"] = "web"
    (problem,) = problems_of(data)
    assert "green.hosts[0] is named 'web' like blue.hosts[0]" in problem


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


# --- control characters: refused in every string, whatever the key (issue 11) --------

CONTROL_CHARACTERS = [chr(c) for c in [*range(0x20), 0x7f, *range(0x80, 0xa0)]]


def _with_every_string_key() -> dict[str, Any]:
    """The example with each optional string key set too (unit, group, paths...)."""
    return merge(example_data(), {
        "service": {"systemd": {"unit": "hello-c.service", "group": "hello",
                                "read_write_paths": ["/var/lib/hello"],
                                "unit_dir": "/etc/systemd/system"}},
        "ssh": {"identity_file": "~/.ssh/id"},
        "lock": {"path": "bgkit.lock"},
        "runs": {"dir": "runs"},
    })


def _string_leaves(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return [path for path in _leaf_paths(data, prefix)
            if isinstance(_at(data, path), str)]


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def _key_path(path: tuple[Any, ...]) -> str:
    from bgkit._validators import key_path

    return key_path(path)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), control=st.sampled_from(CONTROL_CHARACTERS))
def test_a_control_character_in_any_config_string_is_refused_naming_its_key(
        data: st.DataObject, control: str) -> None:
    config = _with_every_string_key()
    path = data.draw(st.sampled_from(_string_leaves(config)))
    value: str = _at(config, path)
    cut = data.draw(st.integers(min_value=0, max_value=len(value)))
    _at(config, path[:-1])[path[-1]] = value[:cut] + control + value[cut:]
    problems = problems_of(config)
    assert any(problem.startswith(f"{_key_path(path)}: expected ") for problem in problems)
    literal = path[-1] in ("manager", "build_type", "restart", "provider")
    assert literal or any("without control characters" in p for p in problems), problems


@pytest.mark.parametrize(("changes", "key"), [
    ({"pools": {"blue": {"hosts": [{"address": "127.0.1.1", "user": "deploy",
                                    "deploy_root": "/srv/x\rExecStartPre=+/bin/sh -c id"}]}}},
     "pools.blue.hosts[0].deploy_root"),
    ({"service": {"args": ["--config={shared}/c.ini\rExecStartPre=+/bin/id"]}},
     "service.args[0]"),
    ({"service": {"args": ["a\nb"]}}, "service.args[0]"),
    ({"service": {"executable": "bin/app\x00"}}, "service.executable"),
    ({"service": {"systemd": {"read_write_paths": ["/var/x\x85y"]}}},
     "service.systemd.read_write_paths[0]"),
    ({"service": {"health_path": "/health\x7f"}}, "service.health_path"),
], ids=["cr-in-deploy-root", "cr-in-args", "lf-in-args", "nul-in-executable", "c1-in-path",
        "del-in-health-path"])
def test_the_reported_injections_are_refused_by_config_check(
        changes: dict[str, Any], key: str) -> None:
    problems = problems_of(merge(example_data(), changes))
    assert any(p.startswith(f"{key}: expected ") and "without control characters" in p
               for p in problems), problems


def test_every_string_field_of_the_schema_has_a_validator() -> None:
    """A string reaching a host must pass _validators (and so the control-character rule)."""
    from pydantic import BaseModel

    from bgkit.config import Config

    def unchecked(model: type[BaseModel], where: str) -> list[str]:
        found = []
        for name, field in model.model_fields.items():
            nested = _models_in(field.annotation)
            if nested:
                found += [p for m in nested for p in unchecked(m, f"{where}.{name}")]
            elif _holds_plain_str(field.annotation) and not field.metadata:
                found.append(f"{where}.{name}")
        return found

    assert unchecked(Config, "config") == []


def _models_in(annotation: Any) -> list[Any]:
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _holds_plain_str(annotation: Any) -> bool:
    from typing import Annotated, get_args, get_origin

    if annotation is str:
        return True
    if get_origin(annotation) is Annotated:
        return False
    return any(_holds_plain_str(arg) for arg in get_args(annotation))


def test_unit_names_must_be_services_and_size_caps_positive() -> None:
    data = merge(example_data(), {"service": {"systemd": {"unit": "hello-c"}},
                                  "deploy": {"max_unpacked_mb": 0}})
    assert problems_of(data) == (
        'service.systemd.unit: expected a systemd service name such as hello-c.service '
        '(letters, digits, \'.\', \'_\', \'-\'), got "hello-c"',
        "deploy.max_unpacked_mb: expected a whole number of MiB, 1 or more, got 0")


def test_config_check_exits_2_on_a_carriage_return_in_deploy_root(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bgkit.cli import main

    data = example_data()
    data["pools"]["blue"]["hosts"][0]["deploy_root"] = "/srv/x\rExecStartPre=+/bin/id"
    path = tmp_path / "bgkit.toml"
    path.write_text(tomli_w.dumps(data))
    assert main(["config", "check", str(path)]) == 2
    error = capsys.readouterr().err
    assert "pools.blue.hosts[0].deploy_root: expected an absolute path such as /opt/app, " \
        'without control characters (CR, LF, NUL, tab...), got "/srv/x\\rExecStartPre' in error


@pytest.mark.parametrize("provider", ["ovh-iplb", "ovh-cloud-lb"])
def test_the_examples_commented_ovh_tables_are_valid_once_uncommented(provider: str) -> None:
    import tomllib

    text = EXAMPLE_CONFIG.read_text()
    start = text.index(f'# [lb]\n# provider = "{provider}"')
    lines = []
    for line in text[start:].splitlines():
        if not line.startswith("# ") or line.startswith("# Keys") or (
                lines and line.startswith("# [lb]")):
            break
        lines.append(line[2:])
    table = tomllib.loads("\n".join(lines))
    config = parse_config({**example_data(), "lb": table["lb"]}, path="bgkit.toml")
    assert config.lb.provider == provider


def test_an_unknown_key_in_a_canary_step_lists_the_keys_a_step_has() -> None:
    data = example_data()
    data["switch"]["canary"] = [{"percent": 5, "hold": 3}]
    (problem,) = problems_of(data)
    assert problem == "switch.canary[0].hold: unknown key (expected one of: hold_s, percent)"
