"""Membership inference: the scores against their definitions, AUROC golden values, PrivLeak's sign."""

import copy
import math
import zlib

import pytest
import torch

from memsink_bench.config import ModelConfig
from memsink_bench.errors import UserError
from memsink_bench.evaluate import collate, sequence_losses, token_nll
from memsink_bench.interventions import per_layer_scale
from memsink_bench.models import build_model
from memsink_bench.privacy import (VARIANCE_FLOOR, auroc, check_min_k_fraction, membership_aurocs,
                                   membership_scores, membership_scores_from_logits, privleak,
                                   zlib_entropy)
from memsink_bench.setting import SequenceSet

VOCAB, SEQ_LEN = 64, 20


def random_sequences(count: int, seed: int, first_id: int = 1, length: int = SEQ_LEN) -> SequenceSet:
    generator = torch.Generator().manual_seed(seed)
    tokens = [[0] + torch.randint(1, VOCAB, (length - 1,), generator=generator).tolist() for _ in range(count)]
    return SequenceSet(tokens, list(range(first_id, first_id + count)), [(length // 2, length)] * count)


def fit(model, sequences: SequenceSet, steps: int, lr: float, ascend: bool = False):
    """Adam on the mean NLL of `sequences` (gradient ascent with `ascend`)."""
    batch = collate(sequences.tokens, sequences.ids, sequences.spans, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = token_nll(model, batch).sum() / (batch.labels != -100).sum()
        optimizer.zero_grad()
        (-loss if ascend else loss).backward()
        optimizer.step()
    return model.eval()


def decode(tokens: list[int]) -> str:
    return "".join(chr(ord("a") + t % 26) for t in tokens[1:])


@pytest.fixture(scope="module")
def models():
    """(never-seen reference, memorizing model, over-unlearned model), forget and held-out sets.

    The reference is the untrained initialisation; the memorizing model is it fine-tuned on the
    8 forget sequences; the over-unlearned one is it after gradient ascent on them, so that it
    rates the forget set below text it never saw."""
    forget, held_out = random_sequences(8, seed=1), random_sequences(64, seed=2, first_id=100)
    reference = build_model(ModelConfig(n_layer=1, n_embd=32, n_head=2, d_mlp=64), VOCAB, SEQ_LEN, 0).eval()
    memorizing = fit(copy.deepcopy(reference), forget, steps=150, lr=1e-2)
    over_unlearned = fit(copy.deepcopy(reference), forget, steps=10, lr=1e-3, ascend=True)
    return reference, memorizing, over_unlearned, forget, held_out


# --- AUROC -----------------------------------------------------------------------------------

def test_auroc_golden_values_higher_score_is_member():
    assert auroc([3.0, 4.0, 5.0], [0.0, 1.0, 2.0]) == 1.0
    assert auroc([0.0, 1.0, 2.0], [3.0, 4.0, 5.0]) == 0.0
    assert auroc([1.0, 3.0], [2.0, 0.0]) == 0.75                 # 3 of the 4 pairs ranked right
    assert auroc([1.0, 1.0], [1.0, 1.0]) == 0.5                  # ties count one half
    assert auroc([2.0, 1.0], [1.0]) == 0.75                      # one win, one tie


def test_auroc_equals_the_pairwise_definition_with_ties():
    generator = torch.Generator().manual_seed(0)
    members = torch.randint(0, 6, (37,), generator=generator).double()
    nonmembers = torch.randint(0, 6, (23,), generator=generator).double()
    wins = (members[:, None] > nonmembers[None, :]).double() + 0.5 * (members[:, None] == nonmembers[None, :])
    assert auroc(members, nonmembers) == pytest.approx(float(wins.mean()), abs=1e-12)


def test_auroc_is_one_half_when_both_come_from_one_distribution():
    """2000 + 2000 draws of one normal: under the null the AUROC has mean 1/2 and standard
    deviation sqrt((n + m + 1) / (12 n m)) = 0.0091; 4.5 of those (0.041) would be exceeded with
    probability 7e-6."""
    generator = torch.Generator().manual_seed(0)
    n = m = 2000
    tolerance = 4.5 * math.sqrt((n + m + 1) / (12 * n * m))
    assert abs(auroc(torch.randn(n, generator=generator), torch.randn(m, generator=generator)) - 0.5) < tolerance


def test_auroc_rejects_empty_sets():
    with pytest.raises(UserError):
        auroc([], [1.0])


# --- the scores against their definitions ------------------------------------------------------

def _literal_scores(logits: torch.Tensor, tokens: list[int], fraction: float, zlib_length: float) -> dict:
    """One sequence's four scores straight from the papers' definitions, in float64."""
    log_probs = torch.log_softmax(logits.double(), dim=-1)               # [pos, vocab]
    token_lp, normalized = [], []
    for t in range(len(tokens) - 1):
        lp = log_probs[t]
        mu = float((lp.exp() * lp).sum())
        sigma = math.sqrt(max(float((lp.exp() * (lp - mu) ** 2).sum()), VARIANCE_FLOOR))
        token_lp.append(float(lp[tokens[t + 1]]))
        normalized.append((token_lp[-1] - mu) / sigma)
    k = max(1, int(fraction * len(token_lp)))
    mean_lp = sum(token_lp) / len(token_lp)
    return {"loss": mean_lp, "zlib": mean_lp / zlib_length, "min_k": sum(sorted(token_lp)[:k]) / k,
            "min_k_plus_plus": sum(sorted(normalized)[:k]) / k}


def test_scores_from_logits_match_the_definitions():
    generator = torch.Generator().manual_seed(3)
    tokens = [[0] + torch.randint(1, VOCAB, (n - 1,), generator=generator).tolist() for n in (12, 7, 10)]
    batch = collate(tokens, [1, 2, 3], [(3, 6)] * 3, pad_id=0)
    logits = 3 * torch.randn(3, 12, VOCAB, generator=generator)
    logits[1, 2] = 0.0                                                 # a uniform position: sigma floored
    lengths = torch.tensor([11.0, 5.0, 8.0])
    scores = membership_scores_from_logits(logits, batch, lengths, min_k_fraction=0.3)
    for row, seq in enumerate(tokens):
        expected = _literal_scores(logits[row, :len(seq)], seq, 0.3, float(lengths[row]))
        for name, value in expected.items():
            assert float(getattr(scores, name)[row]) == pytest.approx(value, abs=1e-5), (row, name)


def test_min_k_of_every_token_is_the_loss_score(models):
    _, memorizing, _, forget, _ = models
    everything = membership_scores(memorizing, forget, 0, decode, min_k_fraction=1.0)
    assert torch.allclose(everything.min_k, everything.loss, atol=1e-6)
    assert torch.allclose(everything.zlib * zlib_entropy(forget, decode), everything.loss, atol=1e-6)


def test_scores_do_not_depend_on_batching_or_padding(models):
    _, memorizing, _, _, _ = models
    generator = torch.Generator().manual_seed(4)
    tokens = [[0] + torch.randint(1, VOCAB, (n - 1,), generator=generator).tolist() for n in (20, 9, 14, 5)]
    sequences = SequenceSet(tokens, [1, 2, 3, 4], [(2, 4)] * 4)
    together = membership_scores(memorizing, sequences, 0, decode, batch_size=4)
    alone = membership_scores(memorizing, sequences, 0, decode, batch_size=1)
    for name, values in together.by_attack().items():
        assert torch.allclose(values, alone.by_attack()[name], atol=1e-5), name


def test_scores_under_a_neuron_scale_are_those_of_the_scaled_model(models):
    _, memorizing, _, forget, _ = models
    keep = torch.ones(1, 64)
    keep[0, ::2] = 0.0                                                 # every other neuron dropped
    scale_for = lambda ids: per_layer_scale(keep)                      # noqa: E731
    scaled = membership_scores(memorizing, forget, 0, decode, scale_for=scale_for)
    expected = -sequence_losses(memorizing, forget, 0, scale_for=scale_for).whole
    assert torch.allclose(scaled.loss, expected, atol=1e-6)
    assert not torch.allclose(scaled.loss, membership_scores(memorizing, forget, 0, decode).loss, atol=1e-3)


def test_zlib_entropy_is_the_compressed_length_of_the_decoded_text():
    sequences = SequenceSet([[0] + [5] * 40, [0] + list(range(1, 41))], [1, 2], [(1, 2), (1, 2)])
    lengths = zlib_entropy(sequences, decode)
    assert lengths.tolist() == [len(zlib.compress(decode(seq).encode("utf-8"))) for seq in sequences.tokens]
    assert lengths[0] < lengths[1]                                     # a repeated token compresses well


# --- on models ---------------------------------------------------------------------------------

def test_auroc_is_one_when_every_forget_loss_is_below_every_held_out_loss(models):
    _, memorizing, _, forget, held_out = models
    members = membership_scores(memorizing, forget, 0, decode)
    nonmembers = membership_scores(memorizing, held_out, 0, decode)
    assert float(-members.loss.max()) < float(-nonmembers.loss.min())   # the precondition: losses separate
    assert auroc(members.loss, nonmembers.loss) == 1.0
    assert membership_aurocs(members, nonmembers)["min_k_plus_plus"] == 1.0


def test_auroc_is_near_one_half_on_unseen_sequences_of_one_distribution(models):
    """200 vs 200 unseen random sequences: null standard deviation sqrt(401 / (12 * 200^2)) = 0.029;
    every attack must lie within 4 of them (0.116)."""
    _, memorizing, _, _, _ = models
    first, second = random_sequences(200, seed=7, first_id=1000), random_sequences(200, seed=8, first_id=2000)
    tolerance = 4 * math.sqrt(401 / (12 * 200 * 200))
    aurocs = membership_aurocs(membership_scores(memorizing, first, 0, decode),
                               membership_scores(memorizing, second, 0, decode))
    assert all(abs(value - 0.5) < tolerance for value in aurocs.values()), aurocs


def test_privleak_golden_values():
    assert privleak(1.0, 0.5) == -1.0            # still memorizes: MUSE's -100%
    assert privleak(0.5, 0.5) == 0.0             # as ignorant as the never-seen reference
    assert privleak(0.25, 0.5) == 0.5            # over-unlearned: positive
    assert privleak(0.8, 0.6) == pytest.approx((0.2 - 0.4) / 0.4)   # MUSE's AUCs are 1 - auroc
    assert privleak(0.9, 1.0) is None


def test_privleak_is_strongly_negative_on_a_memorizing_model_and_positive_when_over_unlearned(models):
    reference, memorizing, over_unlearned, forget, held_out = models

    def headline_auc(model) -> float:
        return membership_aurocs(membership_scores(model, forget, 0, decode),
                                 membership_scores(model, held_out, 0, decode))["min_k_plus_plus"]

    auc_ref = headline_auc(reference)
    assert 0.2 < auc_ref < 0.8                    # the reference never saw the forget set
    assert privleak(headline_auc(memorizing), auc_ref) < -0.9
    assert privleak(headline_auc(over_unlearned), auc_ref) > 0.5


@pytest.mark.parametrize("fraction", [0.0, -0.2, 1.5, math.nan])
def test_min_k_fraction_outside_its_range_is_a_user_error(fraction):
    with pytest.raises(UserError) as caught:
        check_min_k_fraction(fraction)
    assert "min_k_fraction" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(UserError):
        membership_scores_from_logits(torch.zeros(1, 3, VOCAB), collate([[0, 1, 2]], [1], [(1, 3)], 0),
                                      torch.ones(1), min_k_fraction=fraction)
    check_min_k_fraction(1.0)
