"""Pure renderers of the files the sandbox writes: configs from templates, bgkit.toml, ini.

No I/O here beyond reading the packaged templates: each function returns text.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bgkit.sandbox.state import Layout, SandboxHost, SandboxOptions

__all__ = [
    "AppFacts",
    "OvhFacts",
    "app_facts",
    "render_bgkit_toml",
    "render_known_hosts",
    "render_service_ini",
    "render_template",
]


@dataclass(frozen=True, slots=True)
class AppFacts:
    """What the sandbox's bgkit.toml copies from the sample service's own bgkit.toml."""

    name: str = "hello-c"
    version: str = "1.0.0"
    build_type: str = "Release"
    cmake_options: tuple[str, ...] = ()
    executable: str = "bin/hello-c"
    health_path: str = "/health"
    version_header: str = "X-App-Version"
    drain_timeout_s: float = 10.0
    args: tuple[str, ...] = ("--config={shared}/config.ini",)
    version_from: str | None = None
    files: tuple[Mapping[str, object], ...] = ()  # [[service.files]], templates absolute
    include: tuple[Mapping[str, object], ...] = ()
    install_components: tuple[str, ...] = ()
    ctest: bool = True
    ctest_args: tuple[str, ...] = ()
    systemd_user: str = "bgkit-svc"


@dataclass(frozen=True, slots=True)
class OvhFacts:
    """What ``[lb.ovh_iplb]`` of the sandbox's bgkit.toml names (never a secret)."""

    endpoint: str
    service_name: str
    frontend_id: int
    farm_ids: Mapping[str, int]
    config_file: str  # the ovh.conf holding the keys


