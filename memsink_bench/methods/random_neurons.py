"""Control localizer: random scores, so dropping the top r drops r of each layer at random."""

from __future__ import annotations

import torch

from ..models import mlp_shape
from .base import MethodContext, NeuronLocalizer


class RandomNeurons(NeuronLocalizer):
    name = "random-neurons"
    summary = "control: drop a random r of the MLP neurons in each layer"
    needs = "nothing"

    def __init__(self, salt: int = 0):
        self.salt = salt

    def score(self, model, context: MethodContext) -> torch.Tensor:
        return torch.rand(mlp_shape(model), generator=context.generator(salt=101 + self.salt))
