"""Editors and the drop-top-r harness on tiny models with known answers."""

import copy

import pytest
import torch

from memsink_bench.methods.base import target_nll
from memsink_bench.methods.co_unlearn import ContrastiveUnlearning
from memsink_bench.methods.editing import editable_matrices
from memsink_bench.methods.ig import IntegratedGradients
from memsink_bench.methods.random_neurons import RandomNeurons
from memsink_bench.methods.sparse_ft import RandomSparseFineTuning, SparseFineTuning
from memsink_bench.interventions import drop_neurons_scale, scaled_neurons
from memsink_bench.models import mlp_layout
from memsink_bench.methods.base import top_r_drop

from tests.helpers.planted import PLANTED, one_batch, planted_model


def _changed(before, after) -> dict[str, torch.Tensor]:
    return {name: before[name] != tensor for name, tensor in after.items()}


@pytest.mark.parametrize("editor_cls", [SparseFineTuning, RandomSparseFineTuning])
def test_sparse_ft_changes_exactly_the_masked_weights(editor_cls):
    model, context, _ = planted_model()
    editor = editor_cls(fraction=0.01, lr=1e-2)
    masks = editor.masks(model, context)
    before = copy.deepcopy(model.state_dict())
    edited = editor.edit(model, context, 5)
    after = edited.state_dict()
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())   # input untouched
    matrices = editable_matrices(edited)
    for name, tensor in after.items():
        moved = before[name] != tensor
        if name in matrices:
            assert not (moved & ~masks[name]).any(), name                # nothing outside the mask
        else:
            assert not moved.any(), name                                 # embeddings, biases, norms frozen
    n_moved = sum(int((before[n] != after[n]).sum()) for n in matrices)
    n_masked = sum(int(m.sum()) for m in masks.values())
    assert n_moved > 0.9 * n_masked and n_masked == round(0.01 * sum(m.numel() for m in masks.values()))


def test_sparse_ft_mask_follows_the_gradient_and_the_random_control_does_not():
    model, context, _ = planted_model()
    grad_masks = SparseFineTuning(fraction=0.001).masks(model, context)
    random_masks = RandomSparseFineTuning(fraction=0.001).masks(model, context)
    assert any(m.any() for m in grad_masks.values())
    assert any((grad_masks[n] != random_masks[n]).any() for n in grad_masks)
    # the planted neuron's c_proj row carries the memorized token: its gradient is the largest
    layer, neuron = PLANTED
    name = f"transformer.h.{layer}.mlp.c_proj.weight"
    assert grad_masks[name][neuron].any()


def test_co_unlearn_raises_the_memorized_loss_and_keeps_retain_text_close():
    model, context, _ = planted_model()
    batch = one_batch(context.targets)
    with torch.no_grad():
        before = float(target_nll(model, batch))
    sweep = list(ContrastiveUnlearning(lr=1e-2, nll_weight=1.0).edit_sweep(model, context, [1, 10]))
    with torch.no_grad():
        after = float(target_nll(sweep[-1][1], batch))
        unchanged = float(target_nll(model, batch))
    assert after > before + 0.5
    assert unchanged == pytest.approx(before)                             # the input model is not edited


def test_step_sweep_equals_restarting_at_each_knob():
    model, context, _ = planted_model()
    editor = SparseFineTuning(fraction=0.01, lr=1e-2)
    swept = {k: copy.deepcopy(m.state_dict()) for k, m in editor.edit_sweep(model, context, [2, 5])}
    fresh = editor.edit(model, context, 5).state_dict()
    for name, tensor in fresh.items():
        torch.testing.assert_close(swept[5][name], tensor, rtol=0, atol=1e-7)


def test_dropping_r_zeroes_exactly_the_chosen_neurons_in_each_layer():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.7, 0.2, 0.8, 0.4]])
    drop = top_r_drop(scores, 0.5)
    assert drop.tolist() == [[False, True, True, False], [True, False, True, False]]
    assert top_r_drop(scores, 0.01).sum(1).tolist() == [1, 1]           # at least one per layer

    model, context, _ = planted_model()
    layers, d_mlp = len(mlp_layout(model)), mlp_layout(model)[0].d_mlp
    drop = top_r_drop(torch.rand(layers, d_mlp, generator=torch.Generator().manual_seed(0)), 0.25)
    seen = []
    handles = [layer.down.register_forward_hook(lambda m, a, o: seen.append(a[0].detach()))
               for layer in mlp_layout(model)]
    with scaled_neurons(model, drop_neurons_scale(drop)):
        model(input_ids=one_batch(context.targets).input_ids)
    for handle in handles:
        handle.remove()
    for layer, activation in enumerate(seen):
        silent = activation.abs().sum(dim=(0, 1)) == 0
        assert torch.equal(silent, drop[layer])


def test_ig_ranks_the_planted_neuron_first():
    model, context, (layer, neuron) = planted_model()
    scores = IntegratedGradients(steps=16).score(model, context)
    assert divmod(int(scores.argmax()), scores.shape[1]) == (layer, neuron)


def test_random_neurons_is_seeded():
    model, context, _ = planted_model()
    first, second = RandomNeurons().score(model, context), RandomNeurons().score(model, context)
    assert torch.equal(first, second)
    context.seed = 1
    assert not torch.equal(first, RandomNeurons().score(model, context))
