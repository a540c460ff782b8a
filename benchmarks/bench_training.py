"""Training-loop benchmarks, measured as ratios in one process run.

1. Throughput of memsink_bench's training loop against a plain PyTorch loop over the same HF
   model, batches and optimizer (target: ratio >= 1.0 at the cpu preset).
2. Step-time overhead of MemSinks masking and of gradient masking against standard training
   (target: <= 1.05 each).
5. Model FLOP utilisation: training FLOP/s over the peak fp32 matmul FLOP/s measured here.

Each time is the median of several repetitions after a warm-up; each ratio is the median of the
per-repetition ratios (loops measured back to back). Run:
    python benchmarks/bench_training.py [--preset cpu] [--steps 30] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from memsink_bench.config import load_config
from memsink_bench.models import build_model
from memsink_bench.setting import get_setting
from memsink_bench.train import BatchPlan, make_batch, train


def our_loop_seconds(setting, kind: str, config, steps: int, workdir: Path) -> float:
    """Seconds per step of memsink_bench.train.train over `steps` steps (no evaluation)."""
    result = train(setting, kind, config, workdir / f"run-{kind}-{time.monotonic_ns()}", stop_after=steps,
                   progress=False)
    return result.seconds / steps


def plain_loop_seconds(setting, config, steps: int) -> float:
    """The obvious dozen-line loop: the same model, batches and AdamW hyperparameters and groups,
    clipping; PyTorch's default AdamW and the model's own loss over every position."""
    model = build_model(config.model, setting.vocab_size, config.data.seq_len, config.train.seed)
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": config.train.weight_decay},
         {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}],
        lr=config.train.lr, betas=(config.train.beta1, config.train.beta2))
    plan = BatchPlan(setting, "standard", config)
    batches = [make_batch(setting, plan.examples(step), setting.tokenizer.pad_token_id)[0] for step in range(steps)]
    model.train()
    began = time.perf_counter()
    for batch in batches:
        loss = model(input_ids=batch.input_ids, labels=batch.input_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - began) / steps


def tokens_per_step(setting, config, steps: int) -> tuple[float, float]:
    """(padded tokens, labelled tokens) per step, averaged over the first `steps` steps."""
    plan = BatchPlan(setting, "standard", config)
    batches = [make_batch(setting, plan.examples(s), 0)[0] for s in range(steps)]
    return (sum(b.input_ids.numel() for b in batches) / steps,
            sum(int((b.labels != -100).sum()) for b in batches) / steps)


def peak_matmul_flops(size: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - began)
    return 2 * size ** 3 / statistics.median(times)


def training_flops_per_token(config, vocab: int, seq: float, unembedding: bool = True) -> float:
    """6 N (matmul parameters, including the tied unembedding) + attention scores: 12 L d T."""
    m = config.model
    per_layer = 4 * m.n_embd * m.n_embd + 2 * m.n_embd * m.d_mlp
    n_matmul = m.n_layer * per_layer + (vocab * m.n_embd if unembedding else 0)
    return 6 * n_matmul + 12 * m.n_layer * m.n_embd * seq


def median(values):
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    config = load_config("ts-repetition", args.preset, ["train.eval_every=100000"])
    workdir = Path(tempfile.mkdtemp(prefix="bench-train-"))
    setting = get_setting(config.setting, config.data, workdir)
    kinds = ("standard", "memsinks", "gradient-masked")
    times = {name: [] for name in ("plain", *kinds)}
    plain_loop_seconds(setting, config, 3)                      # warm-up
    our_loop_seconds(setting, "standard", config, 3, workdir)
    for _ in range(args.repeats):                               # interleaved: noise hits all alike
        times["plain"].append(plain_loop_seconds(setting, config, args.steps))
        for kind in kinds:
            times[kind].append(our_loop_seconds(setting, kind, config, args.steps, workdir))
    step = {name: median(values) for name, values in times.items()}
    # paired: each repetition's ratio compares loops measured back to back, so slow drifts of a
    # shared machine cancel; the figure is the median of those ratios
    ratio = {name: median([a / b for a, b in zip(times[name], times["standard"])]) for name in times}
    padded, labelled = tokens_per_step(setting, config, args.steps)
    # model FLOPs count the tokens trained on (labelled ones); padding is work, not progress
    width = padded / config.train.batch_size
    flops = training_flops_per_token(config, setting.vocab_size, width) * labelled
    # what our loop executes: the blocks run on padding too, the unembedding does not
    executed = (training_flops_per_token(config, setting.vocab_size, width, unembedding=False) * padded
                + 6 * setting.vocab_size * config.model.n_embd * labelled)
    peak = peak_matmul_flops()

    print(f"preset {args.preset}: {padded:.0f} tokens/step padded, {labelled:.0f} labelled, "
          f"threads {torch.get_num_threads()}, median of {args.repeats} x {args.steps} steps")
    print(f"{'measure':44s} {'value':>10s}  target")
    print(f"{'plain loop ms/step':44s} {step['plain'] * 1e3:10.1f}")
    print(f"{'our loop ms/step (standard)':44s} {step['standard'] * 1e3:10.1f}")
    print(f"{'plain loop labelled tokens/s':44s} {labelled / step['plain']:10.0f}")
    print(f"{'our loop labelled tokens/s (standard)':44s} {labelled / step['standard']:10.0f}")
    print(f"{'throughput ratio ours / plain':44s} {ratio['plain']:10.3f}  >= 1.0")
    print(f"{'step time memsinks / standard':44s} {ratio['memsinks']:10.3f}  <= 1.05")
    print(f"{'step time gradient-masked / standard':44s} {ratio['gradient-masked']:10.3f}  <= 1.05")
    print(f"{'peak fp32 matmul GFLOP/s':44s} {peak / 1e9:10.1f}")
    print(f"{'model GFLOP/s (standard, labelled tokens)':44s} {flops / step['standard'] / 1e9:10.1f}")
    print(f"{'model FLOP utilisation':44s} {flops / step['standard'] / peak:10.3f}  aim >= 0.4")
    print(f"{'executed FLOP/s (incl. padding) / peak':44s} {executed / step['standard'] / peak:10.3f}")


if __name__ == "__main__":
    main()
