"""Exact match: the definition on hand-made cases, and the one-pass form equals greedy decoding."""

import torch

from memsink_bench.config import ModelConfig
from memsink_bench.evaluate import (ExactMatch, exact_match, greedy_exact_match, leading_matches,
                                    matched_prefix_length)
from memsink_bench.models import build_model
from memsink_bench.setting import SequenceSet


def test_matched_prefix_length_counts_up_to_the_first_mismatch():
    assert matched_prefix_length([1, 2, 3, 4], [1, 2, 3, 4]) == 4
    assert matched_prefix_length([1, 2, 9, 4], [1, 2, 3, 4]) == 2     # later matches do not count
    assert matched_prefix_length([9, 2, 3, 4], [1, 2, 3, 4]) == 0
    assert matched_prefix_length([], [1]) == 0


def test_summary_reports_mean_tokens_and_share_fully_reproduced():
    summary = ExactMatch([4, 2, 0, 4], [4, 4, 4, 4]).summary()
    assert summary == {"exact_match": 2.5, "exact_match_full": 0.5}


def test_leading_matches_only_counts_target_positions():
    correct = torch.tensor([[False, True, True, False, True], [True, True, True, True, True]])
    target = torch.tensor([[False, True, True, True, False], [False, False, True, True, True]])
    assert leading_matches(correct, target).tolist() == [2, 3]


def test_one_pass_exact_match_equals_greedy_decoding():
    """A tiny model that memorized two sequences (fully), and sequences it did not (partly)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=2, n_embd=32, n_head=2, d_mlp=64), 50, 40, 0)
    memorized = [[0] + torch.randint(1, 50, (20,)).tolist() for _ in range(2)]
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    data = torch.tensor(memorized)
    for _ in range(200):
        loss = model(input_ids=data, labels=data).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    others = [[0] + torch.randint(1, 50, (n,)).tolist() for n in (18, 25, 21)]
    tokens = memorized + others
    spans = [(6, 16), (3, 21), (5, 15), (10, 20), (12, 22)]          # different prefix lengths
    sequences = SequenceSet(tokens, list(range(1, 6)), spans)
    fast, slow = exact_match(model, sequences), greedy_exact_match(model, sequences)
    assert fast.matched == slow.matched
    assert fast.matched[:2] == [10, 18]                               # memorized: reproduced in full
    assert max(fast.matched[2:]) < 10
