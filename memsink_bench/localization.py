"""Localization accuracy against a ground truth the model learned itself: a MemSinks checkpoint's
own sinks.

Every repeated sequence of a MemSinks checkpoint switched on its own subset of the sink pool at
every repetition (`masks.neuron_mask`), so the neurons that can hold what only that sequence
needs are known by construction: its own sinks, the same in every layer. A localizer run on one
forget sequence at a time (or on small groups, whose sink sets are then scored jointly as their
union) on the sequence-free `mean` view post-hoc methods edit is scored by:

- precision@k, k = |own sinks| (all layers): the share of its k top-scored neurons that are own
  sinks, over all MLP neurons, and within the sink pool only (own sinks against the other
  sequences' sinks: the harder question, since every sink held some sequence);
- AUROC of its scores for own sinks against the rest, over all neurons and within the pool;
- the causal check: the sequence's forgetting (its loss after - before) when its k top-scored
  neurons are dropped, against the forgetting when its own sinks are dropped, at equal k. Agreement
  with the design is not the whole story (the sinks hold only part of the memorization), so this
  says whether the method's choice matters as much as the design's. Dropping shared neurons makes
  every sequence worse, so each drop's degradation (the validation loss increase on
  DEGRADATION_SEQUENCES held-out stories) is measured too, and the check is also given net of it:
  net forgetting = forgetting - degradation, what the drop removed beyond what it broke.

Chance levels: precision@k over all neurons = the own sinks' share of all neurons; within the pool
= their share of the pool; AUROC 0.5.
"""

from __future__ import annotations

import time

import torch

from .errors import UserError
from .evaluate import sequence_losses
from .interventions import drop_neurons_scale
from .privacy import auroc


def precision_at_k(scores: torch.Tensor, truth: torch.Tensor, candidates: torch.Tensor | None = None) -> float:
    """Share of the k = |truth| highest-scored candidate neurons that are true ([layers, d_mlp] each)."""
    candidates = torch.ones_like(truth) if candidates is None else candidates
    flat_scores, flat_truth = scores[candidates].flatten(), truth[candidates].flatten()
    k = int(flat_truth.sum())
    if k == 0:
        raise UserError("no ground-truth neuron to localize", "give a MemSinks checkpoint with a sink pool")
    top = flat_scores.topk(k).indices
    return float(flat_truth[top].float().mean())


def auroc_of(scores: torch.Tensor, truth: torch.Tensor, candidates: torch.Tensor | None = None) -> float:
    candidates = torch.ones_like(truth) if candidates is None else candidates
    flat_scores, flat_truth = scores[candidates].flatten(), truth[candidates].flatten()
    return auroc(flat_scores[flat_truth], flat_scores[~flat_truth])


RECALL_GRID = [i / 20 for i in range(21)]   # recall levels of the stored precision-recall curves


def precision_recall(scores: torch.Tensor, truth: torch.Tensor,
                     candidates: torch.Tensor | None = None) -> tuple[list[float], float]:
    """(interpolated precision at each RECALL_GRID level, average precision) of ranking the
    candidate neurons by score with `truth` as the positives. Interpolated precision at recall r
    is the best precision at any recall >= r (the usual PR-curve convention); average precision
    is the mean precision at the rank of each positive."""
    candidates = torch.ones_like(truth) if candidates is None else candidates
    flat_scores, flat_truth = scores[candidates].flatten().float(), truth[candidates].flatten()
    if not bool(flat_truth.any()):
        raise UserError("no ground-truth neuron to localize", "give a MemSinks checkpoint with a sink pool")
    hits = flat_truth[flat_scores.argsort(descending=True, stable=True)].float()
    true_positives = hits.cumsum(0)
    precision = true_positives / torch.arange(1, len(hits) + 1)
    recall = true_positives / true_positives[-1]
    best_after = precision.flip(0).cummax(0).values.flip(0)          # max precision at recall >= this rank's
    curve = [float(best_after[int(torch.searchsorted(recall, torch.tensor(level)).clamp(max=len(hits) - 1))])
             for level in RECALL_GRID]
    return curve, float((precision * hits).sum() / hits.sum())


DEGRADATION_SEQUENCES = 64     # held-out stories the causal check's degradation is measured on


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean [layers, d_mlp]: the k highest scores over all layers together."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[scores.flatten().topk(k).indices] = True
    return mask.view_as(scores)


