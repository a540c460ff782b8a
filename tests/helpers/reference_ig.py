"""The literal integrated-gradients loop, the golden reference for `memsink_bench.methods.ig`.

The reference code's loop: for layer, sequence, target position i, alpha in linspace(0, 1, steps):
one forward of the whole (padded) sequence with the MLP activation at (layer, i) replaced by
alpha * a, one backward of p(label_i). Slow and obviously correct, so it lives with the tests
(`tests/methods/test_ig.py`) and the benchmark (`benchmarks/bench_ig.py`), not in the method. It
uses nothing of `ig.py` but the model layout, so a bug there cannot hide in both.
"""

from __future__ import annotations

import torch

from memsink_bench.evaluate import Batch
from memsink_bench.models import mlp_layout


def _logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    """[batch, pos, vocab] in at least float32 (float64 models stay float64)."""
    logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False).logits
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def integrated_gradients_reference(model, batch: Batch, steps: int) -> torch.Tensor:
    """Mean IG over the batch's target positions, [layers, d_mlp] float32 on CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    batch = batch.to(device)
    layout = mlp_layout(model)
    acts = []
    handles = [mlp.down.register_forward_pre_hook(lambda _m, args: acts.append(args[0].detach()))
               for mlp in layout]
    with torch.no_grad():
        _logits(model, batch.input_ids)
    for handle in handles:
        handle.remove()
    rows, cols = torch.nonzero(batch.target_mask & (batch.labels != -100), as_tuple=True)
    total = torch.zeros(len(layout), layout[0].d_mlp, dtype=acts[0].dtype, device=device)
    alphas = torch.linspace(0, 1, steps, dtype=acts[0].dtype, device=device)
    for layer, mlp in enumerate(layout):
        for seq, pos in zip(rows.tolist(), cols.tolist()):
            a, label = acts[layer][seq, pos], int(batch.labels[seq, pos])
            grad_sum = torch.zeros_like(a)
            for alpha in alphas:
                scaled = (alpha * a).requires_grad_(True)

                def put(_module, args, scaled=scaled, pos=pos):
                    hidden = args[0].clone()
                    hidden[0, pos] = scaled
                    return (hidden,) + tuple(args[1:])

                handle = mlp.down.register_forward_pre_hook(put)
                try:
                    with torch.enable_grad():
                        prob = torch.softmax(_logits(model, batch.input_ids[seq:seq + 1])[0, pos], -1)[label]
                        grad_sum += torch.autograd.grad(prob, scaled)[0]
                finally:
                    handle.remove()
            total[layer] += a * grad_sum / steps
    model.train(was_training)
    return (total / max(len(rows), 1)).float().cpu()
