"""End-to-end and per-point benchmarks, measured in one process run.

4. Evaluation of one tradeoff-curve point: `metrics.evaluate_state` (losses and exact match from
   one teacher-forced pass per set) against the obvious form (the same losses plus exact match by
   greedy-decoding every target span), on the same checkpoint; both give the same numbers.
6. `memsink-bench run --method ig --setting ts-canary` at the cpu preset with its checkpoints
   cached (target: under 2 minutes on 2 cores), wall time and peak resident memory of the child.

Needs the cpu-preset checkpoints in the cache (MEMSINK_BENCH_CACHE or ~/.cache/memsink-bench);
they are trained first if missing, which is not timed. Run:
    python benchmarks/bench_end_to_end.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from memsink_bench.checkpoints import get_checkpoint
from memsink_bench.cli import default_workdir
from memsink_bench.config import load_config
from memsink_bench.evaluate import greedy_exact_match, sequence_losses
from memsink_bench.metrics import evaluate_state
from memsink_bench.setting import get_setting
from timing import timed


def naive_point(model, setting) -> dict:
    """Losses per set plus exact match by literal greedy decoding (the pre-optimisation form)."""
    pad = setting.tokenizer.pad_token_id
    out = {}
    for role in ("repeated", "validation", "control"):
        out[f"{role}_loss"] = sequence_losses(model, getattr(setting, role), pad).summary()["loss"]
    out["em_repeated"] = greedy_exact_match(model, setting.repeated).summary()["exact_match"]
    out["em_control"] = greedy_exact_match(model, setting.control).summary()["exact_match"]
    return out


def end_to_end(workdir, repeats: int) -> tuple[float, float]:
    """Median wall seconds and peak RSS (MB) of `memsink-bench run --method ig` with cached checkpoints."""
    times = []
    with tempfile.TemporaryDirectory() as results:
        for _ in range(repeats):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "memsink_bench.cli", "run", "--method", "ig", "--setting",
                            "ts-canary", "--results", results, "--force", "--quiet", "--workdir", str(workdir)],
                           check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - began)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return statistics.median(times), peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    workdir = default_workdir()
    config = load_config("ts-canary", "cpu")
    setting = get_setting(config.setting, config.data, workdir)
    for kind in ("standard", "standard-no-rep"):
        get_checkpoint(workdir, setting, kind, config, progress=False)
    model = get_checkpoint(workdir, setting, "standard", config, progress=False).model

    ours, fast = timed(lambda: evaluate_state(model, setting), args.repeats)
    naive, slow = timed(lambda: naive_point(model, setting), args.repeats)
    assert fast["em_repeated"] == slow["em_repeated"] and fast["em_control"] == slow["em_control"]
    run_seconds, peak_mb = end_to_end(workdir, args.repeats)

    print(f"cpu preset, ts-canary, threads {os.environ.get('OMP_NUM_THREADS', 'default')}, median of {args.repeats}")
    print(f"{'measure':52s} {'value':>9s}  target")
    print(f"{'seconds per tradeoff point, obvious (greedy EM)':52s} {naive:9.2f}")
    print(f"{'seconds per tradeoff point, ours (one pass)':52s} {ours:9.2f}")
    print(f"{'speed-up per point':52s} {naive / ours:9.1f}x")
    print(f"{'run --method ig --setting ts-canary, cached (s)':52s} {run_seconds:9.1f}  < 120")
    print(f"{'peak resident memory of that run (MB)':52s} {peak_mb:9.0f}")


if __name__ == "__main__":
    main()
