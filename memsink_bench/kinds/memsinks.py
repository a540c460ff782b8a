"""MemSinks (sequence-tied dropout): each MLP's hidden neurons are g shared neurons followed by a
sink pool; a sequence's ID switches on its own fraction p of the pool at every repetition
(`masks.neuron_mask`). Evaluation drops the sinks; the views below are the ways of doing so."""

from __future__ import annotations

import torch

from ..config import ExperimentConfig
from ..interventions import per_example_scale
from ..masks import drop_rescale, eval_scale, neuron_mask, split_neurons
from .base import Kind, View


class MemSinks(Kind):
    name = "memsinks"
    description = "sequence-tied dropout: shared neurons plus a per-sequence-ID subset of the sink pool"
    section = "memsinks"
    default_view = "mean"
    validation_view = "drop"
    replaces = "standard"

    def training_scale(self, config, d_mlp, ids):
        ms = config.memsinks
        return per_example_scale(neuron_mask(ids, d_mlp, ms.shared_fraction, ms.sink_fraction, ms.mask_fn, ms.salt))

    def own_views(self, config, d_mlp):
        ms = config.memsinks

        def fixed(mode):
            scale = per_example_scale(eval_scale(mode, d_mlp, ms.shared_fraction, ms.sink_fraction))
            return lambda ids: scale.to(ids.device)

        return {
            "drop": View("drop", "sinks zeroed, shared neurons rescaled to the training activation mass",
                         fixed("drop")),
            "drop-unscaled": View("drop-unscaled", "sinks zeroed, shared neurons unscaled", fixed("drop-unscaled")),
            "mean": View("mean", "every sink scaled by p (its expected training value)", fixed("mean")),
            "own": View("own", "each sequence's own training mask (memorization kept)",
                        lambda ids: self.training_scale(config, d_mlp, ids)),
        }

    def removal_scale(self, config, d_mlp, t):
        """Sinks scaled by p (1 - t), shared neurons by 1 + t (c - 1), c = the drop view's rescale;
        t = 0 is the `mean` view, t = 1 the `drop` view."""
        ms = config.memsinks
        n_shared, n_sinks = split_neurons(d_mlp, ms.shared_fraction)
        scale = torch.empty(d_mlp)
        scale[:n_shared] = 1 + t * (drop_rescale(n_shared, n_sinks, ms.sink_fraction) - 1)
        scale[n_shared:] = ms.sink_fraction * (1 - t)
        return scale[None, None, None, :]

    def union_removal_scale(self, config: ExperimentConfig, d_mlp: int, ids: torch.Tensor, t: float) -> torch.Tensor:
        """[1, 1, 1, d_mlp]: the `mean` view with the union of the own sinks of sequences `ids`
        scaled by p (1 - t): forgetting only those sequences, one deployable model for all text."""
        ms = config.memsinks
        n_shared, _ = split_neurons(d_mlp, ms.shared_fraction)
        union = (self.training_scale(config, d_mlp, ids)[0, :, 0, :] > 0).any(dim=0)     # [d_mlp]
        union[:n_shared] = False                                                        # sinks only
        scale = eval_scale("mean", d_mlp, ms.shared_fraction, ms.sink_fraction)[0].clone()
        scale[union] *= 1 - t
        return scale[None, None, None, :]

    def own_sinks_dropped(self, config: ExperimentConfig, d_mlp: int):
        """scale_for(ids): the default (`mean`) view with only each sequence's own sinks zeroed."""
        ms = config.memsinks
        n_shared, _ = split_neurons(d_mlp, ms.shared_fraction)

        def scale_for(ids):
            own_sinks = self.training_scale(config, d_mlp, ids)[0, :, 0, :].clone()  # [batch, d_mlp]
            own_sinks[:, :n_shared] = 0.0
            mean = torch.full_like(own_sinks, ms.sink_fraction)
            mean[:, :n_shared] = 1.0
            return per_example_scale(mean * (1 - own_sinks))
        return scale_for