def localization_table(method, model, context, setting, own: torch.Tensor, pool: torch.Tensor,
                       group_size: int = 1) -> tuple[list[dict], float]:
    """Per group of forget sequences: precision@k and AUROC (all neurons, sink pool), and the causal
    check. `own` [n_repeated, d_mlp] bool: each sequence's own sinks; `pool` [d_mlp] bool: the sink
    pool. Returns (rows, seconds spent in the localizer)."""
    import copy

    layers = None
    rows, seconds = [], 0.0
    pad = context.pad_id
    held = setting.validation.subset(range(min(DEGRADATION_SEQUENCES, len(setting.validation))))
    held_before = float(sequence_losses(model, held, pad).whole.mean())

    def dropped(sequences, mask):
        return sequence_losses(model, sequences, pad, scale_for=lambda ids, d=mask: drop_neurons_scale(d).to(ids.device))

    for start in range(0, len(setting.repeated), group_size):
        indices = list(range(start, min(start + group_size, len(setting.repeated))))
        group = context.targets.subset(indices)
        local = copy.copy(context)
        local.targets = group
        clock = time.perf_counter()
        scores = method.score(model, local).detach().float().cpu()
        seconds += time.perf_counter() - clock
        layers = scores.shape[0]
        truth = own[indices].any(dim=0)[None, :].expand(layers, -1)
        in_pool = pool[None, :].expand(layers, -1)
        k = int(truth.sum())
        before = sequence_losses(model, group, pad).whole
        method_mask, design_mask = top_k_mask(scores, k), truth.clone()
        by_method, by_design = dropped(group, method_mask).whole, dropped(group, design_mask).whole
        forgetting_method, forgetting_design = float((by_method - before).mean()), float((by_design - before).mean())
        degradation_method = float(dropped(held, method_mask).whole.mean()) - held_before
        degradation_design = float(dropped(held, design_mask).whole.mean()) - held_before
        pr_all, ap_all = precision_recall(scores, truth)
        pr_pool, ap_pool = precision_recall(scores, truth, in_pool)
        rows.append({"sequences": indices, "k": k, "ap_all": ap_all, "ap_pool": ap_pool,
                     "pr_all": pr_all, "pr_pool": pr_pool,
                     "precision_all": precision_at_k(scores, truth), "auroc_all": auroc_of(scores, truth),
                     "precision_pool": precision_at_k(scores, truth, in_pool),
                     "auroc_pool": auroc_of(scores, truth, in_pool),
                     "chance_all": float(truth.float().mean()),
                     "chance_pool": float(truth[in_pool].float().mean()),
                     "forgetting_method_top_k": forgetting_method, "forgetting_own_sinks": forgetting_design,
                     "degradation_method_top_k": degradation_method, "degradation_own_sinks": degradation_design,
                     "net_method_top_k": forgetting_method - degradation_method,
                     "net_own_sinks": forgetting_design - degradation_design})
    return rows, seconds


# metric -> direction, stored in every localization report
DIRECTIONS = {**{f"{m}_{where}": "higher" for m in ("precision", "auroc", "ap") for where in ("all", "pool")},
              "forgetting_method_top_k": "higher", "degradation_method_top_k": "lower", "net_method_top_k": "higher",
              "causal_ratio": "higher", "net_ratio": "higher", "localizer_seconds": "lower"}


def _seed_mean(values, seeds):
    """The mean over seeds of each seed's mean over its groups (per element for curves)."""
    import numpy as np

    values, seeds = np.asarray(values, dtype=float), np.asarray(seeds)
    return np.mean([values[seeds == seed].mean(axis=0) for seed in sorted(set(seeds.tolist()))], axis=0)


def _resampled_means(values, seeds, rng, draws: int = 2000):
    """[draws] bootstrap means of per-group values: seeds drawn with replacement, then the groups
    inside each drawn seed (a one-level bootstrap over groups when there is one seed)."""
    import numpy as np

    values, seeds = np.asarray(values, dtype=float), np.asarray(seeds)
    by_seed = [values[seeds == s] for s in sorted(set(seeds.tolist()))]
    if len(by_seed) == 1:
        return values[rng.integers(0, len(values), (draws, len(values)))].mean(axis=1)
    chosen = rng.integers(0, len(by_seed), (draws, len(by_seed)))
    per_seed = np.stack([group[rng.integers(0, len(group), (draws, len(group)))].mean(axis=1)
                         for group in by_seed], axis=0)                   # [seeds, draws]
    # the seed drawn into slot j of draw i takes inner resample (i * seeds + j) mod draws, so a seed
    # drawn twice in one draw is two independent resamples of its groups (as intervals.draws_of)
    slots = (np.arange(draws)[:, None] * len(by_seed) + np.arange(len(by_seed))[None, :]) % draws
    return per_seed[chosen, slots].mean(axis=1)


