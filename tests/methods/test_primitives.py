"""Plugin primitives: activations and gradients captured without hooks, neurons dropped, the
target-span NLL; a gradient x activation localizer written with them finds the planted neuron."""

import torch

from memsink_bench.interventions import NeuronScaler
from memsink_bench.methods.base import NeuronLocalizer
from memsink_bench.methods.primitives import (capture_activations, dropped_neurons, mean_activation,
                                              target_token_nll)
from memsink_bench.models import mlp_layout, mlp_shape

from tests.helpers.planted import PLANTED, one_batch, planted_model


class GradTimesActivation(NeuronLocalizer):
    """|activation x d(target NLL)/d(activation)| summed over target tokens: the whole method."""

    name = "grad-x-act"

    def score(self, model, context):
        total = torch.zeros(mlp_shape(model))
        for batch in context.target_batches():
            with capture_activations(model, grad=True) as captured:
                target_token_nll(model, batch).sum().backward()
            total += captured.sum_over_tokens(batch.target_mask, times_gradient=True, absolute=True)
        return total


def test_grad_times_activation_written_with_primitives_ranks_the_planted_neuron_first():
    model, context, _ = planted_model()
    scores = GradTimesActivation().score(model, context)
    layer, neuron = PLANTED
    assert scores[layer].argmax().item() == neuron
    assert scores[layer, neuron] > 10 * scores[layer].topk(2).values[1]


def test_captured_activations_are_the_down_projection_inputs():
    model, context, _ = planted_model()
    batch = next(context.target_batches())
    seen = {}
    layer = mlp_layout(model)[PLANTED[0]]
    handle = layer.down.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0].detach()))
    with capture_activations(model) as captured:
        model(input_ids=batch.input_ids)
    handle.remove()
    assert torch.equal(captured.activations[PLANTED[0]], seen["x"])
    assert captured.activations[PLANTED[0]].shape == (*batch.input_ids.shape, mlp_shape(model)[1])


def test_gradients_match_autograd_on_a_scaled_copy():
    """d loss / d activation equals d loss / d scale at scale 1 divided by nothing: the gradient of
    a multiplicative scale s on the activation a is sum(a * dL/da) -- checked against autograd."""
    model, context, _ = planted_model()
    batch = next(context.target_batches())
    with capture_activations(model, grad=True) as captured:
        target_token_nll(model, batch).sum().backward()
    ours = captured.sum_over_tokens(torch.ones_like(batch.target_mask), times_gradient=True)
    layers, d_mlp = mlp_shape(model)
    scale = torch.ones(layers, 1, 1, d_mlp, requires_grad=True)
    scaler = NeuronScaler(model)
    scaler.scale = scale
    try:
        target_token_nll(model, batch).sum().backward()
    finally:
        scaler.remove()
    assert torch.allclose(ours, scale.grad.reshape(layers, d_mlp), atol=1e-5)


def test_dropped_neurons_equals_ablation_and_is_undone_after_the_block():
    model, context, _ = planted_model()
    batch = one_batch(context.targets)
    drop = torch.zeros(mlp_shape(model), dtype=torch.bool)
    drop[PLANTED] = True
    before = target_token_nll(model, batch).sum()
    with dropped_neurons(model, drop):
        inside = target_token_nll(model, batch).sum()
    after = target_token_nll(model, batch).sum()
    assert inside > before + 10 and torch.isclose(after, before)


def test_mean_activation_is_higher_on_targets_for_the_planted_neuron():
    model, context, _ = planted_model()
    target = mean_activation(model, context.target_batches())
    retain = mean_activation(model, context.retain_batches())
    layer, neuron = PLANTED
    assert target[layer, neuron] > 2 * retain[layer, neuron]
    assert (target >= 0).all()
