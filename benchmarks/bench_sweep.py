"""Sweep engines, measured in one process run.

7. Wall time of `sweeps/smoke.yaml` (12 smoke-preset jobs: 6 trainings, 6 method runs) on the local
   engine with 2 workers x 1 thread against 1 worker x 2 threads, each from an empty cache; the
   ratio (target: at most 0.7) and how busy the worker slots were (job process seconds / (workers x
   wall)). Pairs alternate which side goes first.
8. Engine overhead per job: the time from handing a job to the engine until its outcome is back,
   minus the job process's own wall time, over jobs submitted one at a time (`memsink-bench ls
   kinds`, so the job itself is only the interpreter start, also reported); the local process pool
   and a local Ray cluster (2 CPUs; the first task, which starts a Ray worker, is left out).

Run:
    python benchmarks/bench_sweep.py [--pairs 1] [--jobs 10] [--ray-sweep]
`--ray-sweep` also runs the smoke sweep on Ray (1 CPU per job) for its wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memsink_bench.sweep.engines import LocalEngine, RayEngine

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "sweeps" / "smoke.yaml"


def sweep_wall(engine_flags: list[str]) -> tuple[float, float, int]:
    """(wall seconds, job process seconds, jobs) of the smoke sweep from an empty cache."""
    with tempfile.TemporaryDirectory() as root:
        command = [sys.executable, "-m", "memsink_bench.cli", "sweep", "run", str(SMOKE), "--workdir", f"{root}/work",
                   "--results", f"{root}/results", "--quiet", *engine_flags]
        began = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - began
        state = json.loads(Path(f"{root}/work/sweeps/smoke/last-run.json").read_text())
    return wall, sum(state["seconds"].values()), len(state["succeeded"])


def overhead(engine, jobs: int, root: Path) -> tuple[float, float]:
    """(median engine overhead per job, median job process seconds), jobs one at a time."""
    lags, own = [], []
    for index in range(jobs + 1):
        task = {"name": f"noop-{index}", "argv": ["ls", "kinds"], "output": None, "threads": 1,
                "log": str(root / f"noop-{index}.log"), "run_id": "bench", "track": None}
        began = time.perf_counter()
        [handle] = engine.submit([task])
        finished = []
        while not finished:
            finished = engine.wait([handle], timeout=None)
        lag = time.perf_counter() - began
        outcome = finished[0][1]
        assert outcome["ok"], outcome
        if index:                                        # the first one warms the engine up
            lags.append(lag - outcome["seconds"])
            own.append(outcome["seconds"])
    return statistics.median(lags), statistics.median(own)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1, help="(2x1, 1x2) sweep pairs; the ratio is their median")
    parser.add_argument("--jobs", type=int, default=10, help="no-op jobs per engine for the overhead")
    parser.add_argument("--ray-sweep", action="store_true", help="also run the smoke sweep on Ray")
    args = parser.parse_args()

    parallel_flags = ["--engine", "local", "--workers", "2", "--threads", "1"]
    serial_flags = ["--engine", "local", "--workers", "1", "--threads", "2"]
    ratios = []
    for pair in range(args.pairs):
        order = [("parallel", parallel_flags), ("serial", serial_flags)]
        measured = {}
        for name, flags in (order if pair % 2 == 0 else order[::-1]):
            measured[name] = sweep_wall(flags)
        (wall_p, busy_p, n), (wall_s, busy_s, _) = measured["parallel"], measured["serial"]
        ratios.append(wall_p / wall_s)
        print(f"pair {pair + 1}: {n} jobs; 2 workers x 1 thread {wall_p:.1f} s (slots busy {busy_p / (2 * wall_p):.0%}), "
              f"1 worker x 2 threads {wall_s:.1f} s (busy {busy_s / wall_s:.0%}); ratio {wall_p / wall_s:.3f}; "
              f"load average now {os.getloadavg()[0]:.1f} (other work on the cores pushes the ratio towards 1)")
    print(f"7. smoke sweep wall time, 2x1 / 1x2: {statistics.median(ratios):.3f} (target <= 0.7)")

    with tempfile.TemporaryDirectory() as root:
        engine = LocalEngine(1, 1)
        lag, own = overhead(engine, args.jobs, Path(root))
        engine.close()
        print(f"8. local engine overhead per job: {lag * 1000:.1f} ms (the job process itself: {own:.2f} s)")
        try:
            import ray
        except ImportError:
            print("8. ray: not installed (pip install 'memsink-bench[ray]')")
            return
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            engine = RayEngine(None, 1, 0, threads=1, retries=0)
            lag, own = overhead(engine, args.jobs, Path(root))
            print(f"8. ray engine overhead per job: {lag * 1000:.1f} ms (the job process itself: {own:.2f} s)")
        finally:
            ray.shutdown()
    if args.ray_sweep:
        wall, busy, n = sweep_wall(["--engine", "ray", "--threads", "1"])
        print(f"smoke sweep on ray (local cluster, 1 CPU per job): {wall:.1f} s for {n} jobs "
              f"(ratio to the last local 2x1 run: {wall / measured['parallel'][0]:.3f})")


if __name__ == "__main__":
    main()
