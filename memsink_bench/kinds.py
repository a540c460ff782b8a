"""Checkpoint kinds: what data each trains on, how its MLP neurons are treated during training,
and the *views* it is evaluated under.

A view is a named neuron scale (a function of the batch's sequence IDs). Every kind has a
`default` view: the model that post-hoc methods edit when given that checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .config import ExperimentConfig
from .errors import UserError, did_you_mean
from .interventions import per_example_scale
from .masks import eval_scale, neuron_mask, split_neurons

KINDS = {
    "standard": "plain training on the setting",
    "standard-no-rep": "the repeated stories seen once (dedup reference: a model that never memorized)",
    "gradient-masked": "MLP weight gradients routed: repeated sequences update only the memorization "
                       "block, the others only the generalization block",
    "memsinks": "sequence-tied dropout: shared neurons plus a per-sequence-ID subset of the sink pool",
}

ViewFn = Callable[[torch.Tensor], "torch.Tensor | None"]


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UserError(f"unknown checkpoint kind '{kind}'", did_you_mean(kind, KINDS))
    return kind


def repetitions_for(kind: str, config: ExperimentConfig) -> int:
    return 1 if kind == "standard-no-rep" else config.data.repetitions


def memorization_block(d_mlp: int, generalization_fraction: float) -> tuple[int, int]:
    """Gradient-masked split: neurons [0, n_gen) generalize, [n_gen, d_mlp) memorize."""
    n_gen, n_mem = split_neurons(d_mlp, generalization_fraction)
    return n_gen, n_mem


def training_scale(kind: str, config: ExperimentConfig, d_mlp: int, ids: torch.Tensor):
    """The NeuronScaler scale used in the training forward pass (None: all neurons as they are)."""
    if kind != "memsinks":
        return None
    ms = config.memsinks
    return per_example_scale(neuron_mask(ids, d_mlp, ms.shared_fraction, ms.sink_fraction, ms.mask_fn, ms.salt))


def routing_mask(kind: str, config: ExperimentConfig, d_mlp: int, is_repeated: torch.Tensor):
    """[batch, d_mlp] 0/1 of the MLP neurons whose weights each example may update (gradient-masked)."""
    if kind != "gradient-masked":
        return None
    n_gen, _ = memorization_block(d_mlp, config.gradient_masked.generalization_fraction)
    memorization = torch.arange(d_mlp, device=is_repeated.device) >= n_gen
    return torch.where(is_repeated[:, None], memorization[None, :], ~memorization[None, :]).float()


@dataclass
class View:
    name: str
    description: str
    scale_for: ViewFn | None


def views(kind: str, config: ExperimentConfig, d_mlp: int) -> dict[str, View]:
    """Named evaluation views of a checkpoint; `default` aliases the one post-hoc methods edit."""
    if kind in ("standard", "standard-no-rep"):
        found = {"model": View("model", "the trained model", None)}
        default = "model"
    elif kind == "gradient-masked":
        n_gen, _ = memorization_block(d_mlp, config.gradient_masked.generalization_fraction)
        keep = torch.ones(d_mlp)
        keep[n_gen:] = 0.0
        dropped = keep[None, None, None, :]
        found = {
            "keep-all": View("keep-all", "every neuron kept", None),
            "dropout": View("dropout", "memorization block zeroed", lambda ids: dropped.to(ids.device)),
        }
        default = "keep-all"
    else:
        ms = config.memsinks

        def fixed(mode):
            scale = per_example_scale(eval_scale(mode, d_mlp, ms.shared_fraction, ms.sink_fraction))
            return lambda ids: scale.to(ids.device)

        found = {
            "drop": View("drop", "sinks zeroed, shared neurons rescaled to the training activation mass",
                         fixed("drop")),
            "drop-unscaled": View("drop-unscaled", "sinks zeroed, shared neurons unscaled", fixed("drop-unscaled")),
            "mean": View("mean", "every sink scaled by p (its expected training value)", fixed("mean")),
            "own": View("own", "each sequence's own training mask (memorization kept)",
                        lambda ids: training_scale("memsinks", config, d_mlp, ids)),
        }
        default = "mean"
    found["default"] = found[default]
    return found


def validation_view(kind: str) -> str:
    """The view whose validation loss is logged during training (the deployable model)."""
    return {"gradient-masked": "dropout", "memsinks": "drop"}.get(kind, "model")
