"""The method interfaces. A method is a small class overriding one hook; its constructor
arguments are its hyperparameters, mirrored one-to-one by `baselines/<name>.yaml`.

- `NeuronLocalizer.score(model, context) -> Tensor[layers, d_mlp]`: how strongly each MLP hidden
  neuron carries the target sequences. The harness drops the top r fraction in each layer over a
  grid of r (`ratios`) and scores every point.
- `ModelEditor.edit(model, context, knob) -> model`: an edited copy of the model for one value of
  its knob (steps or strength) from `knob_grid`. Editors whose knob is a step count may override
  `edit_sweep` to walk the grid incrementally instead of restarting for each point. The walk stops
  at the first point past 0.5 nats of degradation (`stops_past_budgets`).

The model handed to a method is a plain HF causal LM (a checkpoint view is folded into its
weights first); `context` carries the target (memorized) and retain (non-memorized) sequences.

Each method type turns its hook into a *sweep* (`sweep_states`): the model states, one per value
of its knob, that the run loop evaluates. The run loop never asks which type it holds.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import ClassVar, Iterator

import torch
from torch import nn

from ..errors import UserError
from ..evaluate import Batch, batches, token_nll
from ..interventions import drop_neurons_scale
from ..models import mlp_shape
from ..setting import SequenceSet

# (knob value, model, neuron scale for NeuronScaler or None): one state of a method's sweep
SweepState = tuple[object, nn.Module, "torch.Tensor | None"]


@dataclass
class MethodContext:
    """What a method may look at: the sequences to forget and sequences to keep intact."""

    targets: SequenceSet      # memorized sequences: localize / forget these
    retain: SequenceSet       # non-memorized training sequences (anchor for KL terms)
    pad_id: int
    device: torch.device
    seed: int = 0
    batch_size: int = 16
    config: object = None     # the ExperimentConfig of the run (training-time methods read their kind's section)
    # the forget sequences with their extraction spans (a prefix, then the continuation or canary),
    # for methods that need a prefix whatever the forget span (co-edit perturbs it); None: `targets`
    extraction_targets: SequenceSet | None = None

    def with_prefix(self) -> SequenceSet:
        """The forget sequences as prefix + extraction span (what a prefix-based method edits)."""
        return self.extraction_targets if self.extraction_targets is not None else self.targets

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
    knob: ClassVar[str] = ""
    default_sweep: ClassVar[dict] = {}
    resource_knobs: ClassVar[tuple[str, ...]] = ()   # hyperparameters that change speed or memory, never a result
    # stop walking the knob grid at the first point degrading the model by AUC_MAX_DEGRADATION
    # nats or more (no later point counts in a budget or the Pareto AUC): for knobs along which
    # degradation only grows, such as step counts, so a long grid costs little where it is not needed
    stops_past_budgets: ClassVar[bool] = False
    checkpoint_kind: ClassVar[str | None] = None   # runs only on this kind (None: any checkpoint, standard by default)
    needs: ClassVar[str] = "forget set"            # what it needs beyond the model (the leaderboard's needs column)
    # hyperparameters added after records existed, at the value that reproduces the behaviour
    # before them: at that value they are left out of the identity (those records keep theirs)
    legacy_values: ClassVar[dict] = {}

    @classmethod
    def hyperparameter_names(cls) -> list[str]:
        """Constructor arguments; each is stored as an attribute of the same name."""
        params = inspect.signature(cls.__init__).parameters
        return [name for name, p in params.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def hyperparameters(self) -> dict:
        """The hyperparameters that define the run (its identity); resource knobs, and hyperparameters
        at their `legacy_values`, are left out."""
        return {name: getattr(self, name) for name in self.hyperparameter_names()
                if name not in self.resource_knobs
                and not (name in self.legacy_values and getattr(self, name) == self.legacy_values[name])}

    def resources(self) -> dict:
        """The resource knobs' values (recorded for provenance, never part of an identity)."""
        return {name: getattr(self, name) for name in self.resource_knobs}

    def knob_grid(self, sweep: dict) -> list:
        """The validated knob values of this run's sweep (from `sweep.*` of its baseline YAML)."""
        return []

    def sweep_states(self, model: nn.Module, context: MethodContext, grid: list) -> Iterator[SweepState]:
        raise NotImplementedError

    def scored_against(self) -> str | None:
        """The checkpoint kind forgetting is measured from, if not the one the method runs on."""
        return None

    def record_extras(self, model: nn.Module, context: MethodContext) -> dict:
        """Method-specific facts for the record, asked after the sweep."""
        return {}


