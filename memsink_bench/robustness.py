"""Is the removal robust? Weight quantization (Zhang et al. 2024) and relearning (Lynch et al.
2024; Deeb and Roger 2024) applied to a model after removal.

Quantization (`quantize_weights`): round-to-nearest, symmetric, per output channel. For b bits
the levels are the integers -(2^(b-1) - 1) .. 2^(b-1) - 1 (symmetric, so -2^(b-1) is unused),
and each output channel c of a weight W has its own step s_c = max_j |W_cj| / (2^(b-1) - 1):
    W'_cj = s_c * clamp(round(W_cj / s_c), -(2^(b-1) - 1), 2^(b-1) - 1)      (|W' - W| <= s_c / 2)
stored back in the weight's float dtype (the model runs as before, on the rounded values).
Quantized: every nn.Linear and GPT-2 Conv1D weight except the output head, i.e. the attention
and MLP matrices of the blocks (the layers GPTQ and AWQ quantize by default). Left in full
precision: biases, LayerNorms and, unless `embeddings=True`, the token
and position embeddings and the output head (tied to the token embedding in GPT-2; with
`embeddings=True` each embedding row and each output-head row is a channel). bits = 32 means
full precision: an unchanged copy.

Relearning (`relearn`, over `relearned_models`): fine-tune a copy of the model after removal on
half of the forget sequences (`relearning_split`) with the training loss and AdamW as training
builds it (`train.make_optimizer`: weight decay on matrices, the training betas and gradient
clipping) at a constant learning rate, with the removal's neuron scale applied during the
fine-tuning (dropped neurons stay dropped), and measure loss and exact match on the other half
after each step count of the grid.
`recovered_share` turns that into the share of the removal's effect that came back.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from .config import ExperimentConfig, MetricsConfig, TrainConfig
from .errors import UserError
from .evaluate import Batch, collate, sequence_losses
from .interventions import scaled_neurons
from .setting import SequenceSet

FULL_PRECISION_BITS = 32


# --- quantization ----------------------------------------------------------------------------

def quantize_per_channel(weight: torch.Tensor, bits: int, channel_dim: int) -> torch.Tensor:
    """Round-to-nearest symmetric quantization with one step per slice along `channel_dim`
    (see the module docstring); same shape and dtype as `weight`. An all-zero channel stays zero."""
    levels = 2 ** (bits - 1) - 1
    values = weight.float()
    others = [d for d in range(values.dim()) if d != channel_dim % values.dim()]
    step = values.abs().amax(dim=others, keepdim=True) / levels
    step = torch.where(step > 0, step, torch.ones_like(step))
    return (torch.clamp(torch.round(values / step), -levels, levels) * step).to(weight.dtype)


def _output_channel_dim(module: nn.Module) -> int | None:
    """The dim of a module's weight that indexes its output channels (None: not quantized)."""
    if isinstance(module, nn.Linear):
        return 0                                  # [out, in]
    if type(module).__name__ == "Conv1D":
        return 1                                  # GPT-2 Conv1D: [in, out]
    return None


def check_bits(bits: int) -> None:
    if not (isinstance(bits, int) and not isinstance(bits, bool) and 2 <= bits <= FULL_PRECISION_BITS):
        raise UserError(f"bits={bits!r} is not a quantization width in 2..{FULL_PRECISION_BITS}",
                        "use 8 or 4 (32 keeps full precision)")


@torch.no_grad()
def quantize_weights(model: nn.Module, bits: int, embeddings: bool = False) -> nn.Module:
    """A copy of `model` with its block matrices (and, with `embeddings`, its embeddings and
    output head) rounded to `bits`-bit per-channel symmetric levels; `model` is untouched."""
    check_bits(bits)
    quantized = copy.deepcopy(model)
    if bits == FULL_PRECISION_BITS:
        return quantized
    head = quantized.get_output_embeddings() if hasattr(quantized, "get_output_embeddings") else None
    done: set[int] = set()                        # tied weights are rounded once
    for module in quantized.modules():
        if module is head or isinstance(module, nn.Embedding):
            channel_dim = 0 if embeddings else None   # an embedding row / an output-head row
        else:
            channel_dim = _output_channel_dim(module)
        weight = getattr(module, "weight", None)
        if channel_dim is None or weight is None or id(weight) in done:
            continue
        weight.copy_(quantize_per_channel(weight, bits, channel_dim))
        done.add(id(weight))
    return quantized


# --- relearning ------------------------------------------------------------------------------

@dataclass
class RelearnPoint:
    """Loss and exact match of the held-back forget sequences after `steps` relearning steps."""

    steps: int
    loss: float               # mean over sequences of the whole-sequence mean NLL
    target_loss: float        # same, over the target span (canary / continuation)
    exact_match: float        # mean target tokens greedily reproduced before the first miss
    exact_match_full: float   # share of sequences whose target span is reproduced in full


