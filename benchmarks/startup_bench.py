"""How long the CLI takes to start: ``bgkit --help`` and ``bgkit lock status`` against
importing click and rich alone (the floor any click + rich CLI pays).

    .venv/bin/python benchmarks/startup_bench.py --repeat 9

Each measure is a fresh interpreter; the table gives the median (min-max) wall and CPU
time, and the ten slowest imports of each command from ``python -X importtime``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOOR = "import click, rich.console, rich.table"


def timed(code: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one fresh ``python -c code``."""
    import time

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cli(args: list[str]) -> str:
    return f"from bgkit.cli import main; main({args!r})"


def slowest_imports(code: str, count: int = 10) -> list[tuple[str, int]]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=REPO,
                          capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if name.startswith(" ") and not name.startswith("  "):  # top-level imports only
            rows.append((name.strip(), int(cumulative)))
    return sorted(rows, key=lambda row: -row[1])[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=9)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "bgkit.toml"
        text = (REPO / "examples/hello-c/bgkit.toml").read_text()
        config.write_text(text.replace('source_dir = "."',
                                       f'source_dir = "{REPO / "examples/hello-c"}"'))
        commands = {"import click + rich (the floor)": FLOOR,
                    "bgkit --help": cli(["--help"]),
                    "bgkit lock status": cli(["lock", "status", "-c", str(config)])}
        print("| command | wall (s) | CPU (s) | CPU vs the floor |")
        print("|---|---|---|---|")
        floor = None
        for name, code in commands.items():
            runs = [timed(code) for _ in range(options.repeat)]
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            floor = floor or cpu
            print(f"| {name} | {wall:.3f} ({min(w for w, _ in runs):.3f}-"
                  f"{max(w for w, _ in runs):.3f}) | {cpu:.3f} | {cpu / floor:.1f}x |")
        for name, code in list(commands.items())[1:]:
            print(f"\nslowest top-level imports of `{name}` (cumulative µs):")
            for module, micros in slowest_imports(code):
                print(f"    {micros:>8}  {module}")


if __name__ == "__main__":
    main()