def summarize(rows: list[dict]) -> dict:
    """Means over groups (every seed's groups weighted alike) with 95% bootstrap intervals over
    seeds and the groups inside them (over groups only with one seed; seeded)."""
    import numpy as np

    rng = np.random.default_rng(0)
    seeds = [row.get("seed", 0) for row in rows]
    summary = {}
    for name in ("precision_all", "auroc_all", "precision_pool", "auroc_pool", "ap_all", "ap_pool",
                 "chance_all", "chance_pool",
                 "forgetting_method_top_k", "forgetting_own_sinks", "degradation_method_top_k",
                 "degradation_own_sinks", "net_method_top_k", "net_own_sinks"):
        if any(name not in row for row in rows):          # a report written before the net check existed
            continue
        values = np.array([row[name] for row in rows], dtype=float)
        draws = _resampled_means(values, seeds, rng)
        summary[name] = {"mean": float(_seed_mean(values, seeds)),
                         "interval": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]}
    for name in ("pr_all", "pr_pool"):
        if all(name in row for row in rows):                # every seed weighted alike
            summary[name] = [float(v) for v in _seed_mean([row[name] for row in rows], seeds)]
    own, top = summary["forgetting_own_sinks"]["mean"], summary["forgetting_method_top_k"]["mean"]
    summary["causal_ratio"] = top / own if abs(own) > 1e-9 else None
    if "net_own_sinks" in summary:
        own, top = summary["net_own_sinks"]["mean"], summary["net_method_top_k"]["mean"]
        summary["net_ratio"] = top / own if abs(own) > 1e-9 else None
    return summary


def own_sinks(config, setting, model) -> tuple[torch.Tensor, torch.Tensor]:
    """(own [n_repeated, d_mlp] bool: each forget sequence's own sinks, pool [d_mlp] bool: the sink pool)."""
    from .kinds.memsinks import MemSinks
    from .masks import split_neurons
    from .models import mlp_shape

    d_mlp = mlp_shape(model)[1]
    n_shared, _ = split_neurons(d_mlp, config.memsinks.shared_fraction)
    pool = torch.arange(d_mlp) >= n_shared
    ids = torch.tensor(setting.repeated.ids)
    return (MemSinks().training_scale(config, d_mlp, ids)[0, :, 0, :] > 0) & pool, pool


COLUMNS = ["method", "precision@k (all)", "AUROC (all)", "AP (all)", "precision@k (sink pool)", "AUROC (sink pool)",
           "AP (sink pool)", "forgetting: method top-k / own sinks", "degradation: method top-k / own sinks",
           "net (forgetting - degradation): method top-k / own sinks", "localizer s"]


def table(report: dict) -> tuple[list[list[str]], str]:
    """The localization table's rows (one per method, cells in COLUMNS order) and the chance levels under it."""
    def pair(summary, key, ratio=None):
        if f"{key}_own_sinks" not in summary:
            return "-"
        text = f"{summary[f'{key}_method_top_k']['mean']:.3f} / {summary[f'{key}_own_sinks']['mean']:.3f}"
        return text + (f" ({ratio:.2f}x)" if ratio is not None else "")

    def cell(summary, key):
        if key not in summary:                 # a report written before average precision existed
            return "-"
        value = summary[key]
        return f"{value['mean']:.3f} [{value['interval'][0]:.3f}, {value['interval'][1]:.3f}]"

    rows = []
    for name, found in report["methods"].items():
        summary = found["summary"]
        rows.append([name, *(cell(summary, key) for key in ("precision_all", "auroc_all", "ap_all", "precision_pool",
                                                             "auroc_pool", "ap_pool")),
                     pair(summary, "forgetting", summary["causal_ratio"]), pair(summary, "degradation"),
                     pair(summary, "net", summary.get("net_ratio")), f"{found['localizer_seconds']:.1f}"])
    first = next(iter(report["methods"].values()))["summary"]
    note = (f"chance: precision@k {first['chance_all']['mean']:.3f} over all neurons, "
            f"{first['chance_pool']['mean']:.3f} within the sink pool (also average precision's); AUROC 0.5. "
            f"Intervals: 95% bootstrap over {_seeds_text(report)}forget-sequence groups of {report['group_size']}.")
    return rows, note


def _seeds_text(report: dict) -> str:
    seeds = report.get("seeds") or [0]
    return f"seeds ({', '.join(map(str, seeds))}) and " if len(seeds) > 1 else ""


def render(report: dict) -> str:
    """The localization table (markdown), with the chance levels under it."""
    rows, note = table(report)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n\n" + note + "\n"
