"""CLI start-up: wall time of a whole `orca status` process vs `python -c "import zmq, msgspec"`.

`orca status` runs against a real orcad (with a few finished runs) through the `orca` console
script next to the interpreter when there is one, else `python -m orca_client.cli`. The baseline
is the least any Python client of the socket can pay: the interpreter plus its two wire
dependencies. Runs alternate so that drift on the machine hits both alike; medians are compared.

The goal is judged with a warm bytecode cache for every module (a private PYTHONPYCACHEPREFIX in
a temp dir), as any normal install has. The same pair is also timed with the environment as given
(for information): with PYTHONDONTWRITEBYTECODE=1 and an editable install, `orca_client` is
compiled from source on every start while zmq and msgspec load their installed bytecode.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_roundtrip import OrcaDaemon

GOAL_RATIO = 1.3
RUNS = 5


@dataclass(frozen=True)
class StartupResult:
    """Wall times in milliseconds of each process run."""

    command: list[str]
    ours: list[float]
    baseline: list[float]
    ours_as_given: list[float]
    baseline_as_given: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.baseline)

    @property
    def ratio_as_given(self) -> float:
        return statistics.median(self.ours_as_given) / statistics.median(self.baseline_as_given)


def orca_command() -> list[str]:
    """The `orca status` command line: the console script if installed beside the interpreter."""
    script = Path(sys.executable).parent / "orca"
    if script.exists():
        return [str(script), "status"]
    return [sys.executable, "-m", "orca_client.cli", "status"]


def _wall_ms(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {completed.returncode}: "
            f"{completed.stderr.decode(errors='replace')}"
        )
    return elapsed


def _alternate(
    command: list[str], baseline: list[str], env: dict[str, str], count: int
) -> tuple[list[float], list[float]]:
    """Wall times of `count` runs of each command, alternating, after two warm-ups of each."""
    for _ in range(2):
        _wall_ms(command, env)
        _wall_ms(baseline, env)
    ours: list[float] = []
    base: list[float] = []
    for _ in range(count):
        ours.append(_wall_ms(command, env))
        base.append(_wall_ms(baseline, env))
    return ours, base


def run(quick: bool = False) -> StartupResult:
    """Time `orca status` against the import baseline, with a warm bytecode cache and as given."""
    count = 10 if quick else 30
    baseline = [sys.executable, "-c", "import zmq, msgspec"]
    command = orca_command()
    cache = tempfile.mkdtemp(prefix="orca-bench-pycache-")
    try:
        with OrcaDaemon() as daemon:
            daemon.create_runs(RUNS)
            cached_env = {**daemon.env, "PYTHONPYCACHEPREFIX": cache}
            cached_env.pop("PYTHONDONTWRITEBYTECODE", None)
            ours, base = _alternate(command, baseline, cached_env, count)
            ours_as_given, base_as_given = _alternate(command, baseline, daemon.env, count)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return StartupResult(command, ours, base, ours_as_given, base_as_given)


def report(result: StartupResult) -> str:
    """The medians and their ratios as printable lines."""

    def line(name: str, samples: list[float]) -> str:
        return (
            f"  {name:34} median {statistics.median(samples):6.1f} ms   min {min(samples):6.1f} ms"
        )

    ok = result.ratio <= GOAL_RATIO
    ours = " ".join([Path(result.command[0]).name, *result.command[1:]])
    return "\n".join(
        [
            f"CLI start-up (whole process, median of {len(result.ours)} alternating runs)",
            "  with a warm bytecode cache:",
            line(f"ours ({ours})", result.ours),
            line("python -c 'import zmq, msgspec'", result.baseline),
            f"  ours / baseline                    {result.ratio:6.2f}"
            f"   (goal <= {GOAL_RATIO}: {'met' if ok else 'NOT MET'})",
            "  environment as given (for information):",
            line(f"ours ({ours})", result.ours_as_given),
            line("python -c 'import zmq, msgspec'", result.baseline_as_given),
            f"  ours / baseline                    {result.ratio_as_given:6.2f}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
