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
from typing import Callable

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


class _ScaledProjection(torch.autograd.Function):
    """y = (x * scale) W + b for a scale that is 1 on the first `first` input features.

    The same function as NeuronScaler's hook followed by the projection, without its two full
    passes over [batch, pos, d_mlp] (the product forward, the product of the gradient backward):
    only the last d_mlp - first features are multiplied, and the input gradient is scaled in
    place on the fresh tensor the matmul returns. Shapes: x [batch, pos, in], scale broadcastable
    to [batch, 1, in] and not requiring grad, weight [in, out] (Conv1D) or [out, in] (Linear).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, scale, first: int, conv1d: bool):
        w = weight if conv1d else weight.t()
        flat = x.reshape(-1, x.shape[-1])
        tail_scale = scale[..., first:].to(x.dtype)
        scaled = (x[..., first:] * tail_scale).reshape(-1, x.shape[-1] - first)
        head = flat[:, :first]
        out = torch.addmm(bias, head, w[:first]) if bias is not None else head @ w[:first]
        out.addmm_(scaled, w[first:])
        ctx.save_for_backward(x, weight, tail_scale, scaled)
        ctx.first, ctx.conv1d, ctx.has_bias = first, conv1d, bias is not None
        return out.view(*x.shape[:-1], -1)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, tail_scale, scaled = ctx.saved_tensors
        first = ctx.first
        w = weight if ctx.conv1d else weight.t()
        grad_flat = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = (grad_flat @ w.t()).view_as(x)
        grad_x[..., first:] *= tail_scale
        flat = x.reshape(-1, x.shape[-1])
        grad_w = torch.empty_like(w)
        grad_w[:first] = flat[:, :first].t() @ grad_flat
        grad_w[first:] = scaled.t() @ grad_flat
        grad_bias = grad_flat.sum(0) if ctx.has_bias else None
        return grad_x, grad_w if ctx.conv1d else grad_w.t(), grad_bias, None, None, None


def leading_ones(scale: torch.Tensor) -> int:
    """How many leading features have scale exactly 1 in every row (the shared neurons)."""
    ones = (scale == 1).reshape(-1, scale.shape[-1]).all(dim=0)
    return int(ones.int().cumprod(0).sum())


def patch_forward(module: nn.Module, replacement) -> Callable[[], None]:
    """Make `replacement(original_forward, x)` the module's forward; returns the undo.

    Patches stack (a later one calls the earlier one as its original); undo them in reverse order.
    """
    previous = module.__dict__.get("forward")        # an earlier patch, if any
    original = module.forward
    module.forward = lambda x: replacement(original, x)

    def undo() -> None:
        if previous is None:
            module.__dict__.pop("forward", None)
        else:
            module.forward = previous
    return undo


class ProjectionScaler:
    """NeuronScaler for training: the same `scale` semantics, applied inside the down
    projection (`_ScaledProjection`) instead of by a hook, which saves the elementwise passes
    over the hidden activations that dominate MemSinks' cost. `scale` must not require grad
    (use NeuronScaler for learned gates).
    """

    def __init__(self, model: nn.Module):
        self._scale: torch.Tensor | None = None
        self._first: list[int] = []
        self._undo: list[Callable[[], None]] = []
        for index, layer in enumerate(mlp_layout(model)):
            self._patch(layer.down, index)

    @property
    def scale(self) -> torch.Tensor | None:
        return self._scale

    @scale.setter
    def scale(self, scale: torch.Tensor | None) -> None:
        if scale is not None and scale.requires_grad:
            raise ValueError("ProjectionScaler scales carry no gradient; use NeuronScaler for learned gates")
        self._scale = scale
        self._first = [] if scale is None else [leading_ones(layer) for layer in scale]

    def _patch(self, module: nn.Module, index: int) -> None:
        conv1d = weight_layout(module) == "conv1d"

        def forward(original, x):
            if self._scale is None:
                return original(x)
            layer = index if self._scale.shape[0] > 1 else 0
            return _ScaledProjection.apply(x, module.weight, module.bias, self._scale[layer], self._first[layer],
                                           conv1d)

        self._undo.append(patch_forward(module, forward))

    def remove(self) -> None:
        while self._undo:
            self._undo.pop()()


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


def _as_slice(index: torch.Tensor):
    """A sorted index tensor as a slice when it is one contiguous run (views instead of copies)."""
    first, last = int(index[0]), int(index[-1])
    return slice(first, last + 1) if last - first + 1 == len(index) else index


def routing_groups(allowed: torch.Tensor) -> list[tuple]:
    """[batch, neurons] 0/1 -> [(rows, neurons)]: the examples that share one row of `allowed`
    and the neurons that row allows, each a slice when contiguous, else an index tensor.

    A gradient-masked batch has two groups (repeated / single-seen examples) whose neurons are
    the two blocks, so the routed weight gradient is two smaller matmuls over views.
    """
    patterns, inverse = torch.unique(allowed > 0, dim=0, return_inverse=True)
    groups = []
    for number, pattern in enumerate(patterns):
        neurons = pattern.nonzero().flatten()
        if len(neurons):
            groups.append((_as_slice((inverse == number).nonzero().flatten()), _as_slice(neurons)))
    return groups


class _RoutedProjection(torch.autograd.Function):
    """y = x W + b with the weight gradient restricted per example to allowed neurons.

    `neuron_side` is "out" for up-projections (neurons are output features) and "in" for the
    down-projection (neurons are input features). The input gradient is never masked.
    Shapes: x [batch, pos, in], weight [in, out] for GPT-2 Conv1D or [out, in] for nn.Linear;
    `groups` from `routing_groups`. Each group's weight gradient is a matmul over just its rows
    and its allowed neurons, so no [batch, pos, neurons] mask product is ever formed and a
    neuron's gradient sums only the examples allowed to update it.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, groups, neuron_side: str, conv1d: bool):
        w_in_out = weight if conv1d else weight.t()
        flat = x.reshape(-1, x.shape[-1])
        out = torch.addmm(bias, flat, w_in_out) if bias is not None else flat @ w_in_out
        ctx.save_for_backward(x, weight)
        ctx.groups, ctx.neuron_side, ctx.conv1d, ctx.has_bias = groups, neuron_side, conv1d, bias is not None
        return out.view(*x.shape[:-1], -1)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        w_in_out = weight if ctx.conv1d else weight.t()
        grad_x = torch.matmul(grad_out, w_in_out.t())
        grad_w = torch.zeros_like(w_in_out)
        grad_bias = None
        if ctx.has_bias:
            grad_bias = torch.zeros_like(grad_w[0]) if ctx.neuron_side == "out" else grad_out.sum(dim=(0, 1))
        for rows, neurons in ctx.groups:
            x_rows, grad_rows = x[rows], grad_out[rows]
            if ctx.neuron_side == "out":
                grad_rows = grad_rows[..., neurons]
                block = x_rows.flatten(0, 1).t() @ grad_rows.flatten(0, 1)
                _add_columns(grad_w, neurons, block)
                if ctx.has_bias:
                    _add_columns(grad_bias[None], neurons, grad_rows.sum(dim=(0, 1))[None])
            else:
                block = x_rows[..., neurons].flatten(0, 1).t() @ grad_rows.flatten(0, 1)
                _add_columns(grad_w.t(), neurons, block.t())
        grad_weight = grad_w if ctx.conv1d else grad_w.t()
        return grad_x, grad_weight, grad_bias, None, None, None


