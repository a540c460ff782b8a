"""Extraction under sampling: probabilistic discoverable extraction (Hayes et al. 2024).

A sequence's extraction span is its target span: prefix tokens[:start], target continuation
z = tokens[start:end]. Sampling one token at a time from q_t = softmax(logits_t / temperature)
renormalised over the top_k most likely tokens (ties at the k-th logit kept, as transformers'
TopKLogitsWarper does; top_k >= vocab = no truncation), the probability that one sample of the
span equals z is exact from ONE teacher-forced pass, because until the first deviation the
sampled context is the true context:

    p_z = prod_{t in span} q_t(z_t),   q_t(z_t) = 0 when z_t is not among the top_k at t.

A sequence is extracted within n samples with probability 1 - (1 - p_z)^n, and is
(n, p)-discoverably extractable when that is >= p. `extraction_rate` is the share of sequences
that are. Greedy exact match (evaluate.py) is the top_k = 1 case: p_z is then 1 exactly when
greedy decoding reproduces the whole span, else 0.

`attack_scores_from_logits` gives this module's log p_z and privacy.py's membership scores from
the same logits, so both ride on the evaluation pass that computes the losses.
"""

from __future__ import annotations

import math

import torch

from .config import MetricsConfig
from .errors import UserError
from .evaluate import Batch, ScaleFn
from .privacy import MIN_K_FRACTION, MembershipScores, membership_scores_from_logits, teacher_forced_logits
from .setting import SequenceSet

EXTRACTION_P = MetricsConfig().extraction_p      # p of the (n, p)-extraction rate (`--set metrics.extraction_p`)


def check_sampling(top_k: int, temperature: float) -> None:
    if not (isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 1):
        raise UserError(f"top_k={top_k!r} must be an integer >= 1",
                        "set top_k to how many most likely tokens sampling keeps, e.g. 40")
    if not temperature > 0:
        raise UserError(f"temperature={temperature!r} must be positive",
                        "set temperature to a number > 0, e.g. 1.0 (below 1 sharpens, above flattens)")


def extraction_log_probabilities_from_logits(logits: torch.Tensor, batch: Batch, top_k: int,
                                             temperature: float) -> torch.Tensor:
    """logits [batch, pos, vocab] of a teacher-forced pass -> [batch] float64 log p_z over each
    row's target span (`batch.target_mask`); -inf where a target token falls outside the top_k.

    Only the target positions are computed.
    """
    check_sampling(top_k, temperature)
    where = batch.target_mask.nonzero()                               # [n_target, 2] (row, pos)
    scaled = logits[where[:, 0], where[:, 1]].float() / temperature    # [n_target, vocab]
    target = batch.labels[where[:, 0], where[:, 1]]
    target_logit = scaled.gather(-1, target[:, None])[:, 0]
    if top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[:, -1]
        kept = scaled >= kth[:, None]
        log_norm = torch.logsumexp(scaled.masked_fill(~kept, -math.inf), dim=-1)
        log_q = torch.where(target_logit >= kth, target_logit - log_norm,
                            torch.full_like(target_logit, -math.inf))
    else:
        log_q = target_logit - torch.logsumexp(scaled, dim=-1)
    log_p = torch.zeros(len(batch.labels), dtype=torch.float64, device=logits.device)
    return log_p.index_add_(0, where[:, 0], log_q.double()).cpu()


@torch.no_grad()
def extraction_probabilities(model, sequences: SequenceSet, pad_id: int, top_k: int, temperature: float,
                             batch_size: int = 32, scale_for: ScaleFn | None = None, device=None) -> torch.Tensor:
    """[n] float64 p_z of every sequence (see the module docstring), one forward pass per batch."""
    check_sampling(top_k, temperature)
    parts = [extraction_log_probabilities_from_logits(logits, batch, top_k, temperature)
             for batch, logits in teacher_forced_logits(model, sequences, pad_id, batch_size, scale_for, device)]
    return torch.cat(parts).exp()


def check_extraction_rate(samples: int, p: float) -> None:
    if not (isinstance(samples, int) and not isinstance(samples, bool) and samples >= 1):
        raise UserError(f"samples={samples!r} must be an integer >= 1",
                        "set samples to the number n of sampling attempts, e.g. 1, 10 or 100")
    if not 0 < p < 1:
        raise UserError(f"p={p!r} is outside (0, 1)", "set p to the required extraction probability, e.g. 0.5")


def extracted_within(p_z: torch.Tensor, samples: int) -> torch.Tensor:
    """[n] probability 1 - (1 - p_z)^samples that at least one of `samples` samples is the target."""
    check_extraction_rate(samples, EXTRACTION_P)
    return 1.0 - (1.0 - p_z.double()) ** samples


def extraction_rate(p_z: torch.Tensor, samples: int, p: float = EXTRACTION_P) -> float:
    """(n, p)-discoverable extraction rate: share of sequences with 1 - (1 - p_z)^n >= p, n = samples."""
    check_extraction_rate(samples, p)
    if len(p_z) == 0:
        return 0.0
    return float((extracted_within(p_z, samples) >= p).double().mean())


def attack_scores_from_logits(logits: torch.Tensor, batch: Batch, zlib_lengths: torch.Tensor, *,
                              min_k_fraction: float = MIN_K_FRACTION, top_k: int,
                              temperature: float) -> tuple[MembershipScores, torch.Tensor]:
    """Both attacks from one batch's teacher-forced logits [batch, pos, vocab]: the membership
    scores (privacy.py; zlib_lengths [batch] is privacy.zlib_entropy of the batch's sequences)
    and [batch] float64 log p_z. Call it on the logits the evaluation pass already has, so
    neither attack needs a pass of its own."""
    return (membership_scores_from_logits(logits, batch, zlib_lengths, min_k_fraction),
            extraction_log_probabilities_from_logits(logits, batch, top_k, temperature))
