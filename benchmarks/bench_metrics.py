"""Cost of the privacy and robustness metrics per evaluated model state, in one process run.

On the cpu-preset ts-canary sequence sets (32 repeated, 200 validation, 64 control sequences of
up to 256 tokens, vocabulary 2048) and a freshly built, untrained cpu-size model (timing does not
need a trained one):

- today's `metrics.measure_state` (losses, exact match, membership inference, extraction and the
  forget set's neighbours), and the same with only the losses and exact match ("plain": one pass
  over each of the three sets, what a state cost before the added metrics);
- the same plus the membership scores of the repeated (forget) and validation (held-out)
  sequences and the extraction probabilities of the repeated ones, each library call with a
  forward pass of its own ("separate");
- one pass over each set that gives all of it from the same logits ("fused": the losses and exact
  match as `evaluate.sequence_losses` computes them, `extraction.attack_scores_from_logits` on the
  same logits), which is what wiring the metrics into the evaluation pass costs; its values are
  checked against the separate calls;
- quantizing the model to 8 and 4 bits, and relearning on half of the repeated sequences for
  1, 5 and 20 steps (each including its copy, optimizer and one measurement of the other half).

Target: the fused state at most 1.5x `measure_state`. zlib lengths do not depend on the model and
are computed once per set, outside the timings (their one-off cost is printed). Run:
    python benchmarks/bench_metrics.py [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from memsink_bench.config import load_config
from memsink_bench.evaluate import leading_matches
from memsink_bench.extraction import attack_scores_from_logits, extraction_probabilities
from memsink_bench.metrics import measure_state
from memsink_bench.models import build_model
from memsink_bench.privacy import MembershipScores, membership_scores, teacher_forced_logits, zlib_entropy
from memsink_bench.robustness import quantize_weights, relearn, relearning_split
from memsink_bench.setting import get_setting
from timing import timed

TOP_K, TEMPERATURE, RELEARN_LR = 40, 1.0, 1e-3


def separate(model, setting, lengths) -> dict:
    """measure_state, then each attack as its own library call (its own forward passes)."""
    pad = setting.tokenizer.pad_token_id
    state = measure_state(model, setting)
    return {"state": state,
            "forget": membership_scores(model, setting.repeated, pad, None, zlib_lengths=lengths["repeated"]),
            "held_out": membership_scores(model, setting.validation, pad, None, zlib_lengths=lengths["validation"]),
            "p_z": extraction_probabilities(model, setting.repeated, pad, TOP_K, TEMPERATURE)}


def fused(model, setting, lengths) -> dict:
    """One pass per set: losses and exact match as sequence_losses computes them, and the
    attacks from the same logits on the sets that need them."""
    pad, out = setting.tokenizer.pad_token_id, {}
    for role in ("repeated", "validation", "control"):
        whole, target, matched, scores, log_p_z, start = [], [], [], [], [], 0
        for batch, logits in teacher_forced_logits(model, getattr(setting, role), pad):
            valid = batch.labels != -100
            nll = F.cross_entropy(logits.flatten(0, 1).float(), batch.labels.flatten().clamp_min(0),
                                  reduction="none").view_as(batch.labels) * valid
            correct = (logits.argmax(-1) == batch.labels) & valid
            n_target = batch.target_mask.sum(1)
            whole.append(nll.sum(1) / valid.sum(1).clamp_min(1))
            target.append((nll * batch.target_mask).sum(1) / n_target.clamp_min(1))
            matched.append(leading_matches(correct, batch.target_mask))
            if role != "control":
                stop = start + len(batch.ids)
                membership, log_p = attack_scores_from_logits(logits, batch, lengths[role][start:stop],
                                                              top_k=TOP_K, temperature=TEMPERATURE)
                scores.append(membership)
                log_p_z.append(log_p)
                start = stop
        out[role] = {"whole": torch.cat(whole), "target": torch.cat(target), "matched": torch.cat(matched)}
        if scores:
            out[role]["scores"], out[role]["p_z"] = MembershipScores.cat(scores), torch.cat(log_p_z).exp()
    return out


def max_differences(slow: dict, fast: dict) -> tuple[float, float]:
    """(attack values, losses): fused against separate. measure_state keeps per-sequence losses
    rounded to the record's 4 decimals, so the losses can only agree to 5e-5."""
    pairs = [(slow["p_z"], fast["repeated"]["p_z"])]
    for name, values in slow["forget"].by_attack().items():
        pairs.append((values, fast["repeated"]["scores"].by_attack()[name]))
    for name, values in slow["held_out"].by_attack().items():
        pairs.append((values, fast["validation"]["scores"].by_attack()[name]))
    losses = [(torch.tensor(slow["state"].per_sequence.repeated_loss), fast["repeated"]["whole"]),
              (torch.tensor(slow["state"].per_sequence.val_loss), fast["validation"]["whole"])]
    return tuple(max(float((a.double() - b.double()).abs().max()) for a, b in group) for group in (pairs, losses))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config("ts-canary", "cpu")
    with tempfile.TemporaryDirectory() as workdir:
        began = time.perf_counter()
        setting = get_setting(config.setting, config.data, Path(workdir))
        print(f"built the cpu ts-canary setting in {time.perf_counter() - began:.1f} s "
              f"({len(setting.repeated)} repeated, {len(setting.validation)} validation, "
              f"{len(setting.control)} control; vocabulary {setting.vocab_size}); "
              f"torch threads {torch.get_num_threads()}")
    model = build_model(config.model, setting.vocab_size, config.data.seq_len, config.train.seed).eval()
    decode = functools.partial(setting.tokenizer.decode, skip_special_tokens=True)
    began = time.perf_counter()
    lengths = {role: zlib_entropy(getattr(setting, role), decode) for role in ("repeated", "validation")}
    print(f"zlib lengths of the repeated and validation texts (once per setting): {time.perf_counter() - began:.3f} s")

    times = {"measure_state": [], "separate": [], "fused": [], "plain": []}
    functions = {"measure_state": lambda: measure_state(model, setting),
                 "plain": lambda: measure_state(model, setting, attacks=False, neighbours=False),
                 "separate": lambda: separate(model, setting, lengths),
                 "fused": lambda: fused(model, setting, lengths)}
    results = {name: function() for name, function in functions.items()}       # warm-up
    for _ in range(args.repeats):                                               # paired, interleaved
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["measure_state"])
    print(f"\nper evaluated state, median of {args.repeats} interleaved repetitions after a warm-up:")
    for name in times:
        ratios = [t / b for t, b in zip(times[name], times["measure_state"])]
        print(f"  {name:14s} {statistics.median(times[name]):7.3f} s   ratio to measure_state "
              f"{statistics.median(times[name]) / base:5.2f} (median paired ratio {statistics.median(ratios):5.2f})")
    attacks, losses = max_differences(results["separate"], results["fused"])
    print(f"  fused vs separate: attack values differ by at most {attacks:.1e}, losses by {losses:.1e} "
          "(measure_state rounds them to 4 decimals)")
    print("  target: fused <= 1.5x measure_state")
    plain = statistics.median(times["plain"])
    paired = statistics.median([t / p for t, p in zip(times["measure_state"], times["plain"])])
    print(f"  every per-state metric (measure_state: losses, exact match, membership inference, extraction, "
          f"neighbours) / the losses and exact match alone (plain): {base / plain:.2f}x "
          f"(median paired ratio {paired:.2f}); target <= 1.5x")

    print("\nquantization (a copy of the model, block matrices per channel):")
    for bits in (8, 4):
        seconds, _ = timed(lambda bits=bits: quantize_weights(model, bits), args.repeats)
        print(f"  {bits}-bit  {seconds:7.3f} s   ({seconds / base:.2f} x measure_state)")

    relearn_on, measure_on = relearning_split(setting.repeated)
    pad = setting.tokenizer.pad_token_id
    print(f"\nrelearning on {len(relearn_on)} repeated sequences, measured on the other {len(measure_on)} "
          "(copy + AdamW + steps + one measurement):")
    for steps in (1, 5, 20):
        seconds, _ = timed(lambda steps=steps: relearn(model, relearn_on, measure_on, pad, [steps], RELEARN_LR),
                           max(1, args.repeats // 2))
        print(f"  {steps:2d} steps  {seconds:7.3f} s   ({seconds / base:.2f} x measure_state)")
    seconds, _ = timed(lambda: relearn(model, relearn_on, measure_on, pad, [1, 5, 20], RELEARN_LR), 1)
    print(f"  grid [1, 5, 20] in one run (20 steps, 3 measurements)  {seconds:7.3f} s")


if __name__ == "__main__":
    main()
