"""Gradient masking: repeated sequences update only the memorization block of each MLP, the
others only the generalization block; the forward pass is unchanged. The memorization block is
the last (1 - g) of each MLP's hidden neurons."""

from __future__ import annotations

import torch

from ..config import ExperimentConfig
from ..masks import split_neurons
from .base import Kind, View

DIAGNOSTIC_SEQUENCES = 64     # sequences per role the block shares are measured on during training


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

    def training_diagnostics(self, model, setting, config, d_mlp, pad_id):
        """Why dropping the memorization block may collapse the model, as it trains: the share of
        the MLP output the memorization block writes (mean over layers of ||W_out[mem] act[mem]||
        / (that + the generalization block's)) on held-out and on repeated sequences, and the
        validation loss with every neuron kept beside the logged one with the block dropped. A
        share on held-out text that grows while the dropped-block validation loss climbs away
        from the kept-all one is the network coming to rely on the block for all text."""
        from ..analyses.block_norms import block_output_norms
        from ..evaluate import sequence_losses

        n_gen, _ = memorization_block(d_mlp, config.gradient_masked.generalization_fraction)
        found, was_training = {}, model.training
        model.eval()
        try:
            for role, sequences in (("validation", setting.validation), ("repeated", setting.repeated)):
                subset = sequences.subset(range(min(DIAGNOSTIC_SEQUENCES, len(sequences))))
                norms = block_output_norms(model, subset, pad_id, n_gen)
                found[f"mem_block_share@{role}"] = float((norms[:, 1] / norms.sum(axis=1).clip(min=1e-12)).mean())
            found["val_loss@keep-all"] = sequence_losses(model, setting.validation, pad_id).summary()["loss"]
        finally:
            model.train(was_training)
        return found

    def removal_scale(self, config, d_mlp, t):
        return self._kept(config, d_mlp, t)[None, None, None, :]
