"""Gradient masking: repeated sequences update only the memorization block of each MLP, the
others only the generalization block; the forward pass is unchanged. The memorization block is
the last (1 - g) of each MLP's hidden neurons."""

from __future__ import annotations

import torch

from ..config import ExperimentConfig
from ..masks import split_neurons
from .base import Kind, View


def memorization_block(d_mlp: int, generalization_fraction: float) -> tuple[int, int]:
    """(n_gen, n_mem): neurons [0, n_gen) generalize, [n_gen, d_mlp) memorize."""
    return split_neurons(d_mlp, generalization_fraction)


class GradientMasked(Kind):
    name = "gradient-masked"
    description = ("MLP weight gradients routed: repeated sequences update only the memorization "
                   "block, the others only the generalization block")
    section = "gradient_masked"
    default_view = "keep-all"
    validation_view = "dropout"
    replaces = "standard"
    routes_gradients = True

    def _kept(self, config: ExperimentConfig, d_mlp: int, t: float) -> torch.Tensor:
        """[d_mlp]: 1 on the generalization block, 1 - t on the memorization block."""
        n_gen, _ = memorization_block(d_mlp, config.gradient_masked.generalization_fraction)
        scale = torch.ones(d_mlp)
        scale[n_gen:] = 1 - t
        return scale

    def routing_mask(self, config, d_mlp, is_repeated):
        n_gen, _ = memorization_block(d_mlp, config.gradient_masked.generalization_fraction)
        memorization = torch.arange(d_mlp, device=is_repeated.device) >= n_gen
        return torch.where(is_repeated[:, None], memorization[None, :], ~memorization[None, :]).float()

    def own_views(self, config, d_mlp):
        dropped = self.removal_scale(config, d_mlp, 1.0)
        n_gen, _ = memorization_block(d_mlp, config.gradient_masked.generalization_fraction)
        rescaled = dropped * torch.where(dropped > 0, d_mlp / n_gen, 0.0)
        return {"keep-all": View("keep-all", "every neuron kept", None),
                "dropout": View("dropout", "memorization block zeroed", lambda ids: dropped.to(ids.device)),
                "dropout-rescaled": View("dropout-rescaled", "memorization block zeroed, the generalization block "
                                         "scaled by d_mlp / n_gen (MemSinks' drop-view rescaling)",
                                         lambda ids: rescaled.to(ids.device))}

    def removal_scale(self, config, d_mlp, t):
        return self._kept(config, d_mlp, t)[None, None, None, :]