def check_relearn(steps_grid, lr: float) -> list[int]:
    """The sorted distinct step counts of `steps_grid`; bad input raises UserError."""
    grid = list(steps_grid)
    for steps in grid:
        if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
            raise UserError(f"relearn_steps={steps!r} must be an integer >= 0",
                            "give relearning step counts like [1, 5, 20] (0 = the model after removal)")
    if not grid:
        raise UserError("relearn_steps is empty", "give relearning step counts like [1, 5, 20]")
    if not lr > 0:
        raise UserError(f"relearning lr={lr!r} must be positive", "set the relearning peak learning rate, e.g. 1e-3")
    return sorted(set(grid))


def relearning_split(sequences: SequenceSet, seed: int = 0) -> tuple[SequenceSet, SequenceSet]:
    """(relearn on, measure on): a seeded random half of the forget sequences and the rest."""
    order = list(range(len(sequences)))
    random.Random(f"relearn-split:{seed}").shuffle(order)
    half = len(order) // 2
    return sequences.subset(sorted(order[:half])), sequences.subset(sorted(order[half:]))


def _batch_stream(sequences: SequenceSet, batch_size: int, pad_id: int, seed: int) -> Iterator[Batch]:
    """Batches of `sequences`, reshuffled each pass (a pure function of seed and pass)."""
    epoch = 0
    while True:
        order = list(range(len(sequences)))
        random.Random(f"relearn:{seed}:{epoch}").shuffle(order)
        for start in range(0, len(order), batch_size):
            chosen = sequences.subset(order[start:start + batch_size])
            yield collate(chosen.tokens, chosen.ids, chosen.spans, pad_id)
        epoch += 1


def _train_steps(model, optimizer, stream: Iterator[Batch], count: int, scale, grad_clip: float, device) -> None:
    """`count` steps of the training loss (train.LabelledLoss: mean NLL over every labelled
    token, unembedding only labelled positions) under `scale`."""
    from .train import LabelledLoss

    forward = LabelledLoss(model)
    model.train()
    with scaled_neurons(model, scale):
        for _ in range(count):
            batch = next(stream).to(device)
            nll, _ = forward(batch.input_ids, batch.labels)
            nll.mean().backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()


def relearned_models(model: nn.Module, train_sequences: SequenceSet, pad_id: int, steps_grid, lr: float,
                     scale: torch.Tensor | None = None, seed: int = 0, *, train: TrainConfig | None = None,
                     batch_size: int | None = None, device=None) -> Iterator[tuple[int, nn.Module]]:
    """Fine-tune a copy of `model` on `train_sequences`, yielding (steps, the copy) at each
    distinct step count of `steps_grid` in increasing order (one run; the same copy, trained
    further after each yield, so score it before asking for the next).

    `scale`: the removal's neuron scale (NeuronScaler semantics, the same for every sequence:
    [layers, 1, 1, d_mlp] from `interventions.per_layer_scale`, or None), applied during the
    fine-tuning. AdamW from `train.make_optimizer` with `train`'s weight decay, betas and
    gradient clipping (TrainConfig defaults if None) at the constant rate `lr`; batches of
    `batch_size` (train's if None). `model` is untouched.
    """
    grid = check_relearn(steps_grid, lr)             # checked now, not at the first next()
    if scale is not None and scale.dim() == 4 and scale.shape[1] != 1:
        raise UserError("relearning needs one neuron scale for every sequence, not one per example",
                        "pass a [layers, 1, 1, d_mlp] scale (interventions.per_layer_scale)")
    if len(train_sequences) == 0:
        raise UserError("no sequences to relearn on", "give at least one forget sequence to fine-tune on")
    train = dataclasses.replace(train or TrainConfig(), lr=lr)
    return _relearning(model, train_sequences, pad_id, grid, scale, seed, train, batch_size or train.batch_size,
                       device)


def _relearning(model, train_sequences, pad_id, grid, scale, seed, train: TrainConfig, batch_size, device):
    from .train import make_optimizer

    working = copy.deepcopy(model)
    for parameter in working.parameters():
        parameter.requires_grad_(True)
    device = device or next(working.parameters()).device
    optimizer = make_optimizer(working, ExperimentConfig(setting="relearn", preset="relearn", train=train), device)
    stream = _batch_stream(train_sequences, batch_size, pad_id, seed)
    done = 0
    for steps in grid:
        _train_steps(working, optimizer, stream, steps - done, scale, train.grad_clip, device)
        done = steps
        yield steps, working


def relearn(model: nn.Module, train_sequences: SequenceSet, eval_sequences: SequenceSet, pad_id: int,
            steps_grid, lr: float, scale: torch.Tensor | None = None, seed: int = 0, *,
            train: TrainConfig | None = None, batch_size: int | None = None, device=None) -> list[RelearnPoint]:
    """Relearning attack: fine-tune a copy of `model` on `train_sequences` (`relearned_models`,
    same arguments) and measure `eval_sequences` under the same `scale` after each step count.
    Returns one RelearnPoint per distinct step count, in increasing order."""
    scale_for = (lambda ids: scale) if scale is not None else None
    points = []
    for steps, working in relearned_models(model, train_sequences, pad_id, steps_grid, lr, scale, seed,
                                           train=train, batch_size=batch_size, device=device):
        report = sequence_losses(working, eval_sequences, pad_id, scale_for=scale_for, device=device)
        losses, matches = report.summary(), report.exact_match().summary()
        points.append(RelearnPoint(steps, losses["loss"], losses["target_loss"],
                                   matches["exact_match"], matches["exact_match_full"]))
    return points


