"""Per-layer gradient signature of memorized vs non-memorized sequences (Stoehr et al. Fig. 4).

Why: Stoehr et al. found memorization spread over layers, yet with a distinguishable pattern:
memorized paragraphs have smaller parameter gradients in the lower layers than non-memorized
ones. Per sequence we take the gradient of its mean next-token NLL over its extraction span
(the continuation after the prefix, or the canary; Stoehr et al. take the continuation's NLL,
whatever the setting's forget span) with
respect to every attention and MLP weight matrix (biases, embeddings and unembedding left out,
as in their sparse fine-tuning), the max |grad| in each (layer, component), and average that
over the sequences of a group. The same over the whole sequence is given beside it in the
summary (`whole_sequence`).

The weights come from the architecture-neutral layouts: `attention.attention_blocks` (Q, K and V
unpacked from GPT-2's [Q|K|V] columns, GPT-NeoX's per-head rows, or separate projections; with
grouped-query attention K and V are the n_kv_heads shared ones) and `models.mlp_layout` ("MLP in"
is every up-projection: c_fc, dense_h_to_4h, or a gated MLP's gate_proj and up_proj together).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..evaluate import collate, token_nll
from .attention import AttentionBlock, attention_blocks, unpack_qkv
from .common import GROUPS, model_device, pad_id_of, plain, sequence_groups

NAME = "gradient-signature"
TITLE = "Per-layer gradient signature"
COMPONENTS = ("attn Q", "attn K", "attn V", "attn O", "MLP in", "MLP out")


@dataclass
class LayerWeights:
    """The weight matrices of one layer whose gradients make its row of the signature."""

    attention: AttentionBlock             # Q/K/V projection(s) and the output projection
    mlp_in: list[torch.nn.Parameter]      # every up-projection (2 for a gated MLP)
    mlp_out: torch.nn.Parameter

    def matrices(self) -> list[torch.nn.Parameter]:
        return [*self.attention.qkv_weights, self.attention.output.weight, *self.mlp_in, self.mlp_out]

    def max_abs(self, grads: list[torch.Tensor]) -> list[float]:
        """The gradients of `matrices()` (same order) -> max |grad| per component (COMPONENTS order)."""
        packed = len(self.attention.qkv)
        q, k, v = unpack_qkv(self.attention, grads[:packed])
        out, mlp_in, mlp_out = grads[packed], grads[packed + 1:-1], grads[-1]
        return ([float(part.abs().max()) for part in (q, k, v, out)]
                + [max(float(g.abs().max()) for g in mlp_in), float(mlp_out.abs().max())])


def layer_weights(model) -> list[LayerWeights]:
    """Per layer: Q/K/V projection weight(s), attention output, MLP up-projection(s), MLP down."""
    from ..models import mlp_layout

    return [LayerWeights(block, [m.weight for m in mlp.up], mlp.down.weight)
            for block, mlp in zip(attention_blocks(model, f"the {NAME} analysis"), mlp_layout(model))]


SPANS = ("target", "whole")


def max_abs_gradients(model, tokens: list[int], pad_id: int, span: tuple[int, int] | None = None) -> np.ndarray:
    """[layers, 6] max |d NLL / d W| of one sequence per layer and component (COMPONENTS order):
    the mean NLL over the target `span` (start, end), or over the whole sequence when None."""
    layers = layer_weights(model)
    sizes = [len(layer.matrices()) for layer in layers]
    weights = [w for layer in layers for w in layer.matrices()]
    batch = collate([tokens], [0], [span or (1, len(tokens))], pad_id).to(model_device(model))
    with torch.enable_grad():
        nll = token_nll(model, batch)
        scored = batch.target_mask if span is not None else (batch.labels != -100)
        loss = (nll * scored).sum() / scored.sum().clamp_min(1)
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]
    starts = np.cumsum([0, *sizes])
    return np.asarray([layer.max_abs(grads[first:first + size])
                       for layer, first, size in zip(layers, starts, sizes)])


def group_signature(model, sequences, pad_id: int, span: str = "target") -> np.ndarray:
    """[sequences, layers, 6] per-sequence max |grad| (one backward pass per sequence) of the NLL
    over each sequence's target span (`span="target"`) or over the whole sequence ("whole")."""
    return np.stack([max_abs_gradients(model, tokens, pad_id, window if span == "target" else None)
                     for tokens, window in zip(sequences.tokens, sequences.spans)])


