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


@pytest.mark.parametrize("parameters", ["matrices", "all"])
def test_co_unlearn_trains_the_papers_parameters_by_default_and_all_on_request(parameters):
    """Stoehr et al.: no gradients on embed, pos_embed, unembed and biases (layer norms are folded
    into the matrices in TransformerLens): only the attention and MLP matrices move by default."""
    model, context, _ = planted_model()
    before = copy.deepcopy(model.state_dict())
    after = ContrastiveUnlearning(lr=1e-2, parameters=parameters).edit(model, context, 3).state_dict()
    matrices = editable_matrices(model)
    moved = {name for name, tensor in after.items() if not torch.equal(before[name], tensor)}
    assert moved & set(matrices)
    if parameters == "matrices":
        assert moved <= set(matrices)
    else:
        assert any("wte" in n or "wpe" in n for n in moved) and any(n.endswith(".bias") for n in moved)


def test_retain_kl_has_the_papers_direction_by_default():
    """KL(current || original) = sum p_current (log p_current - log p_original), and the other direction on request."""
    import torch.nn.functional as F

    from memsink_bench.methods.editing import retain_kl

    model, context, _ = planted_model()
    other = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(3)))
    batch = one_batch(context.retain)
    with torch.no_grad():
        current = F.log_softmax(other(input_ids=batch.input_ids).logits.float(), -1)
        original = F.log_softmax(model(input_ids=batch.input_ids).logits.float(), -1)
        valid = (batch.labels != -100).float()
        forward = ((current.exp() * (current - original)).sum(-1) * valid).sum() / valid.sum()
        backward = ((original.exp() * (original - current)).sum(-1) * valid).sum() / valid.sum()
        assert float(retain_kl(other, model, batch)) == pytest.approx(float(forward), rel=1e-5)
        assert float(retain_kl(other, model, batch, "original||current")) == pytest.approx(float(backward), rel=1e-5)
    assert float(forward) != pytest.approx(float(backward), rel=1e-3)
    with pytest.raises(Exception, match="not a KL direction"):
        ContrastiveUnlearning(kl="both")


def test_the_retain_set_is_disjoint_from_the_control_set(smoke_setting):
    from memsink_bench.setting import retain_set

    retain = retain_set(smoke_setting)
    assert len(retain) == len(smoke_setting.control)
    assert not set(retain.ids) & set(smoke_setting.control.ids)
    assert set(retain.ids) <= set(smoke_setting.single.ids)
    assert retain.ids == retain_set(smoke_setting).ids                    # seeded


def test_co_edit_pulls_each_memorized_prefix_towards_its_perturbed_continuation():
    from memsink_bench.methods.co_edit import ContrastiveEditing

    model, context, _ = planted_model()
    editor = ContrastiveEditing(lr=1e-2)
    targets = editor.perturbed_targets(model, context)
    assert 0 < len(targets) <= len(context.targets)
    for tokens, (start, end) in zip(targets.tokens, targets.spans):
        original = context.targets.tokens[context.targets.ids.index(targets.ids[targets.tokens.index(tokens)])]
        assert tokens[:start] == original[:start]                       # the original prefix
        assert tokens[start:end] != original[start:end]                  # an alternative continuation
    memorized, alternative = one_batch(context.targets), one_batch(targets)
    with torch.no_grad():
        before = float(target_nll(model, memorized)), float(target_nll(model, alternative))
    before_state = copy.deepcopy(model.state_dict())
    edited = dict(editor.edit_sweep(model, context, [10]))[10]
    with torch.no_grad():
        after = float(target_nll(edited, memorized)), float(target_nll(edited, alternative))
    assert after[0] > before[0] + 0.5 and after[1] < before[1] - 0.5
    moved = {n for n, t in edited.state_dict().items() if not torch.equal(before_state[n], t)}
    assert moved and moved <= set(editable_matrices(model))
    assert editor.record_extras(model, context) == {"edited_sequences": len(targets),
                                                    "forget_sequences": len(context.targets)}


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