MIN_REMOVAL = 0.05    # nats: a removal that moved the held-back loss less than this has nothing to recover


def recovered_share(before_removal: float, after_removal: float, after_relearn: float,
                    min_removal: float = 1e-9) -> float | None:
    """Share of the removal's effect that relearning undid:
        (after_removal - after_relearn) / (after_removal - before_removal)
    for a loss (before_removal: the memorizing model; after_removal: the edited model before any
    relearning). 0 = nothing came back, 1 = back to the memorizing model's loss, > 1 = beyond it,
    < 0 = relearning made it worse. The same formula serves exact match (numerator and
    denominator both change sign). None when removal changed nothing (|gap| <= `min_removal`; the
    leaderboard uses MIN_REMOVAL, since a share of a removal of 0.001 nats is noise times 1000)."""
    gap = after_removal - before_removal
    return (after_removal - after_relearn) / gap if abs(gap) > min_removal else None


# --- at a run's chosen point --------------------------------------------------------------------

def span_key(key: str, forget_span: str) -> str:
    """The name robustness_at stores `key` (a whole-sequence value) under for a forget span: itself
    for the sequence, its extraction-span twin otherwise (forgetting -> forgetting_target,
    ..._loss -> ..._target_loss)."""
    if forget_span == "sequence":
        return key
    return key + "_target" if key == "forgetting" else key.replace("loss", "target_loss")


def robustness_at(edited: nn.Module, scale, unedited: nn.Module, never_seen: nn.Module | None, setting,
                  lr: float, seed: int = 0, params: MetricsConfig | None = None,
                  train: TrainConfig | None = None) -> dict:
    """Quantization and relearning robustness of one edited state (the run's chosen point).

    quantization[bits]: the edited state's forgetting and exact match after round-to-nearest
    per-channel quantization, against the same quantization of the unedited model (forgetting =
    quantized edited repeated loss - quantized unedited repeated loss, on the whole sequence and,
    `forgetting_target`, on the extraction span). Relearning's losses likewise have `target_loss`.
    relearning: fine-tune on half of the forget set for 1/5/20 steps at the training run's peak
    learning rate (dropped neurons kept dropped); loss and exact match on the other half, the
    recovered share of the removal's effect on that half, and the same fine-tuning from the
    never-seen model (how fast a model that never memorized them learns them).
    The bit widths and step counts are `params.quantization_bits` and `params.relearn_steps`.
    """
    params = params or MetricsConfig()
    scale_for = (lambda ids: scale) if scale is not None else None
    pad = setting.tokenizer.pad_token_id
    out = {"quantization": {}, "relearning": {}}
    for bits in params.quantization_bits:
        edited_q = sequence_losses(quantize_weights(edited, bits), setting.repeated, pad, scale_for=scale_for)
        base_q = sequence_losses(quantize_weights(unedited, bits), setting.repeated, pad)
        out["quantization"][str(bits)] = {
            "forgetting": edited_q.summary()["loss"] - base_q.summary()["loss"],
            "forgetting_target": edited_q.summary()["target_loss"] - base_q.summary()["target_loss"],
            "em_repeated": edited_q.exact_match().summary()["exact_match"],
            "em_repeated_unedited": base_q.exact_match().summary()["exact_match"]}
    relearn_on, measure_on = relearning_split(setting.repeated, seed)
    if len(relearn_on) == 0 or len(measure_on) == 0:
        return out
    memorizing_losses = sequence_losses(unedited, measure_on, pad).summary()
    removed_losses = sequence_losses(edited, measure_on, pad, scale_for=scale_for).summary()
    memorizing, removed = memorizing_losses["loss"], removed_losses["loss"]
    steps = params.relearn_steps
    curve = relearn(edited, relearn_on, measure_on, pad, steps, lr, scale, seed, train=train)
    reference = relearn(never_seen, relearn_on, measure_on, pad, steps, lr, None, seed, train=train) if never_seen else []
    for index, point in enumerate(curve):
        entry = {"loss": point.loss, "target_loss": point.target_loss, "em": point.exact_match,
                 "recovered_share": recovered_share(memorizing, removed, point.loss)}
        if reference:
            entry.update(never_seen_loss=reference[index].loss, never_seen_target_loss=reference[index].target_loss,
                         never_seen_em=reference[index].exact_match)
        out["relearning"][str(point.steps)] = entry
    out["relearning_base"] = {"memorizing_loss": memorizing, "after_removal_loss": removed,
                              "memorizing_target_loss": memorizing_losses["target_loss"],
                              "after_removal_target_loss": removed_losses["target_loss"]}
    return out
