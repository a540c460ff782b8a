"""An example plugin: score MLP neurons by how much more they fire on the memorized sequences
than on ordinary training text (a cheap, gradient-free localizer).

Installed with `pip install examples/example-plugin`, it appears in `memsink-bench ls methods`
as `activation-contrast` and runs with `memsink-bench run --method activation-contrast ...`.
"""

from memsink_bench.methods.base import NeuronLocalizer
from memsink_bench.methods.primitives import mean_activation


class ActivationContrast(NeuronLocalizer):
    name = "activation-contrast"
    summary = "example plugin: mean |activation| on memorized targets minus on retain text"

    def __init__(self, normalize: bool = True):
        self.normalize = normalize

    def score(self, model, context):
        target = mean_activation(model, context.target_batches())
        retain = mean_activation(model, context.retain_batches())
        contrast = target - retain
        return contrast / (retain + 1e-6) if self.normalize else contrast


__all__ = ["ActivationContrast"]
