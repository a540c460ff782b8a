"""The training-time kinds as methods on their own checkpoints.

Their "removal" is switching neurons off, so their knob interpolates from the checkpoint's
default view (t = 0) to the full removal (t = 1):
- memsinks: sinks scaled by p (1 - t), shared neurons by 1 + t (c - 1), where c is the
  "drop" view's rescale factor (n_shared + p n_sinks) / n_shared; t = 1 is "sinks dropped".
- gradient-masked: the memorization block scaled by (1 - t); t = 1 is "dropout".
Their scores are measured against the *standard* checkpoint of the same setting, since they
replace standard training: forgetting = repeated loss after - repeated loss of standard.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..config import ExperimentConfig
from ..errors import UserError
from ..interventions import per_example_scale
from ..kinds import memorization_block, training_scale
from ..masks import split_neurons
from .base import Method


class TrainingTimeMethod(Method):
    method_type = "training"
    checkpoint_kind: ClassVar[str] = ""
    knob = "t"

    def __init__(self, drop_grid: tuple = (0.25, 0.5, 0.75, 1.0)):
        drop_grid = tuple(float(t) for t in drop_grid)
        if not drop_grid or any(not 0 < t <= 1 for t in drop_grid):
            raise UserError(f"drop_grid={list(drop_grid)} must hold values in (0, 1]",
                            "e.g. --set method.drop_grid=[0.5,1.0]")
        self.drop_grid = drop_grid

    def scale(self, config: ExperimentConfig, d_mlp: int, t: float) -> torch.Tensor:
        """[1, 1, 1, d_mlp] neuron scale at knob value t."""
        raise NotImplementedError


class MemSinksDrop(TrainingTimeMethod):
    name = "memsinks"
    summary = "MemSinks checkpoint: drop the sink neurons (and, per sequence, only its own sinks)"
    checkpoint_kind = "memsinks"

    def scale(self, config, d_mlp, t):
        ms = config.memsinks
        n_shared, n_sinks = split_neurons(d_mlp, ms.shared_fraction)
        rescale = (n_shared + ms.sink_fraction * n_sinks) / n_shared
        scale = torch.empty(d_mlp)
        scale[:n_shared] = 1 + t * (rescale - 1)
        scale[n_shared:] = ms.sink_fraction * (1 - t)
        return scale[None, None, None, :]

    @staticmethod
    def own_sinks_dropped(config: ExperimentConfig, d_mlp: int):
        """scale_for(ids): the default ("mean") view with only each sequence's own sinks zeroed."""
        ms = config.memsinks
        n_shared, _ = split_neurons(d_mlp, ms.shared_fraction)

        def scale_for(ids):
            own_sinks = training_scale("memsinks", config, d_mlp, ids)[0, :, 0, :].clone()  # [batch, d_mlp]
            own_sinks[:, :n_shared] = 0.0
            mean = torch.full_like(own_sinks, ms.sink_fraction)
            mean[:, :n_shared] = 1.0
            return per_example_scale(mean * (1 - own_sinks))
        return scale_for


class GradientMaskedDrop(TrainingTimeMethod):
    name = "gradient-masked"
    summary = "gradient-masked checkpoint: drop the memorization block"
    checkpoint_kind = "gradient-masked"

    def scale(self, config, d_mlp, t):
        n_gen, _ = memorization_block(d_mlp, config.gradient_masked.generalization_fraction)
        scale = torch.ones(d_mlp)
        scale[n_gen:] = 1 - t
        return scale[None, None, None, :]