class NeuronLocalizer(Method):
    """Override `score`. Constructor arguments are hyperparameters."""

    method_type = "localizer"
    knob = "r"
    default_sweep = {"ratios": [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]}

    def score(self, model: nn.Module, context: MethodContext) -> torch.Tensor:
        """[layers, d_mlp] scores; higher = more responsible for the targets (dropped first)."""
        raise NotImplementedError

    def knob_grid(self, sweep: dict) -> list:
        ratios = sweep.get("ratios")
        if not isinstance(ratios, list) or not ratios or any(
                not isinstance(r, (int, float)) or not 0 < r < 1 for r in ratios):
            raise UserError(f"sweep.ratios={ratios} must be a list of fractions in (0, 1)",
                            "e.g. --set sweep.ratios=[0.01,0.05,0.1]")
        return sorted(float(r) for r in ratios)

    def sweep_states(self, model, context, grid):
        """Score once, then drop the top r of each layer for every r of the grid."""
        self.scores = check_scores(self.score(model, context), mlp_shape(model), self.name)
        for ratio in grid:
            yield ratio, model, drop_neurons_scale(top_r_drop(self.scores, ratio)).to(context.device)

    def record_extras(self, model, context):
        return {"scores_top_per_layer": self.scores.topk(min(5, self.scores.shape[1]), dim=1).indices.tolist()}


def check_scores(scores, shape: tuple[int, int], name: str) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor):
        raise UserError(f"method '{name}' returned {type(scores).__name__}, not a tensor",
                        f"return a float tensor of shape [layers, d_mlp] = {list(shape)}")
    if tuple(scores.shape) != tuple(shape):
        raise UserError(f"method '{name}' returned scores of shape {list(scores.shape)}",
                        f"return shape [layers, d_mlp] = {list(shape)}")
    if not torch.isfinite(scores).all():
        raise UserError(f"method '{name}' returned NaN or infinite scores", "return finite scores")
    return scores.detach().float().cpu()


def top_r_drop(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Boolean [layers, d_mlp]: the top round(r * d_mlp) (at least 1) neurons of each layer."""
    k = max(1, int(round(ratio * scores.shape[1])))
    drop = torch.zeros_like(scores, dtype=torch.bool)
    return drop.scatter_(1, scores.topk(k, dim=1).indices, True)


class ModelEditor(Method):
    """Override `edit` (and optionally `edit_sweep`). Constructor arguments are hyperparameters."""

    method_type = "editor"
    knob = "steps"
    needs = "forget set, retain set"
    # long enough for the papers' smallest learning rates to reach the largest budget; the walk
    # stops past 0.5 nats of degradation (stops_past_budgets), so fast configurations stop early
    default_sweep = {"steps": [1, 2, 5, 10, 20, 50, 100]}
    stops_past_budgets = True

    def edit(self, model: nn.Module, context: MethodContext, knob) -> nn.Module:
        """An edited copy of `model` at knob value `knob`; `model` itself must not change."""
        raise NotImplementedError

    def edit_sweep(self, model: nn.Module, context: MethodContext, knobs) -> Iterator[tuple[object, nn.Module]]:
        for knob in knobs:
            yield knob, self.edit(model, context, knob)

    def knob_grid(self, sweep: dict) -> list:
        steps = sweep.get("steps")
        if not isinstance(steps, list) or not steps or any(not isinstance(s, int) or s < 1 for s in steps):
            raise UserError(f"sweep.steps={steps} must be a list of positive integers", "e.g. --set sweep.steps=[1,5,10]")
        return sorted(steps)

    def sweep_states(self, model, context, grid):
        for knob, edited in self.edit_sweep(model, context, grid):
            if not isinstance(edited, nn.Module):
                raise UserError(f"method '{self.name}' returned {type(edited).__name__} at knob {knob}, not a model",
                                "return an edited copy of the model from edit()")
            yield knob, edited, None


def frozen_copy(model: nn.Module) -> nn.Module:
    duplicate = copy.deepcopy(model)
    for parameter in duplicate.parameters():
        parameter.requires_grad_(False)
    return duplicate.eval()
