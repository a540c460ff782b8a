"""Membership inference on the forget sequences: attack scores, AUROC and MUSE's PrivLeak.

Every attack score is per sequence, from one teacher-forced pass over the WHOLE sequence: the
T = L - 1 predicted tokens x_1..x_{L-1} of a length-L sequence (the first token, BOS, is never
predicted; padding never counts). Every score is oriented so that HIGHER = MORE LIKELY A MEMBER
(a sequence the model trained on), and `auroc` reads them that way.

    loss             (Yeom et al. 2018; Carlini et al. 2021)    (1/T) sum_t log p(x_t | x_<t)
                     i.e. minus the mean NLL, the "loss attack" with its sign flipped
    zlib             (Carlini et al. 2021)                      [(1/T) sum_t log p(x_t | x_<t)] / zlib(x)
                     zlib(x) = len(zlib.compress(text.encode("utf-8"))) in bytes, of the decoded
                     text of the sequence (`zlib_entropy`); the paper's ratio of log-perplexity to
                     zlib entropy, sign flipped
    min_k            (Min-K% Prob, Shi et al. 2023)             mean of the K lowest log p(x_t | x_<t),
                     K = max(1, floor(min_k_fraction * T))
    min_k_plus_plus  (Min-K%++, Zhang et al. 2024)              mean of the K lowest
                     (log p(x_t | x_<t) - mu_t) / sigma_t, where mu_t = E_{z~p(.|x_<t)} log p(z | x_<t)
                     and sigma_t^2 = Var_{z~p(.|x_<t)} log p(z | x_<t) (floored at VARIANCE_FLOOR,
                     so a uniform next-token distribution scores 0 instead of 0/0)

`auroc(member_scores, nonmember_scores)` is the probability that a random member outscores a
random non-member (ties count one half): 1.0 = perfectly separated, 0.5 = indistinguishable.

`privleak(auc, auc_ref)` is MUSE's PrivLeak (Shi et al. 2024), (AUC - AUC_ref) / AUC_ref, with
MUSE's AUC, which labels the forget set as the NEGATIVE class of loss-like scores: MUSE's AUC is
1 - auroc here. So a model that still memorizes the forget set (auroc -> 1) scores strongly
negative (-1.0, MUSE's "-100%"), a model as ignorant of it as the reference scores 0, and
over-unlearning (the forget set now LESS likely than unseen text, auroc < 0.5) scores positive.
The reference is a model that never saw the forget set. Headline attack (HEADLINE_ATTACK):
Min-K%++; MUSE's released code scores PrivLeak with Min-K% Prob, which is computed beside it.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, fields
from typing import Callable

import torch

from .config import MetricsConfig
from .errors import UserError
from .evaluate import Batch, ScaleFn, teacher_forced_logits  # noqa: F401  (re-exported)
from .setting import SequenceSet

ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")
HEADLINE_ATTACK = "min_k_plus_plus"
MIN_K_FRACTION = MetricsConfig().min_k_fraction     # `--set metrics.min_k_fraction`
VARIANCE_FLOOR = 1e-6
ROW_CHUNK = 1024        # positions per full-vocabulary pass: keeps each [chunk, vocab] temporary in cache


@dataclass
class MembershipScores:
    """[n] per-sequence attack scores, higher = more likely a member (see the module docstring)."""

    loss: torch.Tensor
    zlib: torch.Tensor
    min_k: torch.Tensor
    min_k_plus_plus: torch.Tensor

    def __len__(self) -> int:
        return len(self.loss)

    @classmethod
    def cat(cls, parts: list["MembershipScores"]) -> "MembershipScores":
        return cls(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def by_attack(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in ATTACKS}


def check_min_k_fraction(min_k_fraction: float) -> None:
    if not 0 < min_k_fraction <= 1:
        raise UserError(f"min_k_fraction={min_k_fraction} is outside (0, 1]",
                        "set min_k_fraction to the share of lowest-scoring tokens to average, e.g. 0.2")


def zlib_entropy(sequences: SequenceSet, decode: Callable[[list[int]], str]) -> torch.Tensor:
    """[n] zlib-compressed length in bytes of each sequence's text, `decode(tokens)` of the whole
    sequence. Pass a decode that drops special tokens (e.g. `functools.partial(tokenizer.decode,
    skip_special_tokens=True)`), so BOS does not add the same bytes to every sequence. It does
    not depend on the model: compute it once per sequence set."""
    return torch.tensor([len(zlib.compress(decode(seq).encode("utf-8"))) for seq in sequences.tokens],
                        dtype=torch.float32)


def token_statistics(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits [batch, pos, vocab], labels [batch, pos] (-100 = not predicted) -> three
    [batch, pos] float32 tensors: log p(x_t), and the mean mu_t and standard deviation sigma_t of
    log p(.) under the model's own next-token distribution (0 where the label is ignored).

    Only labelled positions are computed, ROW_CHUNK at a time (each chunk's [chunk, vocab]
    temporaries stay in cache: about 2x faster than whole-batch passes at the cpu preset), with
    Var_p(log p) = E_p[(log p)^2] - mu^2 from two reductions over the vocabulary.
    """
    flat_logits, flat_labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    index = (flat_labels != -100).nonzero()[:, 0]
    outputs = [torch.zeros(flat_labels.shape, dtype=torch.float32, device=logits.device) for _ in range(3)]
    for start in range(0, len(index), ROW_CHUNK):
        rows = index[start:start + ROW_CHUNK]
        log_probs = torch.log_softmax(flat_logits.index_select(0, rows).float(), dim=-1)   # [chunk, vocab]
        weighted = log_probs.exp() * log_probs
        mu = weighted.sum(-1)
        variance = torch.linalg.vecdot(weighted, log_probs) - mu.square()
        outputs[0][rows] = log_probs.gather(-1, flat_labels[rows, None])[:, 0]
        outputs[1][rows] = mu
        outputs[2][rows] = variance.clamp_min(VARIANCE_FLOOR).sqrt()
    token_log_prob, mean, std = (out.view(labels.shape) for out in outputs)
    return token_log_prob, mean, std


