"""Per-layer gradient signature of memorized vs non-memorized sequences (Stoehr et al. Fig. 4).

Why: Stoehr et al. found memorization spread over layers, yet with a distinguishable pattern:
memorized paragraphs have smaller parameter gradients in the lower layers than non-memorized
ones. Per sequence we take the gradient of its mean next-token NLL (the whole sequence) with
respect to every attention and MLP weight matrix (biases, embeddings and unembedding left out,
as in their sparse fine-tuning), the max |grad| in each (layer, component), and average that
over the sequences of a group.

GPT-2 packs the query, key and value projections in one Conv1D `attn.c_attn` whose weight is
[d_model, 3 * d_model] (input dim first): columns [0, d), [d, 2d), [2d, 3d) are Q, K and V.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..evaluate import collate, token_nll
from .common import GROUPS, model_device, pad_id_of, plain, require_gpt2, sequence_groups

NAME = "gradient-signature"
TITLE = "Per-layer gradient signature"
COMPONENTS = ("attn Q", "attn K", "attn V", "attn O", "MLP in", "MLP out")


def split_qkv(packed: torch.Tensor, d_model: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPT-2 c_attn weight (or its gradient) [d_model, 3*d_model] -> Q, K, V, each [d_model, d_model]."""
    if packed.shape[-1] != 3 * d_model:
        raise ValueError(f"c_attn weight has {packed.shape[-1]} output columns, expected 3 * {d_model}")
    return tuple(packed.split(d_model, dim=-1))


def layer_weights(model) -> list[torch.nn.Parameter]:
    """Per layer: c_attn (packed Q,K,V), attn c_proj (O), mlp c_fc (in), mlp c_proj (out)."""
    found = []
    for block in model.transformer.h:
        found += [block.attn.c_attn.weight, block.attn.c_proj.weight, block.mlp.c_fc.weight,
                  block.mlp.c_proj.weight]
    return found


def max_abs_gradients(model, tokens: list[int], pad_id: int) -> np.ndarray:
    """[layers, 6] max |d NLL / d W| of one sequence per layer and component (COMPONENTS order)."""
    weights = layer_weights(model)
    batch = collate([tokens], [0], [(1, len(tokens))], pad_id).to(model_device(model))
    with torch.enable_grad():
        nll = token_nll(model, batch)
        loss = nll.sum() / (batch.labels != -100).sum().clamp_min(1)
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]
    d_model = model.config.n_embd
    rows = []
    for layer in range(len(weights) // 4):
        packed, out, mlp_in, mlp_out = grads[4 * layer:4 * layer + 4]
        parts = (*split_qkv(packed, d_model), out, mlp_in, mlp_out)
        rows.append([float(part.abs().max()) for part in parts])
    return np.asarray(rows)


def group_signature(model, sequences, pad_id: int) -> np.ndarray:
    """[sequences, layers, 6] per-sequence max |grad| (one backward pass per sequence)."""
    return np.stack([max_abs_gradients(model, tokens, pad_id) for tokens in sequences.tokens])


def run(model, setting, *, max_sequences: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Rows: group x layer x component with the mean (and standard error) over sequences of
    max |grad|; summary: per layer, memorized / non-memorized ratio of the component mean."""
    require_gpt2(model, NAME)
    was_training = model.training
    model.eval()
    rows, means = [], {}
    try:
        for group, sequences in sequence_groups(setting, max_sequences).items():
            values = group_signature(model, sequences, pad_id_of(setting))
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
    return frame, plain(_summary(means))


def _component_order(column: pd.Series) -> pd.Series:
    return column.map(COMPONENTS.index) if column.name == "component" else column


def _summary(means: dict[str, np.ndarray]) -> dict:
    summary = {"components": list(COMPONENTS),
               "definition": "mean over sequences of max |grad of the sequence's mean NLL| per weight matrix"}
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
