"""An example plugin: score MLP neurons by how much more they fire on the memorized sequences
than on ordinary training text (a cheap, gradient-free localizer).

Installed with `pip install examples/example-plugin`, it appears in `memsink-bench ls methods`
as `activation-contrast` and runs with `memsink-bench run --method activation-contrast ...`.
"""

from __future__ import annotations

import torch

from memsink_bench.methods.base import MethodContext, NeuronLocalizer
from memsink_bench.models import mlp_layout


class ActivationContrast(NeuronLocalizer):
    name = "activation-contrast"
    summary = "example plugin: mean |activation| on memorized targets minus on retain text"

    def __init__(self, normalize: bool = True):
        self.normalize = normalize

    def _mean_abs_activation(self, model, batches) -> torch.Tensor:
        """[layers, d_mlp] mean |hidden activation| over the non-padding positions of `batches`."""
        layers = mlp_layout(model)
        totals = torch.zeros(len(layers), layers[0].d_mlp)
        count = 0
        captured = {}
        handles = [layer.down.register_forward_pre_hook(
            lambda module, args, index=index: captured.__setitem__(index, args[0].detach()))
            for index, layer in enumerate(layers)]
        try:
            with torch.no_grad():
                for batch in batches:
                    model(input_ids=batch.input_ids)
                    valid = (batch.labels != -100).unsqueeze(-1)
                    for index in range(len(layers)):
                        totals[index] += (captured[index].abs() * valid).sum(dim=(0, 1)).cpu()
                    count += int(valid.sum())
        finally:
            for handle in handles:
                handle.remove()
        return totals / max(count, 1)

    def score(self, model, context: MethodContext) -> torch.Tensor:
        target = self._mean_abs_activation(model, context.target_batches())
        retain = self._mean_abs_activation(model, context.retain_batches())
        contrast = target - retain
        if self.normalize:
            contrast = contrast / (retain + 1e-6)
        return contrast


__all__ = ["ActivationContrast"]
