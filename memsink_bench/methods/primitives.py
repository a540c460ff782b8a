"""What a method plugin needs, without hook plumbing: read MLP neuron activations (and their
gradients), drop or scale chosen neurons, and the per-token NLL of the target span.

An MLP neuron's activation is the hidden value after the nonlinearity, the input of the down
projection ([batch, pos, d_mlp] per layer) -- the same point every built-in method and every
checkpoint view acts on (`models.mlp_layout`), on GPT-2, GPT-Neo, GPT-NeoX and Llama-style MLPs.

    from memsink_bench.methods.primitives import capture_activations, mean_activation, target_token_nll

    with capture_activations(model, grad=True) as captured:
        target_token_nll(model, batch).sum().backward()
    attribution = captured.sum_over_tokens(batch.target_mask, times_gradient=True)   # [layers, d_mlp]
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch
from torch import nn

from ..evaluate import Batch, token_nll
from ..interventions import drop_neurons_scale, scaled_neurons as _scaled_neurons
from ..models import mlp_layout


@dataclass
class Captured:
    """Per layer, the activations of the last forward pass ([batch, pos, d_mlp] each) and, after a
    backward pass, their gradients (same shapes; only with `grad=True`)."""

    activations: list[torch.Tensor | None]
    gradients: list[torch.Tensor | None] = field(default_factory=list)

    def sum_over_tokens(self, mask: torch.Tensor, times_gradient: bool = False, absolute: bool = False) -> torch.Tensor:
        """[layers, d_mlp]: the activations (or activation x gradient) summed over the positions
        where `mask` ([batch, pos] bool, e.g. `batch.target_mask`) is True."""
        weight = mask.unsqueeze(-1).to(self.activations[0].dtype)
        rows = []
        for index, activation in enumerate(self.activations):
            value = activation * self.gradients[index] if times_gradient else activation
            rows.append(((value.abs() if absolute else value) * weight).sum(dim=(0, 1)))
        return torch.stack(rows).detach().float().cpu()


@contextlib.contextmanager
def capture_activations(model: nn.Module, grad: bool = False) -> Iterator[Captured]:
    """Record every MLP layer's neuron activations on each forward pass inside the block (the last
    pass is kept); with `grad=True` also the gradients a backward pass sends into them."""
    layers = mlp_layout(model)
    captured = Captured([None] * len(layers), [None] * len(layers))

    def keep(index):
        def hook(_module, args):
            activation = args[0]
            captured.activations[index] = activation if grad else activation.detach()
            if grad and activation.requires_grad:
                activation.register_hook(lambda g: captured.gradients.__setitem__(index, g.detach()))
        return hook

    handles = [layer.down.register_forward_pre_hook(keep(index)) for index, layer in enumerate(layers)]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def mean_activation(model: nn.Module, batches: Iterable[Batch], absolute: bool = True) -> torch.Tensor:
    """[layers, d_mlp] mean (|)activation(|) over every non-padding position of `batches`."""
    total, count = None, 0
    for batch in batches:
        with capture_activations(model) as captured:
            model(input_ids=batch.input_ids)
        valid = batch.labels != -100
        summed = captured.sum_over_tokens(valid, absolute=absolute)
        total = summed if total is None else total + summed
        count += int(valid.sum())
    if total is None:
        raise ValueError("mean_activation needs at least one batch")
    return total / max(count, 1)


def target_token_nll(model: nn.Module, batch: Batch) -> torch.Tensor:
    """[batch, pos] next-token NLL on the target span (canary or continuation), 0 elsewhere."""
    return token_nll(model, batch) * batch.target_mask


@contextlib.contextmanager
def scaled_neurons(model: nn.Module, scale: torch.Tensor):
    """Inside the block, multiply the neuron activations by `scale` (broadcastable to
    [layers, batch, pos, d_mlp], e.g. [layers, 1, 1, d_mlp])."""
    with _scaled_neurons(model, scale):
        yield model


@contextlib.contextmanager
def dropped_neurons(model: nn.Module, drop: torch.Tensor):
    """Inside the block, zero the neurons where `drop` ([layers, d_mlp] bool) is True."""
    device = next(model.parameters()).device
    with _scaled_neurons(model, drop_neurons_scale(drop.bool()).to(device)):
        yield model


__all__ = ["Captured", "capture_activations", "mean_activation", "target_token_nll", "scaled_neurons",
           "dropped_neurons"]
