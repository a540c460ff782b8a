"""The `ig` method's per-neuron scores computed with captum: an independent check of its integrator.

`ig` (see `ig.py`) attributes, for each layer l and target position i, the probability of the true
next token at i to the MLP hidden activation a = h_l[i] (input of the down projection), with a
zero baseline, scaling that one position only; scores are the mean over target positions,
[layers, d_mlp]. Captum's defaults compute something else: `LayerIntegratedGradients` scales the
whole layer (every position at once) between the activations of a baseline *input* and the real
one. So here captum's `IntegratedGradients` integrates over an input that is exactly
a = h_l[i] ([n_targets, d_mlp], one row per target position, zero baseline), and the forward
function puts each row back at its own layer and position only and returns p(label_i): the same
integral, with captum choosing the alphas, the weights and the sum.

Integration rules. `ig` with `steps` takes the unweighted mean of the gradients at
linspace(0, 1, steps). No captum rule is that: `riemann_trapezoid` uses the same points but
weights 1/steps with both ends halved (the weights sum to 1 - 1/steps). With the default
`method="gausslegendre"` captum converges to the integral that `ig` approaches as its steps grow.
`method="linspace"` reproduces `ig`'s rule exactly from two captum attributions:

    mean of g(k / (n - 1)), k = 0..n-1  =  ((n - 1) * riemann_left(n - 1) + g(1)) / n

(`riemann_left` with n - 1 steps uses the points k / (n - 1), k = 0..n-2, weights 1 / (n - 1);
a * g(1) is captum's `InputXGradient` at the clean activation), equal up to captum rounding its
riemann alphas and step sizes to float32.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from ..evaluate import Batch
from ..models import mlp_layout

CAPTUM_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                  "riemann_trapezoid", "linspace")


def _probability_forward(model: nn.Module, down: nn.Module, batch: Batch, rows: torch.Tensor,
                         cols: torch.Tensor):
    """forward(hidden [k, d_mlp], target [k]) -> p(label) [k]: copy j runs sequence rows[target_j]
    (up to the last target column; attention is causal) with its MLP activation at column
    cols[target_j] of this layer replaced by hidden_j, and reads the probability there (only that
    column is unembedded: the other columns' logits are never read)."""
    width = int(cols.max()) + 1

    def forward(hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seq, pos, copy = rows[target], cols[target], torch.arange(len(target), device=target.device)

        def put(_module, args):
            return (args[0].index_put((copy, pos), hidden.to(args[0].dtype)),) + tuple(args[1:])

        def own_column(_module, args):
            return (args[0][copy, pos][:, None],) + tuple(args[1:])     # [k, 1, d_model]

        input_ids = batch.input_ids[seq, :width]
        handles = [down.register_forward_pre_hook(put),
                   model.get_output_embeddings().register_forward_pre_hook(own_column)]
        try:
            logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                           use_cache=False).logits[:, 0]
        finally:
            for handle in handles:
                handle.remove()
        probs = torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        return probs.gather(-1, batch.labels[seq, pos][:, None])[:, 0]

    return forward


def captum_ig_per_position(model: nn.Module, batch: Batch, layer: int, steps: int,
                           method: str = "gausslegendre", internal_batch_size: int | None = None
                           ) -> torch.Tensor:
    """Un-averaged IG of one layer by captum: [n_target_positions, d_mlp] in the model's dtype,
    rows in `torch.nonzero(batch.target_mask)` order (as `ig.ig_per_position`). A forward holds
    at most `internal_batch_size` copies (default: every step of every target at once)."""
    from captum.attr import InputXGradient, IntegratedGradients

    if method not in CAPTUM_METHODS:
        raise UserError(f"unknown integration method {method!r}", f"use one of {', '.join(CAPTUM_METHODS)}")
    if method == "linspace" and steps < 3:
        raise UserError("method 'linspace' needs steps >= 3 (riemann_left runs steps - 1 >= 2)",
                        "raise steps")
    parameter = next(model.parameters())
    batch = batch.to(parameter.device)
    mlp = mlp_layout(model)[layer]
    down, device = mlp.down, parameter.device
    rows, cols = torch.nonzero(batch.target_mask & (batch.labels != -100), as_tuple=True)
    if len(rows) == 0:
        return torch.zeros(0, mlp.d_mlp, dtype=parameter.dtype, device=device)
    acts = []
    handle = down.register_forward_pre_hook(lambda _m, args: acts.append(args[0].detach()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(input_ids=batch.input_ids, attention_mask=torch.ones_like(batch.input_ids), use_cache=False)
        handle.remove()
        inputs, target = acts[0][rows, cols], torch.arange(len(rows), device=device)
        forward = _probability_forward(model, down, batch, rows, cols)
        integrator = IntegratedGradients(forward)
        options = dict(baselines=torch.zeros_like(inputs), additional_forward_args=(target,),
                       internal_batch_size=internal_batch_size)
        if method != "linspace":
            return integrator.attribute(inputs, n_steps=steps, method=method, **options).detach()
        left = integrator.attribute(inputs, n_steps=steps - 1, method="riemann_left", **options)
        at_one = InputXGradient(forward).attribute(inputs.clone().requires_grad_(True),
                                                   additional_forward_args=(target,))
        return (((steps - 1) * left + at_one) / steps).detach()
    finally:
        handle.remove()
        model.train(was_training)


def captum_integrated_gradients(model: nn.Module, batch: Batch, steps: int, method: str = "gausslegendre",
                                internal_batch_size: int | None = None) -> torch.Tensor:
    """Mean IG over the batch's target positions by captum, [layers, d_mlp] float32 CPU: the
    `ig` method's score on this batch (exactly with `method="linspace"` and the same steps)."""
    layers = [captum_ig_per_position(model, batch, layer, steps, method, internal_batch_size)
              for layer in range(len(mlp_layout(model)))]
    return (torch.stack([layer.sum(0) for layer in layers]) / max(len(layers[0]), 1)).float().cpu()
