"""Integrated gradients over MLP neurons (knowledge-neuron style, Chang et al. 2024).

For each layer l and each target position i (a position whose label is a target-span token), the
MLP hidden activation a = h_l[i] (input of the down projection, after the nonlinearity; only at
layer l, position i) is replaced by alpha * a for alpha in linspace(0, 1, steps) (zero baseline).
The objective is the *probability* (softmax, not log) of the true next token at position i:

    IG_l,i = a * mean_alpha  d p(label_i) / d (alpha * a)          [d_mlp]

and the score of layer l is the mean of IG_l,i over every target position of every target
sequence, [layers, d_mlp].

`integrated_gradients` / `ig_per_position` (used by `IntegratedGradients.score`) compute it
exactly and batched. Only position i's prediction is read and attention is causal, so every
position < i stays clean: a (position i, alpha) copy needs only the clean keys/values of
tokens[:i] (a KV cache from one clean prefix forward, shared by all copies of a sequence) plus one
query token at position i. The copies of a sequence are query tokens after its cached prefix; a
4D mask lets each see the prefix keys < i and itself, never another copy, and the hook puts each
copy's own alpha * a at layer l. One `autograd.grad` of the summed probabilities then gives every
copy its own gradient (copies are independent). A copy with alpha = 1 must reproduce the clean
probability; if it does not (a model whose cache / 4D-mask / position-id handling differs), the
layer is recomputed without the cache (each copy = tokens[:i+1] in its own batch row, still
batched), which needs nothing but a plain forward.

Checks: the reference code's literal loop (layer x sequence x position x alpha, one
forward/backward each) is the golden reference in `tests/helpers/reference_ig.py`, and
`ig_captum.py` computes the same scores with captum's integrator.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import UserError
from ..evaluate import Batch
from ..models import cached_forward, mlp_layout
from .base import MethodContext, NeuronLocalizer


# ----------------------------------------------------------------------------------- helpers
def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _prob_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax in at least float32 (float64 models stay float64)."""
    return torch.promote_types(dtype, torch.float32)


