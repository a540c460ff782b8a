"""Probabilistic discoverable extraction: exact p_z against Monte Carlo sampling, its special cases,
and the (n, p)-extraction rate on hand-made values."""

import math

import pytest
import torch
from scipy.stats import beta

from memsink_bench.errors import UserError
from memsink_bench.evaluate import collate, exact_match, sequence_losses
from memsink_bench.extraction import (attack_scores_from_logits, extracted_within, extraction_probabilities,
                                      extraction_rate)
from memsink_bench.setting import SequenceSet

from tests.helpers.tiny_fit import fit_tiny_model

VOCAB, SEQ_LEN = 64, 16


@pytest.fixture(scope="module")
def model_and_sequences():
    """A tiny GPT-2 fit for 30 steps on six sequences (their span probabilities are then far from
    0 and 1 at temperature 2), and the six with extraction spans of different starts and lengths."""
    generator = torch.Generator().manual_seed(1)
    tokens = [[0] + torch.randint(1, VOCAB, (SEQ_LEN - 1,), generator=generator).tolist() for _ in range(6)]
    spans = [(12, 15), (10, 13), (13, 16), (8, 12), (12, 14), (11, 15)]
    sequences = SequenceSet(tokens, list(range(1, 7)), spans)
    return fit_tiny_model(sequences, VOCAB, SEQ_LEN, steps=30), sequences


def _with_unlikely_target(model, sequences: SequenceSet) -> SequenceSet:
    """The first sequence again, with the last target token replaced by the model's least likely
    token at that position: outside any small top-k, so its p_z is exactly 0."""
    tokens = list(sequences.tokens[0])
    start, end = sequences.spans[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokens[:end - 1]])).logits[0, -1]
    tokens[end - 1] = int(logits.argmin())
    return SequenceSet(sequences.tokens + [tokens], sequences.ids + [7], sequences.spans + [(start, end)])


@torch.no_grad()
def _monte_carlo_matches(model, tokens: list[int], span: tuple[int, int], top_k: int, temperature: float,
                         samples: int, generator: torch.Generator) -> int:
    """Sample the span `samples` times autoregressively from the prefix with torch.multinomial
    over the top_k renormalised softmax(logits / temperature); count samples equal to the target."""
    start, end = span
    context = torch.tensor(tokens[:start]).repeat(samples, 1)
    for _ in range(end - start):
        logits = model(input_ids=context).logits[:, -1] / temperature
        values, indices = logits.topk(top_k, dim=-1)
        choice = torch.multinomial(torch.softmax(values, dim=-1), 1, generator=generator)
        context = torch.cat([context, indices.gather(1, choice)], dim=1)
    return int((context[:, start:] == torch.tensor(tokens[start:end])).all(dim=1).sum())


def test_exact_probability_lies_in_the_monte_carlo_interval(model_and_sequences):
    """5000 samples per sequence; the exact p_z must lie in the 99.9% Clopper-Pearson interval of
    the sampled frequency (half-width about 0.023 at p = 0.4: a missing renormalisation, a
    temperature applied after the top-k cut the wrong way or an off-by-one position all fall far
    outside it)."""
    model, sequences = model_and_sequences
    sequences = _with_unlikely_target(model, sequences)
    top_k, temperature, samples, alpha = 5, 2.0, 5000, 0.001
    exact = extraction_probabilities(model, sequences, 0, top_k, temperature)
    assert exact[-1] == 0.0 and ((exact[:-1] > 0.1) & (exact[:-1] < 0.9)).all()   # the test has power
    generator = torch.Generator().manual_seed(0)
    for index, (tokens, span) in enumerate(zip(sequences.tokens, sequences.spans)):
        hits = _monte_carlo_matches(model, tokens, span, top_k, temperature, samples, generator)
        low = beta.ppf(alpha / 2, hits, samples - hits + 1) if hits > 0 else 0.0
        high = beta.ppf(1 - alpha / 2, hits + 1, samples - hits) if hits < samples else 1.0
        assert low <= float(exact[index]) <= high, (index, hits / samples, float(exact[index]))


def test_top_k_one_is_greedy_exact_match_of_the_whole_span(model_and_sequences):
    model, sequences = model_and_sequences
    sequences = _with_unlikely_target(model, sequences)
    greedy = exact_match(model, sequences)
    whole_span = torch.tensor([m == n for m, n in zip(greedy.matched, greedy.lengths)])
    p_z = extraction_probabilities(model, sequences, 0, top_k=1, temperature=0.7)
    assert p_z.tolist() == whole_span.double().tolist()
    assert whole_span.any() and not whole_span.all()


def test_untruncated_sampling_at_temperature_one_is_the_target_likelihood(model_and_sequences):
    model, sequences = model_and_sequences
    report = sequence_losses(model, sequences, 0)
    p_z = extraction_probabilities(model, sequences, 0, top_k=10 * VOCAB, temperature=1.0)
    expected = torch.exp(-(report.target * report.target_len).double())
    assert torch.allclose(p_z, expected, rtol=1e-5)


def test_batched_probabilities_do_not_depend_on_padding(model_and_sequences):
    model, sequences = model_and_sequences
    together = extraction_probabilities(model, sequences, 0, top_k=5, temperature=1.3, batch_size=6)
    alone = extraction_probabilities(model, sequences, 0, top_k=5, temperature=1.3, batch_size=1)
    assert torch.allclose(together, alone, rtol=1e-5)


def test_attack_scores_from_one_set_of_logits_match_the_separate_calls(model_and_sequences):
    model, sequences = model_and_sequences
    batch = collate(sequences.tokens, sequences.ids, sequences.spans, 0)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids).logits
    membership, log_p_z = attack_scores_from_logits(logits, batch, torch.ones(6), top_k=5, temperature=2.0)
    assert torch.allclose(log_p_z.exp(), extraction_probabilities(model, sequences, 0, 5, 2.0))
    assert torch.allclose(membership.loss, -sequence_losses(model, sequences, 0).whole, atol=1e-6)


def test_extraction_rate_golden_values():
    p_z = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    assert extracted_within(p_z, 10)[1] == pytest.approx(1 - 0.9 ** 10)
    assert extraction_rate(p_z, 1) == 0.6                  # 0.5 counts: the condition is >= p
    assert extraction_rate(p_z, 10) == 0.8                 # 1 - 0.9^10 = 0.651 >= 0.5
    assert extraction_rate(p_z, 100) == 0.8                # p_z = 0 is never extracted
    assert extraction_rate(p_z, 10, p=0.95) == 0.6         # 0.651 < 0.95 <= 1 - 0.5^10
    assert extraction_rate(p_z[:0], 10) == 0.0


@pytest.mark.parametrize("top_k, temperature", [(0, 1.0), (-3, 1.0), (2.5, 1.0), (5, 0.0), (5, -1.0),
                                                (5, math.nan)])
def test_bad_sampling_parameters_are_user_errors(model_and_sequences, top_k, temperature):
    model, sequences = model_and_sequences
    with pytest.raises(UserError) as caught:
        extraction_probabilities(model, sequences, 0, top_k, temperature)
    assert ("top_k" in str(caught.value) or "temperature" in str(caught.value)) and "\n" not in str(caught.value)


@pytest.mark.parametrize("samples, p", [(0, 0.5), (-1, 0.5), (2.0, 0.5), (10, 0.0), (10, 1.0)])
def test_bad_extraction_rate_parameters_are_user_errors(samples, p):
    with pytest.raises(UserError) as caught:
        extraction_rate(torch.tensor([0.5]), samples, p)
    assert "\n" not in str(caught.value)
