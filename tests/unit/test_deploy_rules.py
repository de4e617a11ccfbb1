"""Deploy's rules that need no host: checked against the shipped fake load balancer."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgkit.errors import UsageError
from bgkit.hosts import hosts_of
from bgkit.testing import FakeFleet


def test_deploy_refuses_idle_hosts_that_the_load_balancer_serves_live(tmp_path: Path) -> None:
    from bgkit.deploy import _refuse_live_servers

    with FakeFleet(blue="1.0.0", green="2.0.0") as fleet:
        config = fleet.config(tmp_path)
        _refuse_live_servers(config, fleet.lb, "blue", hosts_of(config, "green"))  # agrees
        drifted = config.model_copy(update={"pools": config.pools.model_copy(
            update={"green": config.pools.blue})})  # bgkit.toml names blue's servers green
        with pytest.raises(UsageError, match=r"serve\(s\) the live pool \(blue\)"):
            _refuse_live_servers(drifted, fleet.lb, "blue", hosts_of(drifted, "green"))