def _target_positions(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of the target positions, [n] each, ordered by sequence then position."""
    rows, cols = torch.nonzero(batch.target_mask & (batch.labels != -100), as_tuple=True)
    return rows, cols


def _ones_mask(input_ids: torch.Tensor) -> torch.Tensor:
    # Right padding + causal attention: real positions never see pads, so an all-ones mask is
    # exact (passing one also silences HF's "padding without attention mask" warning).
    return torch.ones_like(input_ids)


@torch.no_grad()
def _clean_pass(model: nn.Module, batch: Batch) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Clean hidden activations per layer ([batch, pos, d_mlp] each) and the probability of the
    true next token at every position ([batch, pos], 0 where the label is ignored)."""
    acts: list[torch.Tensor] = []
    handles = [layer.down.register_forward_pre_hook(lambda _m, args: acts.append(args[0].detach()))
               for layer in mlp_layout(model)]
    try:
        logits = model(input_ids=batch.input_ids, attention_mask=_ones_mask(batch.input_ids),
                       use_cache=False).logits
    finally:
        for handle in handles:
            handle.remove()
    probs = torch.softmax(logits.to(_prob_dtype(logits.dtype)), dim=-1)
    probs = probs.gather(-1, batch.labels.clamp_min(0)[..., None])[..., 0]
    return acts, probs * (batch.labels != -100)


class _Eval:
    """Eval mode for the duration (dropout off), previous mode restored afterwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


# ----------------------------------------------------------------------------------- batched
class _CacheMismatch(RuntimeError):
    """The cached one-token forward did not reproduce the clean probability at alpha = 1."""


# copies (query tokens) per batch row of the cached forward; the attention of a row is
# copies x (prefix + copies), so this bounds the wasted copy x copy block
_ROW_COPIES = 256


def _mismatch_tolerance(dtype: torch.dtype) -> float:
    return min(1e3 * torch.finfo(dtype).eps, 1e-2)


def _unembed_only(model: nn.Module, index: tuple[torch.Tensor, torch.Tensor]):
    """Forward pre-hook on the output embedding keeping only the hidden states at `index`
    ([n] row and column tensors): logits [n, 1, vocab] instead of one per position."""
    def keep(_module, args):
        return (args[0][index][:, None],) + tuple(args[1:])

    return model.get_output_embeddings().register_forward_pre_hook(keep)


def _chunk_cached(model, mlp, batch, rows, cols, a, alphas, clean_probs) -> torch.Tensor:
    """Mean over alpha of d p / d (alpha * a) for m positions at once, [m, d_mlp].

    Layout: a batch row holds one sequence's clean KV cache for tokens[:L] (L = last position in
    the chunk) followed by up to _ROW_COPIES query tokens, one per (position i, alpha) copy of
    that sequence. A 4D additive mask lets a copy see the cached keys < i and itself only (not the
    other copies), and its position id is i, so its output is exactly the prediction at position
    i with its own alpha * a at layer l. Sharing a row's cache across its copies (instead of one
    cache row per copy) keeps the memory traffic at one prefix per row, not per copy.
    """
    m, steps, device, dtype = len(rows), len(alphas), a.device, a.dtype
    seqs, copy_seq = torch.unique(rows.repeat_interleave(steps), return_inverse=True)
    copy_pos = cols.repeat_interleave(steps)                    # [C] position i of each copy
    # rank of each copy within its sequence -> (row block, query slot); a sequence with more than
    # _ROW_COPIES copies spreads over several rows (each with the prefix cache) so the masked
    # copy x copy block of the attention stays small
    counts = torch.bincount(copy_seq, minlength=len(seqs))
    order = torch.argsort(copy_seq, stable=True)
    rank = torch.empty_like(copy_seq)
    rank[order] = torch.arange(len(order), device=device) - (torch.cumsum(counts, 0) - counts)[copy_seq[order]]
    block, slot = rank // _ROW_COPIES, rank % _ROW_COPIES
    n_blocks = int(block.max()) + 1
    row_key, copy_row = torch.unique(copy_seq * n_blocks + block, return_inverse=True)   # [C] batch row
    n_rows, width, prefix_len = len(row_key), int(slot.max()) + 1, int(cols.max())

    input_ids = torch.zeros(n_rows, width, dtype=torch.long, device=device)
    input_ids[copy_row, slot] = batch.input_ids[seqs[copy_seq], copy_pos]
    position_ids = torch.zeros_like(input_ids)
    position_ids[copy_row, slot] = copy_pos
    key_pos = torch.arange(prefix_len, device=device)
    allowed = torch.cat([key_pos[None, None, :] < position_ids[:, :, None],     # cached keys < i
                         torch.eye(width, dtype=torch.bool, device=device).expand(n_rows, -1, -1)],
                        dim=-1)                                                 # + itself
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)

    cache = None
    if prefix_len > 0:
        prefix_ids = batch.input_ids[seqs, :prefix_len]
        with torch.no_grad():
            _, cache = cached_forward(model, prefix_ids, attention_mask=_ones_mask(prefix_ids))
        if not hasattr(cache, "batch_select_indices"):   # not a transformers Cache object
            raise _CacheMismatch
        if n_rows != len(seqs):
            cache.batch_select_indices(row_key // n_blocks)
    scaled = (alphas.repeat(m)[:, None] * a.repeat_interleave(steps, dim=0)).detach().requires_grad_(True)

    def put(_module, args):
        return (args[0].index_put((copy_row, slot), scaled.to(args[0].dtype)),) + tuple(args[1:])

    handles = [mlp.down.register_forward_pre_hook(put), _unembed_only(model, (copy_row, slot))]
    try:
        with torch.enable_grad():
            output, _ = cached_forward(model, input_ids, cache, attention_mask=mask[:, None],
                                       position_ids=position_ids)
            logits = output.logits[:, -1]
            probs = torch.softmax(logits.to(_prob_dtype(logits.dtype)), dim=-1)
            probs = probs.gather(-1, batch.labels[seqs[copy_seq], copy_pos][:, None])[:, 0]
            (grads,) = torch.autograd.grad(probs.sum(), scaled)
    finally:
        for handle in handles:
            handle.remove()
    at_one = probs.detach().view(m, steps)[:, -1]
    if (at_one - clean_probs[rows, cols]).abs().max() > _mismatch_tolerance(dtype):
        raise _CacheMismatch
    return grads.view(m, steps, -1).mean(dim=1)


def _chunk_full(model, mlp, batch, rows, cols, a, alphas) -> torch.Tensor:
    """Same as `_chunk_cached` without a KV cache: each copy is tokens[:max_i + 1] of its sequence
    (causal, so the tail beyond its own position is irrelevant) with its own position scaled."""
    m, steps, device = len(rows), len(alphas), a.device
    copy_rows, copy_cols = rows.repeat_interleave(steps), cols.repeat_interleave(steps)
    copy_index = torch.arange(m * steps, device=device)
    input_ids = batch.input_ids[copy_rows, :int(cols.max()) + 1]
    scaled = (alphas.repeat(m)[:, None] * a.repeat_interleave(steps, dim=0)).detach().requires_grad_(True)

    def put(_module, args):
        hidden = args[0].index_put((copy_index, copy_cols), scaled.to(args[0].dtype))
        return (hidden,) + tuple(args[1:])

    def keep_own_position(_module, args):
        # unembed only each copy's own position: [copies, 1, d_model] instead of all positions
        return (args[0][copy_index, copy_cols][:, None],) + tuple(args[1:])

    handles = [mlp.down.register_forward_pre_hook(put),
               model.get_output_embeddings().register_forward_pre_hook(keep_own_position)]
    try:
        with torch.enable_grad():
            logits = model(input_ids=input_ids, attention_mask=_ones_mask(input_ids),
                           use_cache=False).logits[:, -1]
            probs = torch.softmax(logits.to(_prob_dtype(logits.dtype)), dim=-1)
            probs = probs.gather(-1, batch.labels[copy_rows, copy_cols][:, None])[:, 0]
            (grads,) = torch.autograd.grad(probs.sum(), scaled)
    finally:
        for handle in handles:
            handle.remove()
    return grads.view(m, steps, -1).mean(dim=1)


def _ig_layer(model, batch, layer, steps, positions_per_batch, acts, clean_probs, use_cache) -> torch.Tensor:
    """Un-averaged IG of one layer, [n_target_positions, d_mlp], in the activations' dtype."""
    mlp = mlp_layout(model)[layer]
    rows, cols = _target_positions(batch)
    a_all = acts[layer][rows, cols]
    alphas = torch.linspace(0, 1, steps, dtype=a_all.dtype, device=a_all.device)
    out = torch.empty_like(a_all)
    for start in range(0, len(rows), positions_per_batch):
        part = slice(start, start + positions_per_batch)
        args = (model, mlp, batch, rows[part], cols[part], a_all[part], alphas)
        if use_cache:
            try:
                mean_grad = _chunk_cached(*args, clean_probs)
            except RuntimeError as error:     # _CacheMismatch, or a model that rejects the layout
                # (GPT-Neo's causal-mask buffer stops at max_position_embeddings keys)
                why = "does not reproduce the clean forward" if isinstance(error, _CacheMismatch) else \
                    f"rejects the cached layout ({str(error).splitlines()[0][:120]})"
                warnings.warn(f"integrated gradients: the KV-cached forward of {type(model).__name__} {why}; "
                              "using the slower uncached path", RuntimeWarning, stacklevel=2)
                return _ig_layer(model, batch, layer, steps, positions_per_batch, acts, clean_probs, False)
        else:
            mean_grad = _chunk_full(*args)
        out[part] = a_all[part] * mean_grad
    return out


