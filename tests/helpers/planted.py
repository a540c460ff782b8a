"""A tiny GPT-2 with ONE planted MLP neuron that alone carries the target sequences.

Shared by the localizer tests (hard-concrete, integrated gradients): a localizer that works
must rank the planted neuron first. The construction is by hand, so it is instant and exact:

- targets: `[BOS] + random prefix + [TRIGGER] + [MEMORIZED] * k`; the target span is the run of
  MEMORIZED tokens, so every target label is MEMORIZED (predicted at TRIGGER and MEMORIZED).
- the planted neuron (layer 1, neuron 37) reads the embedding directions of TRIGGER and
  MEMORIZED (its c_fc column; GPT-2 Conv1D weight is [in, out]) with a negative bias, so it
  fires (activation ~6) on those two tokens only; its c_proj row (Conv1D weight [d_mlp, d_model])
  writes the unembedding row of MEMORIZED, so it raises the MEMORIZED logit.
- the unembedding is untied from the token embedding and re-drawn: with tied weights a
  MEMORIZED input already predicts MEMORIZED by itself (a free "repeat this token" path).
- position embeddings are zeroed (clean token identity at the neuron's input) and token
  embeddings scaled to norm ~1, comparable to the neuron's write: the final LayerNorm is scale
  invariant, so against a tiny residual even a 2%-open neuron would act fully and the target
  loss would not depend smoothly on how much of the neuron is kept.

Measured: target loss 0.005 intact, 5.87 with the planted neuron zeroed, +0.0001 at most with
any other single neuron zeroed.

`planted_model` checks the planting by ablation before returning (zeroing the planted neuron
must raise the target loss far more than zeroing any other single neuron), so a test built on
it cannot pass vacuously.
"""

from __future__ import annotations

import torch

from memsink_bench.config import ModelConfig
from memsink_bench.evaluate import Batch, collate, token_nll
from memsink_bench.interventions import scaled_neurons
from memsink_bench.methods.base import MethodContext, target_nll
from memsink_bench.models import build_model, mlp_shape
from memsink_bench.setting import SequenceSet

VOCAB, SEQ_LEN = 48, 24
BOS, TRIGGER, MEMORIZED = 0, 46, 47
PLANTED = (1, 37)   # (layer, neuron)
PREFIX_LEN, MEMORIZED_LEN = 9, 10


def _sequences(count: int, seed: int, memorized: bool) -> SequenceSet:
    """Targets end in TRIGGER + MEMORIZED * k; retain sequences are random tokens only."""
    generator = torch.Generator().manual_seed(seed)
    tokens, spans = [], []
    for _ in range(count):
        prefix = torch.randint(1, TRIGGER, (PREFIX_LEN,), generator=generator).tolist()
        if memorized:
            tail = [TRIGGER] + [MEMORIZED] * MEMORIZED_LEN
        else:
            tail = torch.randint(1, TRIGGER, (1 + MEMORIZED_LEN,), generator=generator).tolist()
        tokens.append([BOS] + prefix + tail)
        start = 2 + PREFIX_LEN
        spans.append((start, start + MEMORIZED_LEN))
    first_id = 1 if memorized else 1 + count
    return SequenceSet(tokens, list(range(first_id, first_id + count)), spans)


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector / vector.norm()


@torch.no_grad()
def _plant(model, layer: int, neuron: int, seed: int) -> None:
    """Wire `neuron` of `layer` as a TRIGGER/MEMORIZED detector that writes MEMORIZED
    (see the module docstring for why each other weight is touched)."""
    transformer = model.transformer
    transformer.wpe.weight.zero_()
    transformer.wte.weight.mul_(10.0)                                    # row norms ~1
    generator = torch.Generator().manual_seed(seed + 7)
    unembedding = 0.4 * torch.randn(model.lm_head.weight.shape, generator=generator)
    model.lm_head.weight = torch.nn.Parameter(unembedding)              # [vocab, d_model]
    model.config.tie_word_embeddings = False
    embedding = transformer.wte.weight                                   # [vocab, d_model]
    mlp = transformer.h[layer].mlp
    reads = _unit(embedding[TRIGGER]) + _unit(embedding[MEMORIZED])
    mlp.c_fc.weight[:, neuron] = 4.0 * _unit(reads)                       # Conv1D [d_model, d_mlp]
    mlp.c_fc.bias[neuron] = -10.0
    mlp.c_proj.weight[neuron] = 0.5 * _unit(unembedding[MEMORIZED])      # Conv1D [d_mlp, d_model]


def one_batch(sequences: SequenceSet, pad_id: int = BOS) -> Batch:
    return collate(sequences.tokens, sequences.ids, sequences.spans, pad_id)


@torch.no_grad()
def ablation_losses(model, batch: Batch) -> torch.Tensor:
    """[layers, d_mlp] target loss with each single neuron zeroed, all in one forward pass:
    the batch is repeated once per neuron and each copy gets its own per-example scale."""
    layers, d_mlp = mlp_shape(model)
    count, size = layers * d_mlp, len(batch.ids)
    keep = 1.0 - torch.eye(count).view(count, layers, d_mlp)             # [copy, layers, d_mlp]
    scale = keep.permute(1, 0, 2).repeat_interleave(size, dim=1)[:, :, None, :]
    repeated = Batch(*(t.repeat(count, *[1] * (t.dim() - 1)) for t in
                       (batch.input_ids, batch.labels, batch.target_mask, batch.ids)))
    with scaled_neurons(model, scale):                   # scale [layers, copy * batch, 1, d_mlp]
        nll = token_nll(model, repeated)
    per_copy = (nll * repeated.target_mask).view(count, size, -1).sum((1, 2))
    return (per_copy / batch.target_mask.sum()).view(layers, d_mlp)


def planted_model(seed: int = 0):
    """(model, context, (layer, neuron)): tiny GPT-2 (2 layers, d_model 32, d_mlp 64, vocab 48)
    whose target sequences are carried by the single planted neuron, verified by ablation."""
    cfg = ModelConfig(n_layer=2, n_embd=32, n_head=2, d_mlp=64)
    model = build_model(cfg, VOCAB, SEQ_LEN, seed).eval()
    _plant(model, *PLANTED, seed)
    targets, retain = _sequences(6, seed, True), _sequences(6, seed + 1, False)
    context = MethodContext(targets=targets, retain=retain, pad_id=BOS,
                            device=torch.device("cpu"), seed=seed, batch_size=8)
    _check_planting(model, one_batch(targets))
    return model, context, PLANTED


def _check_planting(model, batch: Batch) -> None:
    """Zeroing the planted neuron must hurt the targets far more than zeroing any other."""
    with torch.no_grad():
        intact = float(target_nll(model, batch))
    raised = ablation_losses(model, batch) - intact
    planted = float(raised[PLANTED])
    raised[PLANTED] = float("-inf")
    runner_up = float(raised.max())
    if not (intact < 0.1 and planted > 2.0 and planted > 20 * max(runner_up, 1e-3)):
        raise RuntimeError(f"planting failed: intact loss {intact:.3f}, planted ablation "
                           f"+{planted:.3f}, best other ablation +{runner_up:.3f}")
