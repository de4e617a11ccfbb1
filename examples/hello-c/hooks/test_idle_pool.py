#!/usr/bin/env python3
"""A pre_switch hook: the runbook's "test Green thoroughly", aimed at the idle pool.

bgkit runs it before it moves traffic, with BGKIT_HOST_URLS (each idle host's service URL)
and BGKIT_VERSION (the release's version) in its environment. It asks every idle host
for its pages and checks each answers 200 with that version; any other answer fails the
hook (exit 1) and bgkit refuses the switch, changing nothing. Replace it with your own
integration suite: it is a command like any other.
"""

import os
import sys
import urllib.request

PATHS = ("/", "/health", "/version")


def main() -> int:
    version = os.environ["BGKIT_VERSION"]
    failures = 0
    for base in os.environ["BGKIT_HOST_URLS"].split():
        for path in PATHS:
            try:
                with urllib.request.urlopen(base + path, timeout=5) as answer:
                    said = answer.headers.get("X-App-Version")
                    ok = answer.status == 200 and said == version
            except OSError as error:
                said, ok = f"no answer ({error})", False
            print(f"{'ok  ' if ok else 'FAIL'} {base}{path}: version {said}")
            failures += not ok
    print(f"{failures} failure(s); expected version {version} everywhere")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
