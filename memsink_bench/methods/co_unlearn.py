"""Contrastive-objective unlearning (Stoehr et al. Eq. 3, after Maini et al. 2023).

Adam on the contrastive objective over the parameters Stoehr et al. train: the attention and MLP
weight matrices, no embedding, position embedding, unembedding or bias (`parameters="matrices"`;
"all" trains every parameter), with the paper's KL(current || original) on the retain set
(`kl`; see editing.py). The knob is the number of Adam steps. `edit_sweep` walks the step grid on
one working copy: the model after 10 steps is the model after 5 steps plus 5 more, exactly as if
restarted. Subclasses restrict which weight entries may move by overriding `masks`.
"""

from __future__ import annotations

import copy

import torch

from ..errors import UserError
from .base import MethodContext, ModelEditor, frozen_copy
from .editing import KL_DIRECTIONS, PARAMETER_SETS, unlearning_steps


class ContrastiveUnlearning(ModelEditor):
    name = "co-unlearn"
    summary = ("Adam on attention+MLP matrices: -nll_weight * NLL(memorized) + KL(current || original) "
               "on retain text")
    knob = "steps"

    def __init__(self, lr: float = 1e-5, nll_weight: float = 0.1, kl: str = "current||original",
                 parameters: str = "matrices"):
        if lr <= 0:
            raise UserError(f"lr={lr} must be positive", "set method.lr, e.g. 1e-5")
        if nll_weight <= 0:
            raise UserError(f"nll_weight={nll_weight} must be positive", "set method.nll_weight, e.g. 0.1")
        if kl not in KL_DIRECTIONS:
            raise UserError(f"method.kl='{kl}' is not a KL direction", f"use one of {', '.join(KL_DIRECTIONS)}")
        if parameters not in PARAMETER_SETS:
            raise UserError(f"method.parameters='{parameters}' is not a parameter set",
                            f"use one of {', '.join(PARAMETER_SETS)}")
        self.lr, self.nll_weight, self.kl, self.parameters = lr, nll_weight, kl, parameters

    def masks(self, model, context: MethodContext) -> dict[str, torch.Tensor] | None:
        """Which entries of the editable matrices may move; None: every weight."""
        return None

    def edit(self, model, context: MethodContext, knob):
        return next(iter(self.edit_sweep(model, context, [knob])))[1]

    def edit_sweep(self, model, context: MethodContext, knobs):
        masks = self.masks(model, context)
        original = frozen_copy(model)
        working = copy.deepcopy(model)
        optimizer, done = None, 0
        for steps in sorted(int(k) for k in knobs):
            optimizer = unlearning_steps(working, original, context, steps - done, self.lr, self.nll_weight,
                                         masks, optimizer, kl=self.kl, parameters=self.parameters)
            done = steps
            yield steps, working
