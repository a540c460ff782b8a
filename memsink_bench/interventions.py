"""Interventions on MLP hidden neurons, as hooks on named points rather than edits of model code.

`NeuronScaler` multiplies the hidden activation (after the nonlinearity, before the
down-projection) by a scale tensor: MemSinks masks, dropping a gradient-masked model's
memorization block, dropping the top-r neurons a localizer found, hard-concrete gates.

`GradientRouter` leaves the forward pass alone and routes MLP *weight* gradients per example:
an example's gradient reaches only the MLP weights of the neurons it is allowed to update (the
up-projection columns and bias entries, and the down-projection rows, of those neurons).
Gradients into the rest of the network flow through every neuron as usual.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .models import mlp_layout, weight_layout


class NeuronScaler:
    """Scale MLP hidden activations by `scale`, a tensor broadcastable to
    [layers, batch, pos, d_mlp] (use size 1 for any axis that does not vary).

    While `scale` is None the hooks pass activations through untouched.
    """

    def __init__(self, model: nn.Module):
        self.scale: torch.Tensor | None = None
        self._handles = [
            layer.down.register_forward_pre_hook(self._make_hook(index))
            for index, layer in enumerate(mlp_layout(model))
        ]

    def _make_hook(self, layer_index: int):
        def hook(module, args):
            if self.scale is None:
                return None
            scale = self.scale[layer_index if self.scale.shape[0] > 1 else 0]
            return (args[0] * scale.to(args[0].dtype),) + tuple(args[1:])
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


@contextlib.contextmanager
def scaled_neurons(model: nn.Module, scale: torch.Tensor | None):
    """Run the model with hidden activations multiplied by `scale` (see NeuronScaler)."""
    scaler = NeuronScaler(model)
    scaler.scale = scale
    try:
        yield scaler
    finally:
        scaler.remove()


def per_layer_scale(scale: torch.Tensor) -> torch.Tensor:
    """[layers, d_mlp] -> [layers, 1, 1, d_mlp]: the same scale for every example and position."""
    return scale[:, None, None, :]


def per_example_scale(scale: torch.Tensor) -> torch.Tensor:
    """[batch, d_mlp] -> [1, batch, 1, d_mlp]: the same scale in every layer (MemSinks masks)."""
    return scale[None, :, None, :]


def drop_neurons_scale(drop: torch.Tensor) -> torch.Tensor:
    """Boolean [layers, d_mlp] of neurons to zero -> broadcastable scale."""
    return per_layer_scale((~drop).float())


class _RoutedProjection(torch.autograd.Function):
    """y = x W + b with the weight gradient restricted per example to allowed neurons.

    `neuron_side` is "out" for up-projections (neurons are output features) and "in" for the
    down-projection (neurons are input features). The input gradient is never masked.
    Shapes: x [batch, pos, in], allowed [batch, neurons] (float 0/1), weight [in, out] for
    GPT-2 Conv1D or [out, in] for nn.Linear.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, allowed, neuron_side: str, conv1d: bool):
        w_in_out = weight if conv1d else weight.t()
        out = torch.matmul(x, w_in_out)
        if bias is not None:
            out = out + bias
        ctx.save_for_backward(x, weight, allowed)
        ctx.neuron_side, ctx.conv1d, ctx.has_bias = neuron_side, conv1d, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, allowed = ctx.saved_tensors
        w_in_out = weight if ctx.conv1d else weight.t()
        grad_x = torch.matmul(grad_out, w_in_out.t())
        mask = allowed[:, None, :].to(grad_out.dtype)
        if ctx.neuron_side == "out":
            grad_out_routed, x_routed = grad_out * mask, x
            grad_bias = grad_out_routed.sum(dim=(0, 1)) if ctx.has_bias else None
        else:
            grad_out_routed, x_routed = grad_out, x * mask
            grad_bias = grad_out.sum(dim=(0, 1)) if ctx.has_bias else None
        grad_w_in_out = torch.matmul(x_routed.flatten(0, 1).t(), grad_out_routed.flatten(0, 1))
        grad_weight = grad_w_in_out if ctx.conv1d else grad_w_in_out.t()
        return grad_x, grad_weight, grad_bias, None, None, None


class GradientRouter:
    """Route MLP weight gradients per example. Set `allowed` to a [batch, d_mlp] 0/1 tensor
    before the forward pass; None restores ordinary projections."""

    def __init__(self, model: nn.Module):
        self.allowed: torch.Tensor | None = None
        self._patched: list[nn.Module] = []
        for layer in mlp_layout(model):
            for module in layer.up:
                self._patch(module, "out")
            self._patch(layer.down, "in")

    def _patch(self, module: nn.Module, neuron_side: str) -> None:
        conv1d = weight_layout(module) == "conv1d"
        original = module.forward

        def forward(x):
            if self.allowed is None:
                return original(x)
            return _RoutedProjection.apply(x, module.weight, module.bias, self.allowed,
                                           neuron_side, conv1d)

        module.forward = forward
        self._patched.append(module)

    def remove(self) -> None:
        for module in self._patched:
            del module.forward
        self._patched = []
