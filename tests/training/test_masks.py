"""Sequence-tied dropout masks: determinism, density, layer/repetition invariance, ID noise."""

import pytest
import torch

from memsink_bench.config import load_config
from memsink_bench.interventions import NeuronScaler
from memsink_bench.kinds import get_kind
from memsink_bench.masks import (REFERENCE_A, REFERENCE_M, eval_scale, neuron_mask, reference_uniforms,
                                 sink_mask, split_neurons)


@pytest.mark.parametrize("mask_fn", ["counter", "reference"])
def test_mask_is_a_deterministic_function_of_the_id(mask_fn):
    ids = torch.tensor([5, 17, 5, 123456, 17])
    first = sink_mask(ids, 300, 0.3, mask_fn)
    second = sink_mask(ids.flip(0), 300, 0.3, mask_fn).flip(0)
    assert torch.equal(first, second)
    assert torch.equal(first[0], first[2]) and torch.equal(first[1], first[4])
    assert not torch.equal(first[0], first[1])


def test_counter_mask_has_exactly_p_of_the_sinks_on():
    ids = torch.arange(1, 2001)
    mask = sink_mask(ids, 150, 0.3, "counter")
    assert (mask.sum(1) == 45).all()
    # every sink is used by some sequences, close to p of them
    per_sink = mask.float().mean(0)
    assert per_sink.min() > 0.2 and per_sink.max() < 0.4


def test_reference_mask_density_is_close_to_p():
    ids = torch.arange(1, 2001)
    density = sink_mask(ids, 400, 0.3, "reference").float().mean()
    assert abs(float(density) - 0.3) < 0.02


def test_reference_hash_matches_the_published_formula():
    ids = torch.tensor([1, 7, 99991])
    got = reference_uniforms(ids, 5)
    for row, i in enumerate(ids.tolist()):
        for j in range(5):
            expected = ((i * 2**16) * pow(REFERENCE_A, j, REFERENCE_M)) % REFERENCE_M / REFERENCE_M
            assert got[row, j].item() == pytest.approx(expected, abs=1e-12)


def test_reference_hash_flaw_id_zero_switches_every_sink_on_and_counter_does_not():
    zero = torch.tensor([0])
    assert sink_mask(zero, 100, 0.3, "reference").all()
    assert sink_mask(zero, 100, 0.3, "counter").sum() == 30


def test_counter_masks_of_unrelated_ids_overlap_like_independent_draws():
    ids = torch.arange(1, 401)
    mask = sink_mask(ids, 200, 0.3, "counter").float()
    overlap = (mask @ mask.T) / 60.0
    off_diagonal = overlap[~torch.eye(400, dtype=torch.bool)]
    assert abs(float(off_diagonal.mean()) - 0.3) < 0.02   # independent masks overlap in p of the on-sinks
    assert float(off_diagonal.max()) < 0.7


def test_neuron_mask_keeps_shared_neurons_on():
    mask = neuron_mask(torch.tensor([3, 4]), 100, 0.7, 0.3)
    n_shared, n_sinks = split_neurons(100, 0.7)
    assert (mask[:, :n_shared] == 1).all()
    assert (mask[:, n_shared:].sum(1) == round(0.3 * n_sinks)).all()


def test_drop_view_rescales_shared_to_the_training_mass():
    scale = eval_scale("drop", 100, 0.7, 0.3)
    assert (scale[0, 70:] == 0).all()
    assert scale[0, :70].sum().item() == pytest.approx(70 + 0.3 * 30)


def test_the_same_mask_reaches_every_layer_and_every_repetition():
    from memsink_bench.config import ModelConfig
    from memsink_bench.models import build_model, mlp_layout

    config = load_config("ts-repetition", "smoke")
    model = build_model(ModelConfig(n_layer=3, n_embd=32, n_head=2, d_mlp=64), 100, 32, 0)
    scaler = NeuronScaler(model)
    captured = []   # forward hooks see the down-projection input after the scaler's pre-hook
    handles = [layer.down.register_forward_hook(lambda m, a, o: captured.append(a[0].detach().clone()))
               for layer in mlp_layout(model)]
    tokens = torch.randint(1, 100, (1, 8))
    for _ in range(2):                              # two repetitions of sequence 42
        scaler.scale = get_kind("memsinks").training_scale(config, 64, torch.tensor([42]))
        model(input_ids=tokens)
    for handle in handles:
        handle.remove()
    scaler.remove()
    mask = get_kind("memsinks").training_scale(config, 64, torch.tensor([42]))[0, 0, 0]
    assert len(captured) == 6 and (mask == 0).any()
    for activation in captured:
        silent = activation.abs().sum(dim=(0, 1)) == 0
        assert torch.equal(silent, mask == 0)


def test_id_noise_gives_about_d_of_repetitions_a_fresh_id(smoke_setting):
    from memsink_bench.train import epoch_examples

    config = load_config("ts-canary", "smoke", ["data.id_noise=0.25", "data.repetitions=200"])
    examples = [e for e in epoch_examples(smoke_setting, "memsinks", config, 0) if e.role == "repeated"]
    own_ids = set(smoke_setting.repeated.ids)
    fresh = [e for e in examples if e.seq_id not in own_ids]
    assert abs(len(fresh) / len(examples) - 0.25) < 0.05
    assert len({e.seq_id for e in fresh}) == len(fresh)            # fresh IDs are random, not reused
    clean = load_config("ts-canary", "smoke", ["data.repetitions=200"])
    assert all(e.seq_id in own_ids for e in epoch_examples(smoke_setting, "memsinks", clean, 0)
               if e.role == "repeated")
