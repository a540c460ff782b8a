"""Hard-concrete pruning on the planted-neuron GPT-2: it must keep (= score highest) the one
neuron that carries the targets, leave the model untouched, be seeded, and stop early."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from memsink_bench.errors import UserError
from memsink_bench.evaluate import collate
from memsink_bench.methods import hard_concrete
from memsink_bench.methods.base import target_nll
from memsink_bench.methods.hard_concrete import HardConcretePruning

from tests.helpers.planted import planted_model



@pytest.fixture(scope="module")
def planted():
    return planted_model()


def test_planted_neuron_scores_highest(planted):
    model, context, (layer, neuron) = planted
    # the paper's lambda 1000 and lr 1e-2, its penalty a mean over this model's 128 gates
    method = HardConcretePruning(penalty_reference_gates=0)
    scores = method.score(model, context)
    assert scores.shape == (2, 64) and scores.dtype == torch.float32 and scores.device.type == "cpu"
    assert divmod(int(scores.argmax()), 64) == (layer, neuron)
    others = scores.clone()
    others[layer, neuron] = 0.0
    assert scores[layer, neuron] > 0.5 > 20 * others.max()   # kept vs. shut, not a near-tie
    assert method.steps_taken < method.steps                  # stopped: kept fraction < 0.05


def test_model_weights_and_flags_unchanged(planted):
    model, context, _ = planted
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    model.train()
    HardConcretePruning(lambda_l0=100.0, steps=5, lr=0.1).score(model, context)
    assert model.training
    model.eval()
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_same_seed_same_scores_other_seed_other_noise(planted):
    model, context, _ = planted
    method = HardConcretePruning(lambda_l0=100.0, steps=10, lr=0.1)
    first, second = method.score(model, context), method.score(model, context)
    assert torch.equal(first, second)
    reseeded = method.score(model, dataclasses.replace(context, seed=context.seed + 1))
    assert not torch.equal(first, reseeded)


def test_stops_when_expected_kept_fraction_falls_under_threshold(planted):
    model, context, _ = planted
    method = HardConcretePruning(lambda_l0=1e6, steps=1000, lr=0.5, stop_keep_fraction=0.05)
    scores = method.score(model, context)
    # log_alpha must fall from logit(10/12)=1.61 to about -4.5: ~12 steps of 0.5 under Adam
    assert 5 <= method.steps_taken <= 30
    assert float(method.keep_probability(torch.logit(scores.double())).mean()) < 0.05
    never_stops = HardConcretePruning(lambda_l0=1e6, steps=20, lr=0.5, stop_keep_fraction=0.0)
    never_stops.score(model, context)
    assert never_stops.steps_taken == 20


def test_fast_loss_equals_target_nll_on_ragged_batch(planted):
    """Cutting columns after the last target label and unembedding only target columns are
    exact rewrites of `target_nll`; checked on rows of different lengths and spans."""
    model, context, _ = planted
    tokens = [seq[:length] for seq, length in zip(context.retain.tokens, (20, 14, 9, 20))]
    batch = collate(tokens, [1, 2, 3, 4], [(3, 8), (10, 14), (2, 4), (12, 19)], context.pad_id)
    assert hard_concrete._target_loss_fn(model) is hard_concrete._target_nll_kept_columns
    fast = hard_concrete._target_nll_kept_columns(model, hard_concrete._through_last_target(batch))
    assert hard_concrete._through_last_target(batch).input_ids.shape[1] == 18
    torch.testing.assert_close(fast, target_nll(model, batch), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [
    dict(lambda_l0=-1.0), dict(lambda_l0=float("inf")), dict(lambda_l0=float("nan")),
    dict(steps=0), dict(steps=2.5), dict(steps=True), dict(lr=0.0), dict(lr=-1e-3),
    dict(beta=0.0), dict(init_keep=0.0), dict(init_keep=1.5), dict(stop_keep_fraction=1.0),
    dict(stop_keep_fraction=-0.1), dict(lr="fast"), dict(penalty_reference_gates=-1),
    dict(penalty_reference_gates=1.5),
])
def test_invalid_hyperparameters_raise_user_error(bad):
    name = next(iter(bad))
    with pytest.raises(UserError, match=name):
        HardConcretePruning(**bad)


def test_hyperparameters_round_trip():
    method = HardConcretePruning()
    assert method.hyperparameters() == dict(lambda_l0=1000.0, steps=1000, lr=1e-2, beta=2 / 3,
                                            init_keep=0.9, stop_keep_fraction=0.05,
                                            penalty_reference_gates=24 * 4096)
    assert method.name == "hard-concrete"
    # the mean penalty every record made before the option used: their identity, unchanged
    legacy = HardConcretePruning(penalty_reference_gates=0).hyperparameters()
    assert legacy == dict(lambda_l0=1000.0, steps=1000, lr=1e-2, beta=2 / 3, init_keep=0.9, stop_keep_fraction=0.05)


@pytest.mark.parametrize("gates", [(2, 64), (6, 1536)])
def test_each_gate_feels_the_same_penalty_pull_on_any_model_size(gates):
    """d penalty / d keep-probability of one gate is lambda / 98,304 whatever the model's size
    (the papers' lambda on the papers' 24 x 4096 neurons), and lambda / (this model's gates) for
    the mean penalty."""
    log_alpha = torch.zeros(gates, requires_grad=True)
    for reference, pull in ((24 * 4096, 500.0 / (24 * 4096)), (0, 500.0 / (gates[0] * gates[1]))):
        method = HardConcretePruning(lambda_l0=500.0, penalty_reference_gates=reference)
        (gradient,) = torch.autograd.grad(method.penalty(log_alpha), log_alpha)
        keep = method.keep_probability(log_alpha.detach())
        torch.testing.assert_close(gradient, pull * keep * (1 - keep))     # pull x d keep / d log_alpha


def test_no_target_sequences_is_a_user_error(planted):
    model, context, _ = planted
    empty = dataclasses.replace(context, targets=context.targets.subset([]))
    with pytest.raises(UserError, match="target"):
        HardConcretePruning(steps=1).score(model, empty)
