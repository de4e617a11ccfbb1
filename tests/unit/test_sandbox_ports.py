"""Where the sandbox's free ports come from: the kernel, or $BGKIT_PORT_RANGE."""

from __future__ import annotations

import socket

import pytest

from bgkit.errors import SandboxError
from bgkit.sandbox.ports import free_ports
from bgkit.sandbox.processes import free_port


def test_ports_come_from_the_range_and_skip_one_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        busy = holder.getsockname()[1]
        holder.listen()
        low = max(1024, busy - 1)
        monkeypatch.setenv("BGKIT_PORT_RANGE", f"{low}-{low + 2}")
        picked = {free_port() for _ in range(40)}
        assert picked and busy not in picked
        assert all(low <= port <= low + 2 for port in picked)
    monkeypatch.setenv("BGKIT_PORT_RANGE", "20000-20999")
    ports = free_ports(3, hosts=1)
    assert len(set(ports)) == 3 and all(20000 <= port <= 20999 for port in ports)


@pytest.mark.parametrize("text", ["abc", "20000", "500-600", "30000-20000", "1-99999"])
def test_a_bad_range_says_what_is_expected(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGKIT_PORT_RANGE", text)
    with pytest.raises(SandboxError, match="expected LOW-HIGH"):
        free_port()


def test_without_a_range_the_kernel_picks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BGKIT_PORT_RANGE", raising=False)
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # it was free
