"""The training-time kinds as methods on their own checkpoints.

Their "removal" is switching neurons off, so their knob t interpolates from the checkpoint's
default view (t = 0) to the full removal (t = 1), along the removal curve the kind defines
(`Kind.removal_scale`: for MemSinks, sinks scaled by p (1 - t) and shared neurons rescaled towards
the drop view; for gradient masking, the memorization block scaled by 1 - t).
Their scores are measured against the checkpoint kind they replace (`Kind.replaces`, standard):
forgetting = repeated loss after - repeated loss of the standard model.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..evaluate import sequence_losses
from ..kinds import get_kind
from ..models import mlp_shape
from .base import Method


class TrainingTimeMethod(Method):
    method_type = "training"
    knob = "t"

    def __init__(self, drop_grid: tuple = (0.25, 0.5, 0.75, 1.0)):
        drop_grid = tuple(float(t) for t in drop_grid)
        if not drop_grid or any(not 0 < t <= 1 for t in drop_grid):
            raise UserError(f"drop_grid={list(drop_grid)} must hold values in (0, 1]",
                            "e.g. --set method.drop_grid=[0.5,1.0]")
        self.drop_grid = drop_grid

    def knob_grid(self, sweep: dict) -> list:
        return list(self.drop_grid)

    def scored_against(self) -> str:
        return get_kind(self.checkpoint_kind).replaces

    def sweep_states(self, model, context, grid):
        kind, d_mlp = get_kind(self.checkpoint_kind), mlp_shape(model)[1]
        for t in grid:
            yield t, model, kind.removal_scale(context.config, d_mlp, t).to(context.device)


class MemSinksDrop(TrainingTimeMethod):
    name = "memsinks"
    needs = "retraining from scratch, sequence IDs at training time"
    summary = "MemSinks checkpoint: drop the sink neurons (and, per sequence, only its own sinks)"
    checkpoint_kind = "memsinks"

    def record_extras(self, model, context):
        """The repeated loss with only each sequence's own sinks dropped (the rest as in `mean`)."""
        scale_for = get_kind(self.checkpoint_kind).own_sinks_dropped(context.config, mlp_shape(model)[1])
        own = sequence_losses(model, context.targets, context.pad_id, scale_for=scale_for).summary()
        return {"own_sinks_dropped_repeated_loss": own["loss"],
                "own_sinks_dropped_repeated_target_loss": own["target_loss"]}


    def sweep_states(self, model, context, grid):
        """All sinks dropped along the removal curve, or, when the run forgets only some repeated
        sequences (`scoring.forget_count`), the union of their own sinks scaled by p (1 - t)."""
        scoring = getattr(context.config, "scoring", None)
        if scoring is None or not scoring.forget_count:
            yield from super().sweep_states(model, context, grid)
            return
        kind, d_mlp = get_kind(self.checkpoint_kind), mlp_shape(model)[1]
        ids = torch.tensor(context.targets.ids)
        for t in grid:
            yield t, model, kind.union_removal_scale(context.config, d_mlp, ids, t).to(context.device)


class GradientMaskedDrop(TrainingTimeMethod):
    name = "gradient-masked"
    needs = "retraining from scratch, which sequences repeat"
    summary = "gradient-masked checkpoint: drop the memorization block"
    checkpoint_kind = "gradient-masked"