def run(model, setting, *, max_sequences: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Rows: group x layer x component with the mean (and standard error) over sequences of
    max |grad|; summary: per layer, memorized / non-memorized ratio of the component mean."""
    layer_weights(model)                     # an unknown architecture fails before any work
    was_training = model.training
    model.eval()
    rows, means, whole = [], {}, {}
    try:
        for group, sequences in sequence_groups(setting, max_sequences).items():
            values = group_signature(model, sequences, pad_id_of(setting), "target")
            whole[group] = group_signature(model, sequences, pad_id_of(setting), "whole").mean(0)
            means[group] = values.mean(0)
            sem = values.std(0, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.zeros_like(means[group])
            rows += [{"group": group, "layer": layer, "component": component,
                      "mean_max_abs_grad": means[group][layer, c], "sem": sem[layer, c], "n_sequences": len(values)}
                     for layer in range(values.shape[1]) for c, component in enumerate(COMPONENTS)]
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    frame = pd.DataFrame(rows)
    frame = frame.sort_values(["group", "layer", "component"], key=_component_order).reset_index(drop=True)
    summary = _summary(means)
    summary["whole_sequence"] = {k: v for k, v in _summary(whole).items() if k != "components"}
    summary["whole_sequence"]["definition"] = "the same with the NLL over the whole sequence"
    return frame, plain(summary)


def _component_order(column: pd.Series) -> pd.Series:
    return column.map(COMPONENTS.index) if column.name == "component" else column


def _summary(means: dict[str, np.ndarray]) -> dict:
    summary = {"components": list(COMPONENTS),
               "definition": "mean over sequences of max |grad of the mean NLL over the sequence's target span| "
                             "per weight matrix"}
    if all(g in means for g in GROUPS):
        ratio = means["memorized"].mean(1) / np.maximum(means["non-memorized"].mean(1), 1e-30)
        summary["memorized_over_non_memorized_by_layer"] = ratio
        summary["lower_half_ratio"] = float(ratio[:max(1, len(ratio) // 2)].mean())
        summary["upper_half_ratio"] = float(ratio[len(ratio) // 2:].mean())
    return summary


def figure(frame: pd.DataFrame, summary: dict):
    """Heatmaps of mean max |grad| (layer x component), memorized and non-memorized side by side
    on one colour scale (log), layer 0 at the bottom as in Stoehr et al. Fig. 4."""
    from matplotlib.colors import LogNorm

    from .. import plots

    groups = [g for g in GROUPS if g in set(frame["group"])]
    grids = {g: _grid(frame[frame["group"] == g]) for g in groups}
    positive = np.concatenate([grid[grid > 0] for grid in grids.values()] or [np.ones(1)])
    norm = LogNorm(vmin=float(positive.min()) if positive.size else 1e-8,
                   vmax=float(positive.max()) if positive.size else 1.0)
    layers = next(iter(grids.values())).shape[0]
    with plots.paper_style():
        fig, axes = plots.subplots(1, len(groups), width=plots.DOUBLE_COLUMN, height=0.3 * layers + 1.8, sharey=True)
        for ax, group in zip(np.atleast_1d(axes), groups):
            image = ax.imshow(np.where(grids[group] > 0, grids[group], np.nan), origin="lower", aspect="auto",
                              cmap="viridis", norm=norm, interpolation="nearest")
            ax.set_xticks(range(len(COMPONENTS)), COMPONENTS, rotation=30, ha="right")
            ax.set_yticks(range(layers), [str(layer) for layer in range(layers)])
            ax.set_title(group)
            ax.grid(False)
        np.atleast_1d(axes)[0].set_ylabel("layer")
        fig.colorbar(image, ax=list(np.atleast_1d(axes)), label="mean max |grad|")
    return fig


def _grid(rows: pd.DataFrame) -> np.ndarray:
    """[layers, components] of mean_max_abs_grad from the table's long form."""
    table = rows.pivot(index="layer", columns="component", values="mean_max_abs_grad")
    return table.reindex(columns=list(COMPONENTS)).sort_index().to_numpy(dtype=float)
