"""Losses and exact match of a model on a SequenceSet, batched, under an optional neuron scale.

`scale_for(ids)` maps a batch's sequence IDs ([batch] int64) to a NeuronScaler scale (or None),
which is how MemSinks "own sinks" views, dropped memorization blocks and dropped top-r neurons
are all evaluated by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .interventions import NeuronScaler
from .setting import SequenceSet

ScaleFn = Callable[[torch.Tensor], "torch.Tensor | None"]


@dataclass
class Batch:
    input_ids: torch.Tensor       # [batch, pos] right-padded with pad_id
    labels: torch.Tensor          # [batch, pos] next-token targets aligned to input positions, -100 = ignore
    target_mask: torch.Tensor     # [batch, pos] True where the label is a target-span token
    ids: torch.Tensor             # [batch] sequence IDs

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.input_ids, self.labels, self.target_mask, self.ids)))


def collate(tokens: list[list[int]], ids: list[int], spans: list[tuple[int, int]], pad_id: int) -> Batch:
    """Right-pad to the longest sequence; label position t with token t+1."""
    width = max(len(s) for s in tokens)
    input_ids = torch.full((len(tokens), width), pad_id, dtype=torch.int64)
    labels = torch.full((len(tokens), width), -100, dtype=torch.int64)
    target_mask = torch.zeros((len(tokens), width), dtype=torch.bool)
    for row, (seq, (start, end)) in enumerate(zip(tokens, spans)):
        seq_t = torch.tensor(seq, dtype=torch.int64)
        input_ids[row, :len(seq)] = seq_t
        labels[row, :len(seq) - 1] = seq_t[1:]
        target_mask[row, max(start - 1, 0):min(end, len(seq)) - 1] = True
    return Batch(input_ids, labels, target_mask, torch.tensor(ids, dtype=torch.int64))


def batches(sequences: SequenceSet, batch_size: int, pad_id: int):
    for start in range(0, len(sequences), batch_size):
        stop = start + batch_size
        yield collate(sequences.tokens[start:stop], sequences.ids[start:stop],
                      sequences.spans[start:stop], pad_id)


def token_nll(model, batch: Batch) -> torch.Tensor:
    """[batch, pos] next-token negative log-likelihood (0 where the label is ignored)."""
    return _forward(model, batch)[0]


def _forward(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """([batch, pos] NLL, [batch, pos] True where the argmax prediction equals the label)."""
    return _scored(model(input_ids=batch.input_ids).logits, batch)


def _scored(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    nll = F.cross_entropy(logits.flatten(0, 1).float(), batch.labels.flatten().clamp_min(0),
                          reduction="none").view_as(batch.labels)
    valid = batch.labels != -100
    return nll * valid, (logits.argmax(-1) == batch.labels) & valid


def leading_matches(correct: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """[batch] target tokens predicted right before the first miss.

    Greedy decoding reproduces the true continuation up to its first mismatch exactly when the
    teacher-forced argmax does (until the first miss the greedy context *is* the true context),
    so exact match needs one forward pass, not a decoding loop.
    """
    run = torch.where(target_mask, correct, torch.ones_like(correct)).int().cumprod(dim=1)
    return (run * target_mask).sum(dim=1)


@dataclass
class LossReport:
    whole: torch.Tensor     # [n_sequences] mean NLL over every predicted token
    target: torch.Tensor    # [n_sequences] mean NLL over the target span
    matched: torch.Tensor   # [n_sequences] exact match: target tokens reproduced before the first miss
    target_len: torch.Tensor  # [n_sequences] target span length

    def summary(self) -> dict[str, float]:
        return {"loss": float(self.whole.mean()), "target_loss": float(self.target.mean())}

    def exact_match(self) -> "ExactMatch":
        return ExactMatch(self.matched.tolist(), self.target_len.tolist())


def teacher_forced_logits(model, sequences: SequenceSet, pad_id: int, batch_size: int = 32,
                          scale_for: ScaleFn | None = None, device=None):
    """Yield (batch, logits [batch, pos, vocab]) of one no-grad teacher-forced pass per batch, in
    sequence order, under an optional neuron scale (`scale_for(ids)`): the one evaluation pass that
    losses, exact match, membership inference and extraction all read."""
    device = device or next(model.parameters()).device
    scaler = NeuronScaler(model) if scale_for is not None else None
    was_training = model.training
    model.eval()
    try:
        for batch in batches(sequences, batch_size, pad_id):
            batch = batch.to(device)
            if scaler is not None:
                scaler.scale = scale_for(batch.ids)
            with torch.no_grad():
                logits = model(input_ids=batch.input_ids).logits
            yield batch, logits
    finally:
        if scaler is not None:
            scaler.remove()
        model.train(was_training)


@torch.no_grad()
def sequence_losses(model, sequences: SequenceSet, pad_id: int, batch_size: int = 32,
                    scale_for: ScaleFn | None = None, device=None, on_logits=None) -> LossReport:
    """Per-sequence losses and exact match from one teacher-forced pass per batch;
    `on_logits(batch, logits [batch, pos, vocab])` sees each batch's logits of that same pass
    (membership inference and extraction read them without a pass of their own)."""
    whole, target, matched, target_len = [], [], [], []
    for batch, logits in teacher_forced_logits(model, sequences, pad_id, batch_size, scale_for, device):
        if on_logits is not None:
            on_logits(batch, logits)
        nll, correct = _scored(logits, batch)
        valid = (batch.labels != -100)
        n_target = batch.target_mask.sum(1)
        whole.append((nll.sum(1) / valid.sum(1).clamp_min(1)).cpu())
        target.append(((nll * batch.target_mask).sum(1) / n_target.clamp_min(1)).cpu())
        matched.append(leading_matches(correct, batch.target_mask).cpu())
        target_len.append(n_target.cpu())
    return LossReport(torch.cat(whole), torch.cat(target), torch.cat(matched), torch.cat(target_len))


@torch.no_grad()
def greedy_targets(model, sequences: SequenceSet, batch_size: int = 32,
                   scale_for: ScaleFn | None = None, device=None) -> list[list[int]]:
    """Greedy-decode each sequence's target span from its prefix tokens[:start] (KV-cached).

    Sequences are grouped by prefix length so that no padding enters the prefix.
    """
    device = device or next(model.parameters()).device
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (start, end) in enumerate(sequences.spans):
        groups.setdefault((start, end - start), []).append(index)
    outputs: list[list[int]] = [[] for _ in range(len(sequences))]
    scaler = NeuronScaler(model) if scale_for is not None else None
    was_training = model.training
    model.eval()
    try:
        for (start, length), members in groups.items():
            for chunk_start in range(0, len(members), batch_size):
                chunk = members[chunk_start:chunk_start + batch_size]
                prefix = torch.tensor([sequences.tokens[i][:start] for i in chunk], device=device)
                if scaler is not None:
                    ids = torch.tensor([sequences.ids[i] for i in chunk], device=device)
                    scaler.scale = scale_for(ids)
                generated = _greedy(model, prefix, length)
                for row, index in enumerate(chunk):
                    outputs[index] = generated[row].tolist()
    finally:
        if scaler is not None:
            scaler.remove()
        model.train(was_training)
    return outputs


def _greedy(model, prefix: torch.Tensor, length: int) -> torch.Tensor:
    from .models import cached_forward

    out, past = cached_forward(model, prefix)
    tokens, next_token = [], out.logits[:, -1].argmax(-1)
    for _ in range(length):
        tokens.append(next_token)
        if len(tokens) == length:
            break
        out, past = cached_forward(model, next_token[:, None], past)
        next_token = out.logits[:, -1].argmax(-1)
    return torch.stack(tokens, dim=1)


def matched_prefix_length(generated: list[int], truth: list[int]) -> int:
    """Exact match: tokens that agree with the true continuation up to the first mismatch."""
    count = 0
    for produced, expected in zip(generated, truth):
        if produced != expected:
            break
        count += 1
    return count


@dataclass
class ExactMatch:
    matched: list[int]     # per sequence: tokens matched before the first mismatch
    lengths: list[int]     # per sequence: target span length

    def summary(self) -> dict[str, float]:
        full = [m == n for m, n in zip(self.matched, self.lengths)]
        return {"exact_match": sum(self.matched) / max(len(self.matched), 1),
                "exact_match_full": sum(full) / max(len(full), 1)}


def exact_match(model, sequences: SequenceSet, batch_size: int = 32, scale_for: ScaleFn | None = None,
                device=None) -> ExactMatch:
    """Exact match from one teacher-forced pass (see `leading_matches`); equal to greedy decoding."""
    return sequence_losses(model, sequences, 0, batch_size, scale_for, device).exact_match()


def greedy_exact_match(model, sequences: SequenceSet, batch_size: int = 32, scale_for: ScaleFn | None = None,
                       device=None) -> ExactMatch:
    """Exact match by literally greedy-decoding every target span (the slow, obvious definition)."""
    generated = greedy_targets(model, sequences, batch_size, scale_for, device)
    truths = [seq[start:end] for seq, (start, end) in zip(sequences.tokens, sequences.spans)]
    return ExactMatch([matched_prefix_length(g, t) for g, t in zip(generated, truths)],
                      [len(t) for t in truths])
