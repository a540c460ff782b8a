"""What the memorization block of a gradient-masked checkpoint carries (a diagnostic of its collapse).

Why: with gradient masking, repeated sequences update only the memorization block (the last
1 - g of each MLP's neurons) and every other sequence only the generalization block, while the
forward pass always uses both. If the rest of the network comes to rely on the memorization
block's output for *every* sequence, zeroing it breaks the model as a whole, not just the
memorized sequences: the collapse of validation loss under the `dropout` view. This analysis
measures, per layer, how much of the MLP's output each block writes (the mean over token
positions of the norm of its contribution, W_out[block] . act[block]) on held-out and on repeated
sequences, and the losses under the kind's views: `keep-all`, `dropout` (memorization block
zeroed) and `dropout-rescaled` (also the generalization block scaled by d_mlp / n_gen, as the
MemSinks drop view rescales the shared neurons). A memorization block writing a large share of
the output on held-out text, and a rescaled dropout that does not recover the loss, say the
collapse is the network's dependence on that block, not a missing normalisation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..errors import UserError
from ..evaluate import batches, sequence_losses
from .common import model_device, pad_id_of, plain

NAME = "block-norms"
TITLE = "Gradient-masked MLP blocks"


@torch.no_grad()
def block_output_norms(model, sequences, pad_id: int, n_gen: int, batch_size: int = 16) -> np.ndarray:
    """[layers, 2]: mean over non-pad positions of ||W_out[gen] act[gen]|| and ||W_out[mem] act[mem]||."""
    from ..models import mlp_layout, weight_layout

    layers = mlp_layout(model)
    sums, count = np.zeros((len(layers), 2)), 0
    captured: dict[int, torch.Tensor] = {}
    handles = [layer.down.register_forward_pre_hook(lambda module, args, i=i: captured.__setitem__(i, args[0]))
               for i, layer in enumerate(layers)]
    try:
        for batch in batches(sequences, batch_size, pad_id):
            batch = batch.to(model_device(model))
            model(input_ids=batch.input_ids)
            valid = batch.input_ids != pad_id
            valid[:, 0] = True
            for index, layer in enumerate(layers):
                act = captured[index][valid].float()                          # [positions, d_mlp]
                weight = layer.down.weight.float()
                weight = weight if weight_layout(layer.down) == "conv1d" else weight.T   # [d_mlp, d_model]
                for block, part in enumerate((slice(0, n_gen), slice(n_gen, None))):
                    sums[index, block] += float((act[:, part] @ weight[part]).norm(dim=-1).sum())
            count += int(valid.sum())
    finally:
        for handle in handles:
            handle.remove()
    return sums / max(count, 1)


def run(model, setting, *, generalization_fraction: float | None = None) -> tuple[pd.DataFrame, dict]:
    """Rows: set (held-out, repeated) x layer with both blocks' output norms and the memorization
    block's share; summary: losses under keep-all, dropout and dropout-rescaled."""
    from ..masks import split_neurons
    from ..models import mlp_shape

    if generalization_fraction is None:
        raise UserError("the block-norms analysis reads a gradient-masked checkpoint",
                        "run it with --checkpoint gradient-masked")
    _, d_mlp = mlp_shape(model)
    n_gen, n_mem = split_neurons(d_mlp, generalization_fraction)
    pad = pad_id_of(setting)
    model.eval()
    rows = []
    for name, sequences in (("held-out", setting.validation), ("repeated", setting.repeated)):
        norms = block_output_norms(model, sequences, pad, n_gen)
        rows += [{"set": name, "layer": layer, "generalization_norm": gen, "memorization_norm": mem,
                  "memorization_share": mem / max(gen + mem, 1e-12)} for layer, (gen, mem) in enumerate(norms)]
    keep = torch.ones(d_mlp)
    dropped = keep.clone()
    dropped[n_gen:] = 0.0
    views = {"keep-all": None, "dropout": dropped, "dropout-rescaled": dropped * d_mlp / n_gen}
    losses = {}
    for view, scale in views.items():
        scale_for = None if scale is None else (lambda ids, s=scale[None, None, None, :]: s.to(ids.device))
        losses[view] = {"val_loss": sequence_losses(model, setting.validation, pad, scale_for=scale_for).summary()["loss"],
                        "repeated_loss": sequence_losses(model, setting.repeated, pad,
                                                         scale_for=scale_for).summary()["loss"]}
    frame = pd.DataFrame(rows)
    held = frame[frame["set"] == "held-out"]
    summary = {"n_generalization": n_gen, "n_memorization": n_mem, "losses": losses,
               "memorization_share_held_out": float(held["memorization_share"].mean()),
               "memorization_share_repeated": float(frame[frame["set"] == "repeated"]["memorization_share"].mean()),
               "definition": "per layer, mean over positions of ||W_out[block] act[block]||; share = mem / (gen + mem)"}
    return frame, plain(summary)


def figure(frame: pd.DataFrame, summary: dict):
    """(a) the memorization block's share of the MLP output per layer, held-out and repeated;
    (b) validation and repeated loss under the three views."""
    from .. import plots

    with plots.paper_style():
        fig, (share, loss) = plots.subplots(1, 2, width=plots.DOUBLE_COLUMN, height=2.8)
        for name, color in (("held-out", plots.GROUP_COLORS["non-memorized"]),
                            ("repeated", plots.GROUP_COLORS["memorized"])):
            rows = frame[frame["set"] == name]
            share.plot(rows["layer"], rows["memorization_share"], marker="o", color=color, label=name)
        share.axhline(summary["n_memorization"] / (summary["n_memorization"] + summary["n_generalization"]),
                      color="0.5", linestyle=":", label="its share of the neurons")
        share.set_xlabel("layer")
        share.set_ylabel("memorization block's share\nof the MLP output norm")
        share.set_ylim(0, 1)
        share.legend(fontsize=7)
        views = list(summary["losses"])
        x = np.arange(len(views))
        for offset, key, color in ((-0.2, "val_loss", plots.GROUP_COLORS["non-memorized"]),
                                   (0.2, "repeated_loss", plots.GROUP_COLORS["memorized"])):
            loss.bar(x + offset, [summary["losses"][v][key] for v in views], width=0.4, color=color,
                     label=key.replace("_", " "))
        loss.set_xticks(x, views)
        loss.set_ylabel("loss (nats)")
        loss.legend(fontsize=7)
    return fig
