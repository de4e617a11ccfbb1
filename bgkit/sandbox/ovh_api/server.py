"""The emulator's HTTP server: stdlib ``ThreadingHTTPServer`` on a loopback address.

HTTP/1.1 with keep-alive (python-ovh reuses one ``requests`` session). ``serve`` runs
one until it is shut down; ``start_in_thread`` runs one in the background for tests.
Only loopback addresses are accepted.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from bgkit.sandbox.ovh_api.app import API_ROOT, BAD_URL, Answer, Emulator

__all__ = ["EmulatorServer", "start_in_thread"]


class EmulatorServer(ThreadingHTTPServer):
    """An HTTP server answering with one :class:`Emulator`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the OVH API emulator listens on loopback only, not {host}")
        self.emulator = emulator
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """The API root python-ovh calls the endpoint: ``http://127.0.0.1:PORT/1.0``."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{API_ROOT}"

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up (e.g. its timeout) is logged in one line, not a traceback."""
        error = sys.exc_info()[1]
        self.emulator.log(f"{client_address}: connection ended: {error!r}")

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.emulator.stop()


class _Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"
    server_version = "bgkit-ovh-emulator"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        path = urlsplit(self.path).path
        emulator = self.server.emulator
        if path.startswith(f"{API_ROOT}/"):
            headers = {name.lower(): value for name, value in self.headers.items()}
            host = self.headers.get("Host") or self.server.url.split("/")[2]
            answer = emulator.api(method=method, target=self.path, host=host,
                                  headers=headers, body=body)
        elif path.startswith("/_emulator/"):
            answer = emulator.control(method, path, body)
        elif path in ("/auth", "/auth/"):
            answer = emulator.validation_page(method, self.path)
        else:
            answer = Answer(404, {"class": "Client::NotFound", "message": BAD_URL})
        self._send(answer)

    def _send(self, answer: Answer) -> None:
        if answer.html:
            data = answer.body.encode("utf-8")
            kind = "text/html; charset=utf-8"
        else:
            data = json.dumps(answer.body).encode("utf-8")
            kind = "application/json; charset=utf-8"
        self.send_response(answer.status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        self.server.emulator.log(f"{self.address_string()} {format % args}")


def start_in_thread(emulator: Emulator, host: str = "127.0.0.1",
                    port: int = 0) -> EmulatorServer:
    """Serve ``emulator`` from background threads; ``close()`` stops it."""
    server = EmulatorServer(emulator, host, port)
    emulator.run_ticker()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                     name="ovh-emulator", daemon=True).start()
    return server
