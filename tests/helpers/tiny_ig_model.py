"""The tiny float64 GPT-2 both IG test files integrate over: four right-padded sequences with
target spans of every shape, fit for 25 Adam steps so the attributions are far from the ~1e-7 of
random weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from memsink_bench.config import ModelConfig
from memsink_bench.evaluate import collate
from memsink_bench.models import build_model

VOCAB = 100
LENGTHS = [12, 9, 12, 7]                     # different lengths: right padding inside a batch
SPANS = [(4, 12), (2, 9), (11, 12), (0, 3)]  # [start, end) target tokens; (0, 3) -> positions 0, 1


def fitted_tiny_model():
    """(model, batch, tokens): 2 layers, d_model 32, d_mlp 64, float64, 24 target positions."""
    generator = torch.Generator().manual_seed(1)
    tokens = [torch.randint(1, VOCAB, (n,), generator=generator).tolist() for n in LENGTHS]
    batch = collate(tokens, [1, 2, 3, 4], SPANS, pad_id=0)
    model = build_model(ModelConfig(n_layer=2, n_embd=32, n_head=2, d_mlp=64), VOCAB, 16, seed=0).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(25):
        optimizer.zero_grad()
        logits = model(input_ids=batch.input_ids, attention_mask=torch.ones_like(batch.input_ids)).logits
        F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=-100).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model, batch, tokens
