"""How long the ``stateful`` command line takes to answer, from process start to exit.

Each command is run ``--runs`` times as a fresh process (round robin, so a burst of load on a
shared machine spreads over all of them); the table gives each one's median and best wall-clock
time, and the median as a ratio to ``python -c pass`` (the interpreter's own start-up, measured
the same way). On a loaded machine the absolute times move with the load; the ratios move less,
and are the figure to compare. Two references frame them: ``import sqlalchemy, pydantic`` (what
a command that reads a SQL store and validates watermarks cannot avoid) and ``import Airflow's
configuration`` (what every command paid before it was read without Airflow).

The commands run against a SQLite file in a temporary directory, seeded with ``--watermarks``
watermarks, with ``AIRFLOW_HOME`` there too (no airflow.cfg). Bytecode is cached as after
``pip install`` (which compiles it): into a temporary ``PYTHONPYCACHEPREFIX``, filled by one
warm-up run of each command, even where ``PYTHONDONTWRITEBYTECODE`` is set; ``--no-bytecode``
measures without a cache (every module compiled at each start, much slower).

Then ``python -X importtime`` of ``stateful list`` lists the imports that cost the most (the
top-level ones, with what they import). The machine's load average is printed before and after.

Run ``make bench-cli``, or ``python bench/cli_startup.py --help``. Figures are for
``docs/performance.md``; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from stateful.backends import SqlBackend
from stateful.types import Watermark

#: The targets of the issue this measures, in seconds on the machine it was filed on.
TARGETS = {"stateful --version": 0.3, "stateful list": 0.8}


@dataclass
class Case:
    label: str
    argv: list[str]
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def _cases(python: str, url: str) -> list[Case]:
    stateful = [python, "-m", "stateful"]
    return [
        Case("python -c pass", [python, "-c", "pass"]),
        Case("import sqlalchemy, pydantic", [python, "-c", "import sqlalchemy, pydantic"]),
        Case(
            "import Airflow's configuration",
            [python, "-c", "from stateful._airflowconf import airflow_conf; airflow_conf()"],
        ),
        Case("stateful --version", [*stateful, "--version"]),
        Case("stateful --help", [*stateful, "--help"]),
        Case("stateful list --help", [*stateful, "list", "--help"]),
        Case("stateful list", [*stateful, "list", "--database-url", url]),
        Case("stateful show", [*stateful, "show", "bench", "w0", "--database-url", url]),
        Case("stateful list (default store)", [*stateful, "list"]),
    ]


def _seed(url: str, count: int) -> None:
    store = SqlBackend(url)
    for n in range(count):
        value = Watermark[int](cursor=n).to_state_json()
        store.write("bench", f"w{n}", "watermark", value, expected_version=None)
    store.dispose()


def _environment(home: Path, url: str, bytecode: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STATEFUL_", "AIRFLOW"))}
    env["AIRFLOW_HOME"] = str(home)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    # "stateful list (default store)" reads the default store: the same file.
    env["STATEFUL_DATABASE_URL"] = url
    return env


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} CPUs"


def _importtime(argv: list[str], env: dict[str, str], top: int) -> list[tuple[float, str]]:
    """The top-level imports of ``argv`` by cumulative time (seconds), the costliest first."""
    done = subprocess.run(
        [argv[0], "-X", "importtime", *argv[1:]], env=env, capture_output=True, text=True, check=True
    )
    found = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if match:  # no indentation after the bar: imported by the command itself
            found.append((int(match[1]) / 1e6, match[2]))
    return sorted(found, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument("--watermarks", type=int, default=20, help="watermarks in the store (default 20)")
    parser.add_argument("--top", type=int, default=12, help="imports listed (default 12)")
    parser.add_argument(
        "--no-bytecode", action="store_true", help="no bytecode cache (PYTHONDONTWRITEBYTECODE)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="stateful-cli-bench-") as tmp:
        home = Path(tmp)
        url = f"sqlite:///{home / 'bench.db'}"
        _seed(url, args.watermarks)
        env = _environment(home, url, bytecode=not args.no_bytecode)
        cases = _cases(sys.executable, url)
        print(f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}")
        print(f"bytecode cache: {'no' if args.no_bytecode else 'yes'}; {args.runs} runs each, round robin")
        print(f"load average before: {_load()}")
        for case in cases:  # warm-up: fills the bytecode cache, and the OS's file cache
            _time(case.argv, env)
        for _ in range(args.runs):
            for case in cases:
                case.times.append(_time(case.argv, env))
        print(f"load average after:  {_load()}")
        base = cases[0].median
        print()
        print(f"{'command':<34} {'median s':>9} {'best s':>8} {'x pass':>8}  target")
        for case in cases:
            target = TARGETS.get(case.label)
            verdict = (
                "" if target is None else f"<= {target} s: {'met' if case.median <= target else 'MISSED'}"
            )
            print(
                f"{case.label:<34} {case.median:>9.3f} {min(case.times):>8.3f} "
                f"{case.median / base:>8.1f}  {verdict}"
            )
        listing = next(case for case in cases if case.label == "stateful list")
        print()
        print(
            "python -X importtime -m stateful list --database-url ...: "
            "the top-level imports by cumulative time"
        )
        for seconds, module in _importtime(listing.argv, env, args.top):
            print(f"  {seconds:7.3f} s  {module}")


if __name__ == "__main__":
    main()
