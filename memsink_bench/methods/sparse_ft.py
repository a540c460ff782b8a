"""High-gradient sparse fine-tuning (Stoehr et al.) and its random-mask control.

The mask: the top `fraction` (0.1%) of attention and MLP weight-matrix entries by |gradient of
the contrastive objective| at the unedited model, over all matrices together. The mask is frozen
and Adam (no weight decay: the reference code's decay silently moved every weight) takes steps
that move only masked entries. The knob is the number of steps.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from .base import MethodContext
from .co_unlearn import ContrastiveUnlearning
from .editing import contrastive_gradient_magnitudes, editable_matrices, top_fraction_masks


class SparseFineTuning(ContrastiveUnlearning):
    name = "sparse-ft"
    summary = "top-0.1% |grad| of the contrastive objective over attention+MLP matrices, then masked Adam steps"

    def __init__(self, fraction: float = 0.001, lr: float = 1e-5, nll_weight: float = 0.1,
                 kl: str = "current||original"):
        super().__init__(lr=lr, nll_weight=nll_weight, kl=kl, parameters="matrices")
        if not 0 < fraction <= 1:
            raise UserError(f"fraction={fraction} is outside (0, 1]", "set method.fraction, e.g. 0.001 for 0.1%")
        self.fraction = fraction

    def masks(self, model, context: MethodContext) -> dict[str, torch.Tensor]:
        return top_fraction_masks(contrastive_gradient_magnitudes(model, context, self.nll_weight, self.kl),
                                  self.fraction)


class RandomSparseFineTuning(SparseFineTuning):
    """Control: the same masked steps on a random `fraction` of the same matrices."""

    name = "random-sparse-ft"
    summary = "control: sparse fine-tuning on a random 0.1% of attention+MLP matrix entries"

    def masks(self, model, context: MethodContext) -> dict[str, torch.Tensor]:
        generator = context.generator(salt=17)
        scores = {name: torch.rand(p.shape, generator=generator).to(p.device)
                  for name, p in editable_matrices(model).items()}
        return top_fraction_masks(scores, self.fraction)
