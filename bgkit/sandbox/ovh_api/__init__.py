"""bgkit's OVH API emulator: IP Load Balancing as OVHcloud serves it, on loopback.

It stands in for OVHcloud in the sandbox and the tests, following the official schema
vendored beside it (``iploadbalancing.openapi.json``, see NOTICE.md) field for field,
checking request signatures and consumer-key access rules as OVHcloud does, staging
changes until a refresh task applies them, and driving the sandbox's real HAProxy as
its data plane. Faults (500s, slow answers, failing or stuck tasks) can be injected.

- ``schema``: the vendored schema's operations and a validator for its models
- ``auth``: signatures, credentials, access rules, OVHcloud's error bodies
- ``iplb``: one service's staged and applied configuration and its refresh tasks
- ``dataplane``: the HAProxy (or in-memory) data plane
- ``faults``: what to break, at start or at runtime
- ``app``: one answer per request; ``server``: the HTTP server around it
- ``seed``: the config file and the blue-green seed; ``__main__``: run as a process
"""

from bgkit.sandbox.ovh_api.app import Emulator
from bgkit.sandbox.ovh_api.server import EmulatorServer, start_in_thread

__all__ = ["Emulator", "EmulatorServer", "start_in_thread"]
