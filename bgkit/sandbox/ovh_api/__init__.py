"""bgkit's OVH API emulator: IP Load Balancing and the Public Cloud Load Balancer as
OVHcloud serves them, on loopback.

It stands in for OVHcloud in the sandbox and the tests, following the official schemas
vendored beside it (``iploadbalancing.openapi.json`` and
``cloud-loadbalancing.schema.json``, see NOTICE.md) field for field, checking request
signatures and consumer-key access rules as OVHcloud does, staging IPLB changes until a
refresh task applies them, provisioning Public Cloud changes (``updating``, then
``active`` or ``error``), and driving the sandbox's real HAProxy as its data plane.
Faults (500s, slow answers, failing or stuck tasks and provisionings) can be injected.

- ``schema``: the vendored IPLB schema's operations and a validator for its models
- ``cloud_schema``: the same for the Public Cloud schema (OVHcloud's own format)
- ``auth``: signatures, credentials, access rules, OVHcloud's error bodies
- ``iplb``: one service's staged and applied configuration and its refresh tasks
- ``cloudlb``: one project's load balancers in one region, and their provisioning
- ``cloud_seed``: whole Public Cloud objects and the blue-green seed
- ``dataplane``: the HAProxy (or in-memory) data plane
- ``faults``: what to break, at start or at runtime
- ``app``: one answer per request; ``server``: the HTTP server around it
- ``seed``: the config file and the blue-green seed; ``__main__``: run as a process
"""

from bgkit.sandbox.ovh_api.app import Emulator
from bgkit.sandbox.ovh_api.server import EmulatorServer, start_in_thread

__all__ = ["Emulator", "EmulatorServer", "start_in_thread"]
