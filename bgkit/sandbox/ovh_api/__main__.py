"""``python -m bgkit.sandbox.ovh_api --config FILE``: run the emulator until SIGTERM.

The config file is described in ``bgkit.sandbox.ovh_api.seed``. In the foreground it
prints ``listening on URL`` and logs requests to stderr. With ``--daemon --pid-file P
--log L`` (how the sandbox starts it, like ``haproxy -D``) it binds its port first,
then forks: the child detaches, logs to ``L`` and serves; the parent writes the child's
pid to ``P`` and exits 0, so a caller knows the port is bound when it returns.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from bgkit.sandbox.ovh_api.app import Emulator
from bgkit.sandbox.ovh_api.seed import load_emulator
from bgkit.sandbox.ovh_api.server import EmulatorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bgkit.sandbox.ovh_api",
                                     description="bgkit's OVH API emulator (loopback only)")
    parser.add_argument("--config", required=True, type=Path, help="emulator config (JSON)")
    parser.add_argument("--daemon", action="store_true", help="fork into the background")
    parser.add_argument("--pid-file", type=Path, help="with --daemon: where to write the pid")
    parser.add_argument("--log", type=Path, help="with --daemon: the log file")
    args = parser.parse_args(argv)
    if args.daemon and (args.pid_file is None or args.log is None):
        parser.error("--daemon needs --pid-file and --log")
    try:
        config = json.loads(args.config.read_text(encoding="utf-8"))
        emulator, host, port = load_emulator(
            config, log=lambda line: print(line, file=sys.stderr, flush=True))
        server = EmulatorServer(emulator, host, port)
    except (OSError, ValueError) as error:
        print(f"ovh emulator: cannot start: {error}", file=sys.stderr)
        return 1
    if args.daemon and _detach(server, pid_file=args.pid_file, log=args.log):
        return 0
    return _serve(emulator, server)


def _detach(server: EmulatorServer, *, pid_file: Path, log: Path) -> bool:
    """Fork; True in the parent (after writing the child's pid), False in the child."""
    child = os.fork()
    if child:
        server.socket.close()
        pid_file.write_text(f"{child}\n", encoding="ascii")
        return True
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    return False


def _serve(emulator: Emulator, server: EmulatorServer) -> int:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    emulator.run_ticker()
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
