"""Gradient masking routes MLP weight gradients exactly, and leaves the forward pass alone."""

import pytest
import torch

from memsink_bench.config import ModelConfig, load_config
from memsink_bench.interventions import GradientRouter
from memsink_bench.kinds import get_kind, memorization_block
from memsink_bench.models import build_model, mlp_layout

D_MLP = 64


@pytest.fixture()
def model():
    return build_model(ModelConfig(n_layer=2, n_embd=32, n_head=2, d_mlp=D_MLP), 100, 32, 0).double()


def _mlp_grads(model, is_repeated: bool):
    config = load_config("ts-repetition", "smoke")
    router = GradientRouter(model)
    router.allowed = get_kind("gradient-masked").routing_mask(config, D_MLP, torch.tensor([is_repeated])).double()
    tokens = torch.randint(1, 100, (1, 12), generator=torch.Generator().manual_seed(3))
    model.zero_grad()
    model(input_ids=tokens, labels=tokens).loss.backward()
    router.remove()
    n_gen, _ = memorization_block(D_MLP, config.gradient_masked.generalization_fraction)
    return n_gen, [(layer.up[0], layer.down) for layer in mlp_layout(model)]


def _neuron_grads(up, down):
    """Per-neuron gradient blocks: c_fc columns + bias entries, c_proj rows (GPT-2 Conv1D)."""
    return up.weight.grad, up.bias.grad, down.weight.grad


@pytest.mark.parametrize("is_repeated", [True, False])
def test_an_example_updates_only_its_own_block(model, is_repeated):
    n_gen, layers = _mlp_grads(model, is_repeated)
    blocked = slice(0, n_gen) if is_repeated else slice(n_gen, D_MLP)
    allowed = slice(n_gen, D_MLP) if is_repeated else slice(0, n_gen)
    for up, down in layers:
        w_up, b_up, w_down = _neuron_grads(up, down)
        assert (w_up[:, blocked] == 0).all() and (b_up[blocked] == 0).all() and (w_down[blocked] == 0).all()
        assert w_up[:, allowed].abs().sum() > 0 and w_down[allowed].abs().sum() > 0


def test_routing_keeps_the_forward_pass_and_the_gradients_outside_the_mlp_weights(model):
    tokens = torch.randint(1, 100, (2, 10), generator=torch.Generator().manual_seed(5))
    plain = model(input_ids=tokens, labels=tokens)
    plain.loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    router = GradientRouter(model)
    router.allowed = torch.ones(2, D_MLP, dtype=torch.float64)     # everything allowed: identical
    routed = model(input_ids=tokens, labels=tokens)
    routed.loss.backward()
    router.remove()
    assert torch.equal(plain.logits, routed.logits)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, reference[name], rtol=1e-10, atol=1e-12)


def test_a_mixed_batch_routes_each_example_separately(model):
    """Batch gradient == sum of the two single-example routed gradients."""
    config = load_config("ts-repetition", "smoke")
    tokens = torch.randint(1, 100, (2, 10), generator=torch.Generator().manual_seed(7))
    flags = torch.tensor([True, False])

    def grads(rows):
        model.zero_grad()
        router = GradientRouter(model)
        router.allowed = get_kind("gradient-masked").routing_mask(config, D_MLP, flags[rows]).double()
        logits = model(input_ids=tokens[rows]).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[rows][:, 1:].flatten(),
                                                 reduction="sum")
        loss.backward()
        router.remove()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    both, first, second = grads([0, 1]), grads([0]), grads([1])
    for name in both:
        torch.testing.assert_close(both[name], first[name] + second[name], rtol=1e-9, atol=1e-10)


def test_arbitrary_masks_match_the_per_example_masked_gradients(model):
    """Interleaved rows, non-contiguous neurons, an all-blocked row: the routed batch gradient
    equals the sum over examples of each example's plain gradient with its blocked neurons'
    MLP weight entries zeroed (an independent reference: no router involved)."""
    tokens = torch.randint(1, 100, (5, 9), generator=torch.Generator().manual_seed(11))
    patterns = (torch.rand(3, D_MLP, generator=torch.Generator().manual_seed(12)) < 0.5).double()
    patterns[2] = 0.0                                              # a row that may update nothing
    allowed = patterns[torch.tensor([0, 1, 0, 2, 1])]              # groups interleaved in the batch

    def loss_of(rows):
        logits = model(input_ids=tokens[rows]).logits
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[rows][:, 1:].flatten(),
                                                 reduction="sum")

    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for row in range(5):
        model.zero_grad()
        loss_of([row]).backward()
        keep = allowed[row]
        for layer in mlp_layout(model):
            up, down = layer.up[0], layer.down
            up.weight.grad *= keep[None, :]
            up.bias.grad *= keep
            down.weight.grad *= keep[:, None]
        for n, p in model.named_parameters():
            expected[n] += p.grad

    model.zero_grad()
    router = GradientRouter(model)
    router.allowed = allowed
    loss_of(list(range(5))).backward()
    router.remove()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], rtol=1e-9, atol=1e-10, msg=name)