def lowest_k_mean(values: torch.Tensor, valid: torch.Tensor, fraction: float) -> torch.Tensor:
    """[batch, pos] values and validity -> [batch] mean of the K = max(1, floor(fraction * T))
    lowest valid values of each row (T = valid values in the row; NaN for a row with none)."""
    count = valid.sum(1)
    k = torch.floor(count.double() * fraction).clamp_min(1).to(count.dtype)
    ordered = values.masked_fill(~valid, math.inf).sort(dim=1).values
    take = torch.arange(values.shape[1], device=values.device)[None, :] < k[:, None]
    total = torch.where(take, ordered, torch.zeros_like(ordered)).sum(1)
    return torch.where(count > 0, total / k, torch.full_like(total, math.nan))


def membership_scores_from_logits(logits: torch.Tensor, batch: Batch, zlib_lengths: torch.Tensor,
                                  min_k_fraction: float = MIN_K_FRACTION) -> MembershipScores:
    """The four attack scores of each row of a batch from its teacher-forced logits.

    logits [batch, pos, vocab] of `batch.input_ids`; zlib_lengths [batch] (`zlib_entropy` of the
    batch's sequences, in batch order). Returns [batch] scores. The same logits that give the
    losses and exact match serve here, so this costs no extra forward pass.
    """
    check_min_k_fraction(min_k_fraction)
    valid = batch.labels != -100
    token_log_prob, mu, sigma = token_statistics(logits, batch.labels)
    count = valid.sum(1).clamp_min(1)
    mean_log_prob = token_log_prob.sum(1) / count
    normalized = (token_log_prob - mu) / sigma
    return MembershipScores(
        loss=mean_log_prob.cpu(),
        zlib=mean_log_prob.cpu() / zlib_lengths.float().cpu(),
        min_k=lowest_k_mean(token_log_prob, valid, min_k_fraction).cpu(),
        min_k_plus_plus=lowest_k_mean(normalized, valid, min_k_fraction).cpu(),
    )


