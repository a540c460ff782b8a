"""Optimising methods: seconds per optimisation step against the plain loop, in one process run.

- hard-concrete: ours (target batches cut after their last target column, unembedding only at
  target columns) against the obvious loop (full sequences, full logits, same gates and Adam).
- sparse-ft: ours (`unlearning_steps` with frozen masks) against the obvious loop (full
  backward, gradients outside the mask zeroed by hand before Adam).
On the cpu-preset ts-canary standard checkpoint (trained first if missing, untimed). Run:
    python benchmarks/bench_methods.py [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time

import torch

from memsink_bench.checkpoints import get_checkpoint
from memsink_bench.cli import default_workdir
from memsink_bench.config import load_config
from memsink_bench.interventions import NeuronScaler, per_layer_scale
from memsink_bench.methods.base import MethodContext, frozen_copy, target_nll
from memsink_bench.methods.editing import contrastive_objective, editable_matrices, unlearning_steps
from memsink_bench.methods.hard_concrete import HardConcretePruning
from memsink_bench.methods.sparse_ft import SparseFineTuning
from memsink_bench.models import mlp_shape
from memsink_bench.setting import get_setting


def ours_hard_concrete(model, context, steps: int) -> float:
    method = HardConcretePruning(steps=steps, stop_keep_fraction=0.0)
    began = time.perf_counter()
    method.score(model, context)
    return (time.perf_counter() - began) / steps


def plain_hard_concrete(model, context, steps: int) -> float:
    method = HardConcretePruning(steps=steps, stop_keep_fraction=0.0)
    log_alpha = method._initial_log_alpha(mlp_shape(model), torch.device("cpu"))
    optimizer = torch.optim.Adam([log_alpha], lr=method.lr)
    batches, generator, scaler = list(context.target_batches()), context.generator(2024), NeuronScaler(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    began = time.perf_counter()
    for step in range(steps):
        scaler.scale = per_layer_scale(method.sample_gates(log_alpha, generator))
        loss = target_nll(model, batches[step % len(batches)])
        loss = loss + method.lambda_l0 * method.keep_probability(log_alpha).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = (time.perf_counter() - began) / steps
    scaler.remove()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return seconds


def ours_sparse_ft(model, context, masks, steps: int) -> float:
    working, original = copy.deepcopy(model), frozen_copy(model)
    began = time.perf_counter()
    unlearning_steps(working, original, context, steps, 1e-3, 0.1, masks)
    return (time.perf_counter() - began) / steps


def plain_sparse_ft(model, context, masks, steps: int) -> float:
    working, original = copy.deepcopy(model), frozen_copy(model)
    optimizer = torch.optim.Adam(working.parameters(), lr=1e-3)
    matrices = editable_matrices(working)
    targets, retains = itertools.cycle(list(context.target_batches())), itertools.cycle(list(context.retain_batches()))
    began = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        contrastive_objective(working, original, next(targets), next(retains), 0.1).backward()
        for name, parameter in working.named_parameters():
            if name in matrices:
                parameter.grad *= masks[name]
            else:
                parameter.grad = None
        optimizer.step()
    return (time.perf_counter() - began) / steps


def median_of(function, repeats: int) -> float:
    function()
    return statistics.median(function() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = load_config("ts-canary", "cpu")
    workdir = default_workdir()
    setting = get_setting(config.setting, config.data, workdir)
    model = get_checkpoint(workdir, setting, "standard", config, progress=False).model
    context = MethodContext(setting.repeated, setting.control, setting.tokenizer.pad_token_id, torch.device("cpu"))
    masks = SparseFineTuning().masks(model, context)

    rows = [("hard-concrete", median_of(lambda: plain_hard_concrete(model, context, args.steps), args.repeats),
             median_of(lambda: ours_hard_concrete(model, context, args.steps), args.repeats)),
            ("sparse-ft", median_of(lambda: plain_sparse_ft(model, context, masks, args.steps), args.repeats),
             median_of(lambda: ours_sparse_ft(model, context, masks, args.steps), args.repeats))]
    print(f"cpu preset, ts-canary standard checkpoint, median of {args.repeats} x {args.steps} steps")
    print(f"{'method':16s} {'plain s/step':>13s} {'ours s/step':>12s} {'speed-up':>9s}")
    for name, plain, ours in rows:
        print(f"{name:16s} {plain:13.4f} {ours:12.4f} {plain / ours:8.2f}x")


if __name__ == "__main__":
    main()
