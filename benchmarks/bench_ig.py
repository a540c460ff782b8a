"""Benchmark: batched integrated gradients vs the literal reference loop and captum, same process.

A 2-layer d128 GPT-2 (vocab 2048), 4 sequences of ~100 tokens (right-padded to the longest) with
32 target positions each, steps=16. The model is first fit for a few Adam steps on the sequences so
the true-token probabilities (and so the IG values) are far from the uniform 1/vocab of random
weights; otherwise every value is ~1e-7 and the 1e-5 check would be vacuous.

Prints the median (over 3 repetitions, after one warm-up) of each version, the speed ratio and the
max abs difference (also relative to the largest |IG|). Target: equal within 1e-5, >= 10x faster.
Beside them, captum's integrator on the same per-position integral (`ig_captum.py`): its
`linspace` rule (ig's rule exactly, from riemann_left + InputXGradient) should agree to captum's
float32 rounding of its alphas and weights; its Gauss-Legendre rule at the same step count is
reported too (a different rule, so it differs by ig's discretization error).

    python benchmarks/bench_ig.py [--steps 16] [--reps 3] [--device cpu] [--threads N] [--captum-batch 512]

The literal loop lives with the tests (`tests/helpers/reference_ig.py`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from memsink_bench.config import ModelConfig
from memsink_bench.evaluate import Batch, collate
from memsink_bench.methods.ig import integrated_gradients
from memsink_bench.methods.ig_captum import captum_integrated_gradients
from memsink_bench.models import build_model
from timing import timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.reference_ig import integrated_gradients_reference  # noqa: E402  (the tests' golden loop)

VOCAB, TARGETS_PER_SEQUENCE = 2048, 32


def make_batch(seed: int) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    lengths = [100, 97, 100, 93]
    tokens = [[0] + torch.randint(1, VOCAB, (n - 1,), generator=generator).tolist() for n in lengths]
    # target_mask covers positions start-1 .. end-2: the last 32 predicted tokens of each sequence
    spans = [(n - TARGETS_PER_SEQUENCE, n) for n in lengths]
    return collate(tokens, list(range(1, len(lengths) + 1)), spans, pad_id=0)


def fit(model, batch: Batch, steps: int = 40) -> float:
    """A few Adam steps on the sequences: realistic (non-uniform) probabilities for the benchmark."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        logits = model(input_ids=batch.input_ids, attention_mask=torch.ones_like(batch.input_ids)).logits
        loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=-100)
        loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--positions-per-batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--captum-batch", type=int, default=512,
                        help="copies per captum forward (memory only; each copy is a whole sequence)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build_model(ModelConfig(n_layer=2, n_embd=128, n_head=4, d_mlp=512), VOCAB, 128, seed=0)
    batch = make_batch(seed=0)
    loss = fit(model, batch)
    model.to(args.device)
    for parameter in model.parameters():
        parameter.requires_grad_(False)   # as the harness hands models to localizers (frozen)
    n_targets = int(batch.target_mask.sum())
    print(f"model: 2 layers, d128, d_mlp 512, vocab {VOCAB}; {batch.input_ids.shape[0]} sequences "
          f"(width {batch.input_ids.shape[1]}), {n_targets} target positions, steps {args.steps}, "
          f"device {args.device}, threads {torch.get_num_threads()}, fit loss {loss:.3f}")

    t_fast, fast = timed(lambda: integrated_gradients(model, batch, args.steps, args.positions_per_batch),
                         args.reps)
    print(f"{'batched':<21}: {t_fast:8.3f} s (median of {args.reps})")
    t_ref, ref = timed(lambda: integrated_gradients_reference(model, batch, args.steps), args.reps)
    print(f"{'reference':<21}: {t_ref:8.3f} s (median of {args.reps})")

    captum = {}
    for method in ("linspace", "gausslegendre"):
        captum[method] = timed(lambda: captum_integrated_gradients(model, batch, args.steps, method,
                                                                   args.captum_batch), args.reps)
        print(f"{'captum ' + method:<21}: {captum[method][0]:8.3f} s (median of {args.reps})")

    diff = (fast - ref).abs().max().item()
    scale = ref.abs().max().item()
    print(f"max |IG| {scale:.3e}; max abs diff {diff:.3e} (relative {diff / scale:.3e})")
    for method, (_, result) in captum.items():
        captum_diff = (result - fast).abs().max().item()
        print(f"captum {method}, max abs diff to batched: {captum_diff:.3e} (relative {captum_diff / scale:.3e})")
    print(f"speed ratio: {t_ref / t_fast:.1f}x (captum linspace: {captum['linspace'][0] / t_fast:.1f}x)")
    captum_diff = (captum["linspace"][1] - fast).abs().max().item()
    ok = diff <= 1e-5 and t_ref / t_fast >= 10 and captum_diff <= 1e-5
    print("PASS" if ok else "FAIL", "(target: diff <= 1e-5 to the loop and to captum linspace, ratio >= 10x)")


if __name__ == "__main__":
    main()
