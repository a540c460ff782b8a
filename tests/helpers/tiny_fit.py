"""A tiny GPT-2 fit on given sequences by Adam on their mean next-token loss (the scoring tests)."""

from __future__ import annotations

import torch

from memsink_bench.config import ModelConfig
from memsink_bench.evaluate import collate, token_nll
from memsink_bench.models import build_model
from memsink_bench.setting import SequenceSet


def fit_tiny_model(sequences: SequenceSet, vocab: int, seq_len: int, steps: int):
    """1 layer, d_model 32, d_mlp 64, seed 0, `steps` Adam steps (lr 1e-2) on all of `sequences`; eval mode."""
    model = build_model(ModelConfig(n_layer=1, n_embd=32, n_head=2, d_mlp=64), vocab, seq_len, 0)
    batch = collate(sequences.tokens, sequences.ids, sequences.spans, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = token_nll(model, batch).sum() / (batch.labels != -100).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
