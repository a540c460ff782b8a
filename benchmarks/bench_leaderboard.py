"""6. The whole cpu leaderboard from nothing: every built-in method on both settings, starting from
an empty checkpoint cache and an empty results directory, then the leaderboard tables.

Target: under 60 minutes on 2 cores. Prints the wall time of each stage and of the whole, and the
peak resident memory of the largest child process. It takes tens of minutes; run it alone:
    python benchmarks/bench_leaderboard.py [--workdir DIR] [--results DIR] [--log FILE]
--workdir and --results default to fresh temporary directories; both must be empty or absent
(this measures the cold path; pointing them at a filled cache would time nothing).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = ("ts-repetition", "ts-canary")


def empty_or_absent(path: Path) -> Path:
    if path.exists() and any(path.iterdir()):
        sys.exit(f"bench_leaderboard: {path} is not empty; give an empty or new directory (this times the cold path)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="checkpoint cache (default: a fresh temporary directory)")
    parser.add_argument("--results", type=Path, help="results directory (default: a fresh temporary directory)")
    parser.add_argument("--log", type=Path, help="file for the runs' progress output (default: discarded)")
    args = parser.parse_args()
    workdir = empty_or_absent(args.workdir or Path(tempfile.mkdtemp(prefix="bench-lb-cache-")))
    results = empty_or_absent(args.results or Path(tempfile.mkdtemp(prefix="bench-lb-results-")))
    log = open(args.log, "a") if args.log else subprocess.DEVNULL

    stages = [(f"run --method all --setting {s}",
               ["run", "--method", "all", "--setting", s, "--workdir", str(workdir), "--results", str(results)])
              for s in SETTINGS]
    stages.append(("leaderboard", ["leaderboard", "--results", str(results)]))
    seconds = {}
    began = time.perf_counter()
    for name, command in stages:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "memsink_bench.cli", *command], check=True, stdout=log, stderr=log)
        seconds[name] = time.perf_counter() - start
        print(f"{name:44s} {seconds[name] / 60:7.1f} min", flush=True)
    total = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    records = sorted((results / "records").rglob("*.json"))
    print(f"{'whole cpu leaderboard from nothing':44s} {total / 60:7.1f} min  target < 60")
    print(f"{'peak resident memory of any child (MB)':44s} {peak_mb:7.0f}")
    print(f"{'records written':44s} {len(records):7d}")
    print(f"cache {workdir}, results {results}")


if __name__ == "__main__":
    main()