def membership_scores(model, sequences: SequenceSet, pad_id: int, decode: Callable[[list[int]], str] | None,
                      min_k_fraction: float = MIN_K_FRACTION, batch_size: int = 32,
                      scale_for: ScaleFn | None = None, device=None,
                      zlib_lengths: torch.Tensor | None = None) -> MembershipScores:
    """[n] attack scores of every sequence of a set, one forward pass per batch.

    `decode` turns a sequence's tokens into its text for the zlib score (see `zlib_entropy`);
    pass `zlib_lengths` instead to reuse lengths computed once for the set.
    """
    check_min_k_fraction(min_k_fraction)
    lengths = zlib_entropy(sequences, decode) if zlib_lengths is None else zlib_lengths
    parts, start = [], 0
    for batch, logits in teacher_forced_logits(model, sequences, pad_id, batch_size, scale_for, device):
        stop = start + len(batch.ids)
        parts.append(membership_scores_from_logits(logits, batch, lengths[start:stop], min_k_fraction))
        start = stop
    return MembershipScores.cat(parts)


def auroc(member_scores, nonmember_scores) -> float:
    """AUROC of telling members from non-members by score, HIGHER score = more likely a member:
    P(member score > non-member score) + P(equal) / 2, the Mann-Whitney U statistic over
    n_members * n_nonmembers, from mid-ranks of the pooled scores. [n_members], [n_nonmembers]."""
    from scipy.stats import rankdata

    members = torch.as_tensor(member_scores, dtype=torch.float64).flatten()
    nonmembers = torch.as_tensor(nonmember_scores, dtype=torch.float64).flatten()
    if len(members) == 0 or len(nonmembers) == 0:
        raise UserError(f"AUROC needs member and non-member scores (got {len(members)} and {len(nonmembers)})",
                        "score at least one forget and one held-out sequence")
    pooled = torch.cat([members, nonmembers])
    if torch.isnan(pooled).any():
        raise UserError("a membership score is NaN", "check for sequences with no predicted token")
    ranks = rankdata(pooled.numpy())
    n_members, n_nonmembers = len(members), len(nonmembers)
    u = ranks[:n_members].sum() - n_members * (n_members + 1) / 2
    return float(u / (n_members * n_nonmembers))


def membership_aurocs(members: MembershipScores, nonmembers: MembershipScores) -> dict[str, float]:
    """AUROC of every attack: forget (member) vs held-out (non-member) sequences."""
    return {name: auroc(getattr(members, name), getattr(nonmembers, name)) for name in ATTACKS}


def privleak(auc: float, auc_ref: float) -> float | None:
    """MUSE's PrivLeak of a model against a reference model that never saw the forget set.

    `auc` and `auc_ref` are this module's AUROCs (forget = members, higher score = member) of the
    model and of the reference. MUSE's AUC is the complement (forget labelled negative), so
        PrivLeak = (AUC_muse - AUC_muse_ref) / AUC_muse_ref
                 = ((1 - auc) - (1 - auc_ref)) / (1 - auc_ref) = (auc_ref - auc) / (1 - auc_ref).
    As a fraction (-1.0 is MUSE's -100%). Near 0 is ideal; a model that still memorizes is
    strongly negative (-1.0 at auc = 1, auc_ref = 0.5); over-unlearning is positive. None if the
    reference itself separates perfectly (auc_ref = 1: no room to compare against).
    """
    denominator = 1.0 - auc_ref
    return (auc_ref - auc) / denominator if abs(denominator) > 1e-12 else None
