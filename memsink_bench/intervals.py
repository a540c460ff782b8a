"""Uncertainty of a leaderboard number: a bootstrap over evaluation seeds and forget sequences.

A row's number is the mean over its seeds (replicate records of one configuration) of a curve
statistic, e.g. the largest gap closed within 0.05 nats. One bootstrap draw resamples the seeds
with replacement and, inside each drawn seed whose record keeps per-sequence values (schema 2),
the repeated (forget) and validation sequences with replacement, and recomputes every point's
gap closed and degradation from the resampled means before taking the statistic. Records without
per-sequence values (schema 1) are resampled over seeds only. The interval is the percentile
interval of B draws (B = 2000, seeded, so tables are reproducible); with one seed and no
per-sequence values there is no interval. This two-level resample is written out here because
scipy.stats.bootstrap resamples each sample independently and cannot nest sequences in seeds;
single-level intervals (per-seed values, paired differences) use scipy.stats.bootstrap.

Paired comparisons (a method against its random control, or against the top row) take the
per-seed differences of the two rows on their common training seeds and bootstrap their mean
(scipy.stats.bootstrap, percentile); a difference whose 95% interval contains 0 cannot be told
apart from 0.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .record import ResultRecord

DRAWS = 2000
LEVEL = 0.95
SEED = 20241201


def _curves(record: ResultRecord, rng: np.random.Generator, draws: int,
            resample: bool = True) -> tuple[np.ndarray, ...]:
    """(gap closed on the record's forget span [draws, points], gap closed on the other span
    [draws, points], degradation [draws, points], the MemSinks paper's gap closed [draws, points],
    the gap closed to the never-seen model [draws, points]) under `draws` resamples of the record's
    sequences (the stored means repeated when it has no per-sequence values).

    The paper's gap is the whole-sequence forgetting over the distance from the unedited model's
    repeated loss to its own validation loss; NaN where that level means nothing (a canary, which
    a model that never saw it predicts at about log(vocab) a token, or a pretrained model's
    paragraphs). The never-seen gap is the forget-span forgetting over the distance to the loss of
    the model trained without the forget sequences (exact unlearning's level, and the one that
    means something for a canary); NaN where the record has no never-seen model."""
    points = record.points
    on_sequence = record.forget_span == "sequence"
    data = (record.config or {}).get("data")
    paper_level = isinstance(data, dict) and not data.get("canary_length")
    unseen = record.never_seen
    field = "repeated_loss" if on_sequence else "repeated_target_loss"
    stored = [p.per_sequence for p in points] + [record.before.per_sequence, record.no_rep.per_sequence]
    if unseen is not None and unseen.per_sequence is None and resample and all(s is not None for s in stored):
        unseen = None                   # its level cannot be resampled: no never-seen gap, the rest as usual
    if not resample or any(s is None for s in stored):
        gap = np.array([np.nan if p.gap_closed is None else p.gap_closed for p in points])
        target = np.array([np.nan if p.gap_closed_target is None else p.gap_closed_target for p in points])
        degradation = np.array([p.degradation for p in points])
        forget, other = (gap, target) if on_sequence else (target, gap)
        width = record.before.val_loss - record.before.repeated_loss
        paper = np.array([p.forgetting / width if paper_level and abs(width) > 1e-9 else np.nan for p in points])
        width = np.nan if unseen is None else getattr(unseen, field) - getattr(record.before, field)
        never = np.array([(p.forgetting if on_sequence else p.forgetting_target) / width
                          if abs(width) > 1e-9 else np.nan for p in points])
        return tuple(np.broadcast_to(v, (draws, len(points))) for v in (forget, other, degradation, paper, never))
    before, norep = record.before.per_sequence, record.no_rep.per_sequence
    rep = rng.integers(0, len(before.repeated_loss), (draws, len(before.repeated_loss)))
    val = rng.integers(0, len(before.val_loss), (draws, len(before.val_loss)))

    def mean(values, index):               # [n] values, [draws, n] indices -> [draws]
        return np.asarray(values, dtype=float)[index].mean(axis=1)

    def closed(field, level):             # [draws, points]: (after - base) / (level - base) on `field`
        base = mean(getattr(before, field), rep)
        after = np.stack([mean(getattr(p.per_sequence, field), rep) for p in points], axis=1)
        width = (level - base)[:, None]
        return np.where(np.abs(width) > 1e-9, (after - base[:, None]) / np.where(width == 0, 1, width), np.nan)

    def gap_of(field):                    # to the no-rep model's loss on the same sequences
        return closed(field, mean(getattr(norep, field), rep))

    val_before = mean(before.val_loss, val)
    degradation = np.stack([mean(p.per_sequence.val_loss, val) for p in points], axis=1) - val_before[:, None]
    sequence, extraction = gap_of("repeated_loss"), gap_of("repeated_target_loss")
    paper = closed("repeated_loss", val_before) if paper_level else np.full_like(degradation, np.nan)
    forget, other = (sequence, extraction) if on_sequence else (extraction, sequence)
    never = (closed(field, mean(getattr(unseen.per_sequence, field), rep)) if unseen is not None
             else np.full_like(degradation, np.nan))
    return forget, other, degradation, paper, never


def best_within(gap: np.ndarray, degradation: np.ndarray, budget: float) -> np.ndarray:
    """[draws]: the largest gap closed (capped at 1) among points within the budget, 0 if none."""
    usable = np.where((degradation <= budget) & ~np.isnan(gap), np.minimum(gap, 1.0), -np.inf)
    return np.maximum(usable.max(axis=1), 0.0)


def pareto_auc(gap: np.ndarray, degradation: np.ndarray, width: float) -> np.ndarray:
    """[draws]: mean over budgets x in [0, width] of best_within(x): the normalised area under the
    Pareto front of gap closed (capped at 1) against degradation."""
    grid = np.linspace(0.0, width, 201)[1:]
    return np.stack([best_within(gap, degradation, x) for x in grid], axis=1).mean(axis=1)


# statistic(forget-span gap, other-span gap, degradation, paper's gap, never-seen gap), each
# [draws, points] -> [draws]
Statistic = Callable[..., np.ndarray]


def draws_of(records: list[ResultRecord], statistics: dict[str, Statistic], draws: int = DRAWS,
             seed: int = SEED) -> dict[str, np.ndarray]:
    """{name: [draws] bootstrap distribution of the mean over seeds of statistic(forget-span gap,
    other-span gap, degradation, paper's gap)}; every statistic sees the same resamples."""
    rng = np.random.default_rng(seed)
    curves = [_curves(r, rng, draws) for r in records]
    chosen = rng.integers(0, len(records), (draws, len(records)))             # seeds drawn with replacement
    slots = (np.arange(draws)[:, None] * len(records) + np.arange(len(records))[None, :]) % draws
    found = {}
    for name, statistic in statistics.items():
        stacked = np.stack([statistic(*curve) for curve in curves])           # [records, draws]
        found[name] = stacked[chosen, slots].mean(axis=1)
    return found


def intervals(records: list[ResultRecord], statistics: dict[str, Statistic]) -> dict[str, tuple[float, float] | None]:
    """{name: 95% percentile interval}, None where nothing varies (one seed, no per-sequence values)."""
    tail = (1 - LEVEL) / 2 * 100
    found = {}
    for name, values in draws_of(records, statistics).items():
        found[name] = None if np.isnan(values).all() or np.allclose(values, values[0]) else tuple(
            float(v) for v in np.percentile(values, [tail, 100 - tail]))
    return found


def seed_interval(values: list[float], draws: int = DRAWS, seed: int = SEED) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of the mean of per-seed values (the columns read at each
    seed's chosen point, whose per-sequence values are not kept); None with fewer than 2 seeds or
    nothing varying."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.allclose(values, values[0]):
        return None
    result = stats.bootstrap((values,), np.mean, confidence_level=LEVEL, n_resamples=draws, method="percentile",
                             random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def point_value(records: list[ResultRecord], statistic: Statistic) -> float:
    """The mean over seeds of the statistic on the stored curves (no resampling)."""
    rng = np.random.default_rng(0)
    return float(np.mean([statistic(*_curves(r, rng, 1, resample=False))[0] for r in records]))


def paired_difference(ours: dict[int, float], theirs: dict[int, float]) -> tuple[float, tuple[float, float] | None, int]:
    """(mean difference, its 95% interval or None, common seeds) of two rows' per-seed values."""
    from scipy import stats

    common = sorted(set(ours) & set(theirs))
    differences = np.array([ours[s] - theirs[s] for s in common])
    if len(differences) == 0:
        return float("nan"), None, 0
    if len(differences) < 2 or np.allclose(differences, differences[0]):
        return float(differences.mean()), None, len(differences)
    result = stats.bootstrap((differences,), np.mean, confidence_level=LEVEL, n_resamples=DRAWS,
                             method="percentile", random_state=np.random.default_rng(SEED))
    return float(differences.mean()), (float(result.confidence_interval.low),
                                       float(result.confidence_interval.high)), len(differences)