def ig_per_position(model: nn.Module, batch: Batch, layer: int, steps: int,
                    positions_per_batch: int = 32, use_cache: bool = True) -> torch.Tensor:
    """Un-averaged IG of one layer: [n_target_positions, d_mlp] in the model's dtype, on the
    model's device, rows in `torch.nonzero(batch.target_mask)` order. Summed over neurons, a row
    approaches p(label | a) - p(label | 0 at that layer and position) as steps grows."""
    batch = batch.to(_device(model))
    with _Eval(model):
        acts, clean_probs = _clean_pass(model, batch)
        return _ig_layer(model, batch, layer, steps, positions_per_batch, acts, clean_probs, use_cache)


def _ig_sum(model, batch, steps, positions_per_batch, use_cache) -> tuple[torch.Tensor, int]:
    """Sum over the batch's target positions of IG per layer, [layers, d_mlp], and their count."""
    batch = batch.to(_device(model))
    acts, clean_probs = _clean_pass(model, batch)
    sums = [_ig_layer(model, batch, layer, steps, positions_per_batch, acts, clean_probs, use_cache).sum(0)
            for layer in range(len(acts))]
    return torch.stack(sums), int(_target_positions(batch)[0].numel())


def integrated_gradients(model: nn.Module, batch: Batch, steps: int, positions_per_batch: int = 32,
                         use_cache: bool = True) -> torch.Tensor:
    """Mean IG over the batch's target positions, [layers, d_mlp] float32 CPU (batched, exact:
    equal to the literal loop of `tests/helpers/reference_ig.py`)."""
    with _Eval(model):
        total, count = _ig_sum(model, batch, steps, positions_per_batch, use_cache)
    return (total / max(count, 1)).float().cpu()


# ------------------------------------------------------------------------------------ method
class IntegratedGradients(NeuronLocalizer):
    """Knowledge-neuron IG: neurons whose activation carries the probability of the memorized
    next tokens score high. Hyperparameters: `steps` (alpha grid size, >= 2) and
    `positions_per_batch` (target positions per batched forward; memory only, not results)."""

    name = "ig"
    summary = "integrated gradients over MLP neurons (zero baseline, probability of the true next token)"
    resource_knobs = ("positions_per_batch",)

    def __init__(self, steps: int = 16, positions_per_batch: int = 32):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise UserError(f"ig steps must be an integer >= 2 (got {steps!r})",
                            "set steps to 16 (the seed paper) or 20 (the reference code)")
        if isinstance(positions_per_batch, bool) or not isinstance(positions_per_batch, int) \
                or positions_per_batch < 1:
            raise UserError(f"ig positions_per_batch must be an integer >= 1 (got {positions_per_batch!r})",
                            "set positions_per_batch to 32, or lower it if memory runs out")
        self.steps = steps
        # target positions per forward: positions_per_batch * steps one-token copies, unembedded
        # over the whole vocabulary (and their activations kept for the backward); lower it if
        # memory runs out
        self.positions_per_batch = positions_per_batch

    def score(self, model: nn.Module, context: MethodContext) -> torch.Tensor:
        """Mean IG over every target position of every target sequence: [layers, d_mlp] float32 CPU."""
        total, count = None, 0
        with _Eval(model):
            for batch in context.target_batches():
                part, n = _ig_sum(model, batch, self.steps, self.positions_per_batch, True)
                total = part if total is None else total + part
                count += n
        if count == 0:
            raise UserError("integrated gradients found no target-span tokens to attribute",
                            "give target sequences whose target span has at least one token after the first")
        return (total / count).float().cpu()
