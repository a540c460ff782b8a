"""The two method interfaces. A method is a small class overriding one hook; its constructor
arguments are its hyperparameters, mirrored one-to-one by `baselines/<name>.yaml`.

- `NeuronLocalizer.score(model, context) -> Tensor[layers, d_mlp]`: how strongly each MLP hidden
  neuron carries the target sequences. The harness drops the top r fraction in each layer over a
  grid of r (`ratios`) and scores every point.
- `ModelEditor.edit(model, context, knob) -> model`: an edited copy of the model for one value of
  its knob (steps or strength) from `knob_grid`. Editors whose knob is a step count may override
  `edit_sweep` to walk the grid incrementally instead of restarting for each point.

The model handed to a method is a plain HF causal LM (a checkpoint view is folded into its
weights first); `context` carries the target (memorized) and retain (non-memorized) sequences.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import ClassVar, Iterator

import torch
from torch import nn

from ..evaluate import Batch, batches, token_nll
from ..setting import SequenceSet


@dataclass
class MethodContext:
    """What a method may look at: the sequences to forget and sequences to keep intact."""

    targets: SequenceSet      # memorized sequences: localize / forget these
    retain: SequenceSet       # non-memorized training sequences (anchor for KL terms)
    pad_id: int
    device: torch.device
    seed: int = 0
    batch_size: int = 16

    def target_batches(self) -> Iterator[Batch]:
        for batch in batches(self.targets, self.batch_size, self.pad_id):
            yield batch.to(self.device)

    def retain_batches(self) -> Iterator[Batch]:
        for batch in batches(self.retain, self.batch_size, self.pad_id):
            yield batch.to(self.device)

    def generator(self, salt: int = 0) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + salt)


def target_nll(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Mean NLL over the target-span tokens of a batch (canary or continuation)."""
    nll = token_nll(model, batch)
    return (nll * batch.target_mask).sum() / batch.target_mask.sum().clamp_min(1)


class Method:
    """Common parts: name, one-line summary, hyperparameters from the constructor signature."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    method_type: ClassVar[str] = ""

    @classmethod
    def hyperparameter_names(cls) -> list[str]:
        """Constructor arguments; each is stored as an attribute of the same name."""
        params = inspect.signature(cls.__init__).parameters
        return [name for name, p in params.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def hyperparameters(self) -> dict:
        return {name: getattr(self, name) for name in self.hyperparameter_names()}


class NeuronLocalizer(Method):
    """Override `score`. Constructor arguments are hyperparameters."""

    method_type = "localizer"

    def score(self, model: nn.Module, context: MethodContext) -> torch.Tensor:
        """[layers, d_mlp] scores; higher = more responsible for the targets (dropped first)."""
        raise NotImplementedError


class ModelEditor(Method):
    """Override `edit` (and optionally `edit_sweep`). Constructor arguments are hyperparameters."""

    method_type = "editor"
    knob: ClassVar[str] = "steps"

    def edit(self, model: nn.Module, context: MethodContext, knob) -> nn.Module:
        """An edited copy of `model` at knob value `knob`; `model` itself must not change."""
        raise NotImplementedError

    def edit_sweep(self, model: nn.Module, context: MethodContext, knobs) -> Iterator[tuple[object, nn.Module]]:
        for knob in knobs:
            yield knob, self.edit(model, context, knob)


def frozen_copy(model: nn.Module) -> nn.Module:
    duplicate = copy.deepcopy(model)
    for parameter in duplicate.parameters():
        parameter.requires_grad_(False)
    return duplicate.eval()
