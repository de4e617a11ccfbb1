"""Where the sandbox's free ports come from: the kernel, or $BGKIT_PORT_RANGE."""

from __future__ import annotations

import socket

import pytest

from bgkit.errors import SandboxError
from bgkit.sandbox.ports import free_ports
from bgkit.sandbox.processes import free_port


def test_ports_come_from_the_range_skip_one_in_use_and_are_never_handed_out_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from bgkit.sandbox import processes

    monkeypatch.setattr(processes, "_HANDED_OUT", set())
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        busy = holder.getsockname()[1]
        holder.listen()
        low = max(1024, busy - 1)
        monkeypatch.setenv("BGKIT_PORT_RANGE", f"{low}-{low + 2}")
        free = [port for port in range(low, low + 3) if port != busy and _bindable(port)]
        picked = [free_port() for _ in free]
        assert sorted(picked) == sorted(free) and busy not in picked
        with pytest.raises(SandboxError, match="no free port"):
            free_port()  # the range's free ports were all handed out already
    monkeypatch.setenv("BGKIT_PORT_RANGE", "20000-20999")
    ports = free_ports(3, hosts=1)
    assert len(set(ports)) == 3 and all(20000 <= port <= 20999 for port in ports)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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