def _add_columns(target: torch.Tensor, columns, values: torch.Tensor) -> None:
    if isinstance(columns, slice):
        target[:, columns] += values
    else:
        target.index_add_(1, columns, values)


class GradientRouter:
    """Route MLP weight gradients per example. Set `allowed` to a [batch, d_mlp] 0/1 tensor
    before the forward pass; None restores ordinary projections."""

    def __init__(self, model: nn.Module):
        self._allowed: torch.Tensor | None = None
        self._groups: list[tuple] = []
        self._undo: list[Callable[[], None]] = []
        for layer in mlp_layout(model):
            for module in layer.up:
                self._patch(module, "out")
            self._patch(layer.down, "in")

    @property
    def allowed(self) -> torch.Tensor | None:
        return self._allowed

    @allowed.setter
    def allowed(self, allowed: torch.Tensor | None) -> None:
        self._allowed = allowed
        self._groups = routing_groups(allowed) if allowed is not None else []   # once per batch

    def _patch(self, module: nn.Module, neuron_side: str) -> None:
        conv1d = weight_layout(module) == "conv1d"

        def forward(original, x):
            if self._allowed is None:
                return original(x)
            return _RoutedProjection.apply(x, module.weight, module.bias, self._groups, neuron_side, conv1d)

        self._undo.append(patch_forward(module, forward))

    def remove(self) -> None:
        while self._undo:
            self._undo.pop()()
