"""What a checkpoint kind is: the data it trains on, how its MLP neurons are treated during
training, the fields that enter its cache key, the *views* it is evaluated under, and (for the
training-time kinds) the removal curve that switches its memorization neurons off.

A view is a named neuron scale, a function of a batch's sequence IDs ([batch] int64 -> a
NeuronScaler scale, or None for the model as it is). Every kind has a `default` view: the model
post-hoc methods edit when given that checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch

from ..config import ExperimentConfig

ViewFn = Callable[[torch.Tensor], "torch.Tensor | None"]


@dataclass
class View:
    name: str
    description: str
    scale_for: ViewFn | None


class Kind:
    """One checkpoint kind. Subclasses override what differs from plain training."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    section: ClassVar[str | None] = None        # the config section it owns (enters its cache key)
    default_view: ClassVar[str] = "model"       # the view post-hoc methods edit
    validation_view: ClassVar[str] = "model"    # the deployable model whose validation loss is logged
    replaces: ClassVar[str | None] = None       # training-time kinds: the kind they are scored against
    routes_gradients: ClassVar[bool] = False    # per-example MLP weight-gradient routing during training

    def repetitions(self, config: ExperimentConfig) -> int:
        """How often each repeated sequence appears per epoch."""
        return config.data.repetitions

    def key_fields(self, config: ExperimentConfig) -> dict:
        """What, beyond setting, model and training config, determines this kind's weights."""
        return {self.section: vars(getattr(config, self.section))} if self.section else {}

    def training_scale(self, config: ExperimentConfig, d_mlp: int, ids: torch.Tensor) -> torch.Tensor | None:
        """The NeuronScaler scale of the training forward pass for a batch of IDs (None: unscaled)."""
        return None

    def routing_mask(self, config: ExperimentConfig, d_mlp: int, is_repeated: torch.Tensor) -> torch.Tensor | None:
        """[batch, d_mlp] 0/1: the MLP neurons whose weights each example may update (None: all)."""
        return None

    def own_views(self, config: ExperimentConfig, d_mlp: int) -> dict[str, View]:
        return {"model": View("model", "the trained model", None)}

    def views(self, config: ExperimentConfig, d_mlp: int) -> dict[str, View]:
        """Named evaluation views; `default` aliases the one post-hoc methods edit."""
        found = self.own_views(config, d_mlp)
        found["default"] = found[self.default_view]
        return found

    def training_diagnostics(self, model, setting, config: ExperimentConfig, d_mlp: int, pad_id: int) -> dict[str, float]:
        """Extra numbers logged at every evaluation during training (metrics.jsonl, the trackers)."""
        return {}

    def removal_scale(self, config: ExperimentConfig, d_mlp: int, t: float) -> torch.Tensor:
        """[1, 1, 1, d_mlp] neuron scale at removal strength t in (0, 1]: from the default view
        (t = 0) to the memorization neurons fully switched off (t = 1). Training-time kinds only."""
        raise NotImplementedError(f"kind '{self.name}' has no removal curve")