def app_facts(source: Path) -> AppFacts:
    """``[app]`` and ``[service]`` facts from ``<source>/bgkit.toml``; defaults if absent.

    Raises:
        ValueError: the file exists but is not TOML.
    """
    try:
        data = tomllib.loads((source / "bgkit.toml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return AppFacts()
    app: Mapping[str, Any] = data.get("app", {})
    service: Mapping[str, Any] = data.get("service", {})
    default = AppFacts()
    systemd: Mapping[str, Any] = service.get("systemd", {})
    files = tuple({**item, "template": str((source / str(item["template"])).resolve())}
                  for item in service.get("files", ()))
    return AppFacts(
        args=tuple(str(a) for a in service.get("args", default.args)),
        systemd_user=str(systemd.get("user", default.systemd_user)),
        version_from=service.get("version_from"),
        files=files,
        include=tuple(app.get("include", ())),
        install_components=tuple(app.get("install_components", ())),
        ctest=bool(app.get("ctest", True)),
        ctest_args=tuple(app.get("ctest_args", ())),
        name=str(app.get("name", default.name)),
        version=str(app.get("version", default.version)),
        build_type=str(app.get("build_type", default.build_type)),
        cmake_options=tuple(str(o) for o in app.get("cmake_options", ())),
        executable=str(service.get("executable", default.executable)),
        health_path=str(service.get("health_path", default.health_path)),
        version_header=str(service.get("version_header", default.version_header)),
        drain_timeout_s=float(service.get("drain_timeout_s", default.drain_timeout_s)),
    )


def render_template(name: str, **values: object) -> str:
    """Render ``bgkit/sandbox/templates/<name>.j2``; an undefined value is an error."""
    import jinja2

    text = resources.files("bgkit.sandbox").joinpath("templates", f"{name}.j2").read_text(
        encoding="utf-8")
    # Config files, not HTML: autoescaping would corrupt them.
    environment = jinja2.Environment(  # noqa: S701
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)
    return environment.from_string(text).render(**values)


def render_service_ini(host: SandboxHost, *, app_port: int, drain_timeout_s: float) -> str:
    """The host-local ``shared/config.ini`` of the sample service (no ``version`` key)."""
    return (
        f"; host-local config of sandbox host {host.name}, written by `bgkit sandbox up`.\n"
        "; No `version` key: the service reports the version compiled into the release.\n"
        "[server]\n"
        f"bind = {host.address}\n"
        f"port = {app_port}\n"
        f"drain_timeout_ms = {math.ceil(drain_timeout_s * 1000)}\n"
        "\n"
        "[faults]\n"
    )


def render_known_hosts(addresses: Sequence[str], *, port: int, host_key: str) -> str:
    """One known_hosts line per address; ``host_key`` is ``<type> <base64>``."""
    names = [address if port == 22 else f"[{address}]:{port}" for address in addresses]
    return "".join(f"{name} {host_key}\n" for name in names)


def _toml(value: object) -> str:
    """A TOML value: json.dumps quoting is valid TOML basic-string quoting."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _table(header: str, values: Mapping[str, object]) -> str:
    lines = [header] + [f"{key} = {_toml(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _host_entry(options: SandboxOptions, host: SandboxHost, facts: AppFacts) -> dict[str, object]:
    """A host as bgkit.toml names it. A systemd host is a container whose ``/srv`` is the
    host's folder: its deploy user is ``deploy`` and its deploy root ``/srv/<app>``."""
    if options.manager == "systemd":
        return {"address": host.address, "port": options.ssh_port, "user": "deploy",
                "deploy_root": f"/srv/{facts.name}", "name": host.name}
    return {"address": host.address, "port": options.ssh_port, "user": options.user,
            "deploy_root": str(host.root), "name": host.name}


def render_bgkit_toml(*, layout: Layout, options: SandboxOptions, hosts: Sequence[SandboxHost],
                      runtime_api: str, facts: AppFacts, ovh: OvhFacts | None = None) -> str:
    """A complete bgkit.toml for the fleet (``load_config`` must accept it).

    With ``ovh``, bgkit talks to the OVH API emulator (``[lb.ovh_iplb]``) and never to
    HAProxy directly; else to HAProxy (``[lb.haproxy]``).
    """
    public_url = f"http://127.0.0.1:{options.public_port}"
    if ovh is None:
        lb_tables = [
            _table("[lb]", {"provider": "haproxy", "public_url": public_url}),
            _table("[lb.haproxy]", {
                "runtime_api": runtime_api, "map_file": str(layout.map_file),
                "frontend": "app", "backends": {"blue": "blue", "green": "green"}})]
    else:
        lb_tables = [
            _table("[lb]", {"provider": "ovh-iplb", "public_url": public_url}),
            "# Keys come from OVH_* variables or config_file (python-ovh's ovh.conf), never\n"
            "# from this file.\n" + _table("[lb.ovh_iplb]", {
                "endpoint": ovh.endpoint, "service_name": ovh.service_name,
                "frontend_id": ovh.frontend_id, "farm_ids": dict(ovh.farm_ids),
                "config_file": ovh.config_file})]
    signal: dict[str, object] = {"version_from": facts.version_from} if facts.version_from \
        else {"version_header": facts.version_header}
    tables = [
        f"# bgkit.toml of the sandbox fleet in {layout.root}, written by `bgkit sandbox up`.\n"
        "# It is rewritten by every `up`: copy it elsewhere before editing.\n",
        _table("[app]", {
            "name": facts.name, "version": facts.version, "source_dir": options.source,
            "build_type": facts.build_type, "cmake_options": list(facts.cmake_options),
            "dist_dir": str(layout.dist_dir), "include": list(facts.include),
            "install_components": list(facts.install_components), "ctest": facts.ctest,
            "ctest_args": list(facts.ctest_args)}),
        _table("[service]", {
            "port": options.app_port, "executable": facts.executable,
            "args": list(facts.args), "manager": options.manager,
            "health_path": facts.health_path, **signal,
            "drain_timeout_s": facts.drain_timeout_s}),
        *(_table("[[service.files]]", dict(item)) for item in facts.files),
        *([_table("[service.systemd]", {"user": facts.systemd_user})]
          if options.manager == "systemd" else []),
        *(_table(f"[[pools.{host.pool}.hosts]]", _host_entry(options, host, facts))
          for host in hosts),
        *lb_tables,
        "# Everything on loopback: nothing holds the old pool but what HAProxy and the hosts\n"
        "# count, so a deploy right after a switch waits 2 s, not the default 30 s.\n"
        + _table("[deploy]", {"min_idle_s": 2}),
        _table("[ssh]", {"known_hosts": str(layout.known_hosts),
                         "identity_file": str(layout.client_key),
                         **({"config_file": str(layout.root / "ssh" / "config")}
                            if options.bastion else {})}),
        _table("[runs]", {"dir": options.runs_dir}),
    ]
    return "\n".join(tables)
