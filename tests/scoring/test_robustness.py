"""Quantization and relearning: golden values on hand-set weights and tiny models."""

import copy

import pytest
import torch

from memsink_bench.config import TrainConfig
from memsink_bench.errors import UserError
from memsink_bench.evaluate import collate, sequence_losses
from memsink_bench.interventions import per_layer_scale
from memsink_bench.models import mlp_shape
from memsink_bench.robustness import (quantize_per_channel, quantize_weights, recovered_share, relearn,
                                      relearned_models, relearning_split)
from memsink_bench.setting import SequenceSet

from tests.helpers.planted import PLANTED, planted_model
from tests.helpers.tiny_fit import fit_tiny_model

VOCAB, SEQ_LEN = 64, 20


@pytest.fixture(scope="module")
def memorizing():
    """A 1-layer GPT-2 fit for 150 Adam steps on 8 random sequences (their loss ends near 0)."""
    generator = torch.Generator().manual_seed(1)
    tokens = [[0] + torch.randint(1, VOCAB, (SEQ_LEN - 1,), generator=generator).tolist() for _ in range(8)]
    sequences = SequenceSet(tokens, list(range(1, 9)), [(SEQ_LEN // 2, SEQ_LEN)] * 8)
    return fit_tiny_model(sequences, VOCAB, SEQ_LEN, steps=150), sequences


def _matrices(model) -> dict[str, torch.Tensor]:
    """The block matrices quantize_weights rounds by default (GPT-2 Conv1D: [in, out])."""
    return {name: p.detach() for name, p in model.named_parameters() if p.dim() == 2 and ".h." in name}


# --- quantization ----------------------------------------------------------------------------

def test_round_to_nearest_per_channel_golden_values():
    weight = torch.tensor([[0.9, -0.3, 0.6], [0.1, 0.2, -0.4]])
    # 2 bits: levels {-1, 0, 1}; row steps 0.9 and 0.4
    assert torch.allclose(quantize_per_channel(weight, 2, 0), torch.tensor([[0.9, 0.0, 0.9], [0.0, 0.0, -0.4]]))
    # 3 bits: levels -3..3; row steps 0.3 and 0.4/3: the first row is exactly representable
    expected = torch.tensor([[0.9, -0.3, 0.6], [0.4 / 3, 0.8 / 3, -0.4]])
    assert torch.allclose(quantize_per_channel(weight, 3, 0), expected)
    # the same weight with columns as channels: steps 0.9, 0.3, 0.6 at 2 bits
    assert torch.allclose(quantize_per_channel(weight, 2, 1), torch.tensor([[0.9, -0.3, 0.6], [0.0, 0.3, -0.6]]))
    assert torch.equal(quantize_per_channel(torch.zeros(2, 3), 4, 0), torch.zeros(2, 3))   # no 0/0


def test_a_conv1d_output_channel_is_a_column(memorizing):
    model, _ = memorizing
    model = copy.deepcopy(model)
    with torch.no_grad():
        column = model.transformer.h[0].mlp.c_fc.weight[:, 0]       # Conv1D [d_model, d_mlp]: neuron 0
        column.zero_()
        column[:3] = torch.tensor([0.9, -0.3, 0.6])
    quantized = quantize_weights(model, 2).transformer.h[0].mlp.c_fc.weight[:, 0]
    assert torch.allclose(quantized[:3], torch.tensor([0.9, 0.0, 0.9])) and not quantized[3:].any()


def test_32_bits_changes_nothing_and_the_input_is_never_modified(memorizing):
    model, _ = memorizing
    before = {name: t.clone() for name, t in model.state_dict().items()}
    full = quantize_weights(model, 32)
    assert full is not model
    assert all(torch.equal(before[name], t) for name, t in full.state_dict().items())
    quantize_weights(model, 4, embeddings=True)
    assert all(torch.equal(before[name], t) for name, t in model.state_dict().items())


@pytest.mark.parametrize("bits", [8, 4])
def test_rounding_stays_within_half_a_step_on_the_symmetric_levels(memorizing, bits):
    model, _ = memorizing
    quantized = quantize_weights(model, bits)
    levels = 2 ** (bits - 1) - 1
    originals, rounded = _matrices(model), _matrices(quantized)
    for name, weight in originals.items():
        step = weight.abs().amax(dim=0, keepdim=True) / levels                # per output column
        assert ((rounded[name] - weight).abs() <= step / 2 + 1e-7).all(), name
        codes = rounded[name] / step
        assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.abs().max() <= levels + 1e-4, name
        assert not torch.equal(rounded[name], weight), name
    others = {n: t for n, t in quantized.state_dict().items() if n not in originals}
    assert all(torch.equal(model.state_dict()[n], t) for n, t in others.items())   # biases, norms, embeddings


def test_embeddings_are_quantized_only_on_request_and_stay_tied(memorizing):
    model, _ = memorizing
    with_embeddings = quantize_weights(model, 4, embeddings=True)
    wte = with_embeddings.transformer.wte.weight
    assert not torch.equal(wte, model.transformer.wte.weight)
    assert with_embeddings.lm_head.weight is wte                             # still one tied tensor
    step = model.transformer.wte.weight.abs().amax(dim=1, keepdim=True) / 7  # one step per token row
    assert ((wte - model.transformer.wte.weight).abs() <= step / 2 + 1e-7).all()


def test_8_bit_stays_close_and_4_bit_error_is_larger(memorizing):
    """Round-to-nearest errors are about uniform within half a step, and the 4-bit step is
    127 / 7 = 18.1 times the 8-bit one, so the weight error ratio must be near 18."""
    model, sequences = memorizing
    eight, four = quantize_weights(model, 8), quantize_weights(model, 4)
    originals, errors8, errors4 = _matrices(model), _matrices(eight), _matrices(four)
    for name, weight in originals.items():
        ratio = (errors4[name] - weight).pow(2).mean().sqrt() / (errors8[name] - weight).pow(2).mean().sqrt()
        assert 12 < float(ratio) < 25, (name, float(ratio))
    batch = collate(sequences.tokens, sequences.ids, sequences.spans, 0)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids).logits
        drift8 = (eight(input_ids=batch.input_ids).logits - logits).pow(2).mean().sqrt()
        drift4 = (four(input_ids=batch.input_ids).logits - logits).pow(2).mean().sqrt()
    assert drift8 < 0.01 * logits.pow(2).mean().sqrt() and drift4 > 5 * drift8
    loss = sequence_losses(model, sequences, 0).whole.mean()
    change8 = abs(float(sequence_losses(eight, sequences, 0).whole.mean() - loss))
    change4 = abs(float(sequence_losses(four, sequences, 0).whole.mean() - loss))
    assert change8 < 1e-3 and change4 > change8


@pytest.mark.parametrize("bits", [1, 0, 33, 8.0, True])
def test_bad_bits_are_user_errors(memorizing, bits):
    with pytest.raises(UserError) as caught:
        quantize_weights(memorizing[0], bits)
    assert "bits" in str(caught.value) and "\n" not in str(caught.value)


# --- relearning ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def removed():
    """The planted model with its planted neuron dropped (the removal), its targets split in
    halves, and the scale that keeps the neuron dropped."""
    model, context, (layer, neuron) = planted_model()
    keep = torch.ones(mlp_shape(model))
    keep[layer, neuron] = 0.0
    relearn_on, measure_on = relearning_split(context.targets, seed=0)
    return model, context, per_layer_scale(keep), relearn_on, measure_on


def test_relearning_split_is_two_disjoint_halves(removed):
    _, context, _, relearn_on, measure_on = removed
    assert len(relearn_on) == len(measure_on) == len(context.targets) // 2
    assert sorted(relearn_on.ids + measure_on.ids) == sorted(context.targets.ids)


def test_zero_steps_is_the_model_after_removal_and_the_input_is_untouched(removed):
    model, _, scale, relearn_on, measure_on = removed
    before = {name: t.clone() for name, t in model.state_dict().items()}
    points = relearn(model, relearn_on, measure_on, 0, [5, 0], 1e-2, scale=scale)
    report = sequence_losses(model, measure_on, 0, scale_for=lambda ids: scale)
    assert [p.steps for p in points] == [0, 5]
    assert points[0].loss == report.summary()["loss"] and points[0].target_loss == report.summary()["target_loss"]
    assert all(torch.equal(before[name], t) for name, t in model.state_dict().items())


def test_dropped_neurons_stay_dropped_during_relearning(removed):
    """A dropped neuron gets exactly zero gradient, so AdamW only decays its weights: after s
    steps its c_fc column and c_proj row are the originals times (1 - lr * weight_decay)^s and
    its bias (no decay) is unchanged, while the other neurons move."""
    model, _, scale, relearn_on, _ = removed
    (layer, neuron), lr, steps, decay = PLANTED, 1e-2, 5, TrainConfig().weight_decay
    _, relearned = next(iter(relearned_models(model, relearn_on, 0, [steps], lr, scale=scale)))
    old, new = model.transformer.h[layer].mlp, relearned.transformer.h[layer].mlp
    shrink = (1 - lr * decay) ** steps
    assert torch.allclose(new.c_fc.weight[:, neuron], old.c_fc.weight[:, neuron] * shrink, rtol=1e-5, atol=1e-8)
    assert torch.allclose(new.c_proj.weight[neuron], old.c_proj.weight[neuron] * shrink, rtol=1e-5, atol=1e-8)
    assert new.c_fc.bias[neuron] == old.c_fc.bias[neuron]
    others = torch.arange(old.c_fc.weight.shape[1]) != neuron
    moved = (new.c_fc.weight[:, others] - old.c_fc.weight[:, others] * shrink).abs().amax(0)
    assert (moved > 1e-4).float().mean() > 0.5


def test_relearning_one_half_brings_back_the_other_and_unrelated_text_does_not(removed):
    """The planted targets share their memorized continuation, so fine-tuning on half of them
    (with the planted neuron still dropped) restores the other half's target loss; fine-tuning
    on as many unrelated retain sequences does not."""
    model, context, scale, relearn_on, measure_on = removed
    before = sequence_losses(model, measure_on, 0).summary()["target_loss"]
    forget_half = relearn(model, relearn_on, measure_on, 0, [0, 1, 5, 20], 1e-2, scale=scale)
    unrelated = relearn(model, context.retain.subset(range(len(relearn_on))), measure_on, 0, [0, 20], 1e-2,
                        scale=scale)
    after_removal = forget_half[0].target_loss
    assert after_removal - before > 2.0                                        # the removal worked
    shares = [recovered_share(before, after_removal, p.target_loss) for p in forget_half]
    assert shares[0] == 0.0 and shares[-1] > 0.9 and forget_half[-1].exact_match_full == 1.0
    assert recovered_share(before, after_removal, unrelated[-1].target_loss) < 0.5


def test_relearning_is_deterministic_given_its_seed(removed):
    model, _, scale, relearn_on, measure_on = removed
    assert relearn(model, relearn_on, measure_on, 0, [3], 1e-2, scale=scale, seed=4) == \
        relearn(model, relearn_on, measure_on, 0, [3], 1e-2, scale=scale, seed=4)


def test_recovered_share_golden_values():
    assert recovered_share(0.1, 2.1, 1.1) == pytest.approx(0.5)
    assert recovered_share(0.1, 2.1, 2.1) == 0.0
    assert recovered_share(0.1, 2.1, 0.1) == pytest.approx(1.0)
    assert recovered_share(0.1, 2.1, 3.1) == pytest.approx(-0.5)           # relearning made it worse
    assert recovered_share(10.0, 2.0, 6.0) == pytest.approx(0.5)           # exact match: higher before removal
    assert recovered_share(1.0, 1.0, 0.5) is None                          # removal changed nothing


@pytest.mark.parametrize("steps_grid, lr", [([1, -1], 1e-3), ([], 1e-3), ([1.5], 1e-3), ([1], 0.0),
                                             ([1], -1e-3)])
def test_bad_relearning_parameters_are_user_errors(removed, steps_grid, lr):
    model, _, _, relearn_on, measure_on = removed
    with pytest.raises(UserError) as caught:
        relearn(model, relearn_on, measure_on, 0, steps_grid, lr)
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError):
        relearned_models(model, relearn_on, 0, steps_grid, lr)                # at the call, not at next()


def test_a_per_example_scale_is_refused(removed):
    model, _, scale, relearn_on, measure_on = removed
    with pytest.raises(UserError):
        relearn(model, relearn_on, measure_on, 0, [1], 1e-3, scale=scale.expand(-1, 3, -1, -1))


def test_robustness_at_reads_its_bit_widths_and_step_counts_from_the_metric_parameters(memorizing):
    from types import SimpleNamespace

    from memsink_bench.config import MetricsConfig
    from memsink_bench.robustness import robustness_at

    model, sequences = memorizing
    setting = SimpleNamespace(repeated=sequences, tokenizer=SimpleNamespace(pad_token_id=0))
    default = robustness_at(model, None, model, None, setting, lr=1e-3)
    assert set(default["quantization"]) == {"8", "4"} and set(default["relearning"]) == {"1", "5", "20"}
    # forgetting is measured against the same quantization of the unedited model: none for itself
    assert all(default["quantization"][bits]["forgetting"] == pytest.approx(0.0, abs=1e-6) for bits in ("8", "4"))
    chosen = robustness_at(model, None, model, None, setting, lr=1e-3,
                           params=MetricsConfig(quantization_bits=[6], relearn_steps=[0, 2]))
    assert set(chosen["quantization"]) == {"6"} and set(chosen["relearning"]) == {"0", "2"}
    # zero steps is the model after removal, measured on the held-back half
    assert chosen["relearning"]["0"]["loss"] == pytest.approx(chosen["relearning_base"]["after_removal_loss"])


def test_a_removal_below_the_threshold_has_no_recovered_share():
    from memsink_bench.robustness import MIN_REMOVAL

    assert recovered_share(1.0, 1.01, 0.5, MIN_REMOVAL) is None           # 0.01 nats: nothing to recover
    assert recovered_share(1.0, 1.2, 1.1, MIN_REMOVAL) == pytest.approx(0.5)
