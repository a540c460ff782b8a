#!/usr/bin/env bash
# Every benchmark, each printing ratios measured in one process run (about 25 minutes, most of
# it the last one; run on an otherwise idle machine):
#   bash benchmarks/run_all.sh
# The end-to-end one needs (or first trains, untimed) the cpu-preset ts-canary checkpoints; the
# leaderboard one starts from fresh temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "## training loop (throughput, masking overhead, MFU)"; python benchmarks/bench_training.py
echo; echo "## integrated gradients (batched exact vs literal loop and captum)"; python benchmarks/bench_ig.py --threads 1
echo; echo "## hard-concrete and sparse-ft steps vs the plain loops"; python benchmarks/bench_methods.py
echo; echo "## tradeoff points and end to end"; python benchmarks/bench_end_to_end.py
echo; echo "## the whole cpu leaderboard from nothing"; python benchmarks/bench_leaderboard.py
echo; echo "## sweeps: parallel workers vs threads, engine overhead"; python benchmarks/bench_sweep.py
echo; echo "## membership inference and extraction per state"; python benchmarks/bench_metrics.py
