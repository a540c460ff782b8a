"""Scoring a model state and a tradeoff curve.

Per model state (`evaluate_state`): repeated-sequence loss (whole sequence and target tokens),
validation loss, control-set loss, the forget set's neighbours' loss (neighbours.py), exact match
on repeated and control sequences.
Per point of a curve (`point_metrics`), against the unedited base state and the no-rep reference:
    sequence forgetting   = repeated loss after - before                      (higher better)
    model degradation     = validation loss after - before                    (lower better)
    memorization gap closed = forgetting / (no-rep repeated loss - before)    (1.0: as if never memorized)
Per curve (`summarize_curve`): the largest gap closed within each degradation budget, and the
area under the "best gap closed within budget x" curve for x in [0, AUC_MAX_DEGRADATION],
divided by that width (so 1.0 would be: the whole gap closed at no degradation).
"""

from __future__ import annotations

import math

from .config import MetricsConfig
from .evaluate import sequence_losses
from .record import PerSequence, Point, State
from .setting import Setting

BUDGETS = (0.05, 0.1)
AUC_MAX_DEGRADATION = 0.5

# metric -> True if higher is better
DIRECTIONS = {
    "repeated_loss": True, "repeated_target_loss": True, "val_loss": False, "control_loss": False,
    "control_target_loss": False, "em_repeated": False, "em_repeated_full": False,
    "em_control": True, "em_control_full": True,
    "forgetting": True, "forgetting_target": True, "degradation": False,
    "gap_closed": True, "gap_closed_target": True, "control_degradation": False,
    "method_seconds": False, "neighbour_loss": False, "neighbour_degradation": False,
    "other_repeated_loss": False, "other_forgetting": False,
    **{f"gap_closed@{b}": True for b in BUDGETS}, **{f"gap_closed_target@{b}": True for b in BUDGETS},
    "auc": True, "auc_target": True,
    "mia_auroc": False, **{f"extraction_rate@{n}": False for n in MetricsConfig().samples},
    # robustness at the chosen point (record extras "robustness"): forgetting that survives
    # quantization is better; a removal that relearning undoes less is better
    "robustness.quantization.forgetting": True, "robustness.quantization.em_repeated": False,
    "robustness.relearning.loss": True, "robustness.relearning.em": False,
    "robustness.relearning.recovered_share": False,
}
CLOSER_TO_ZERO = ("privleak",)       # neither higher nor lower: MUSE's PrivLeak is best at 0


def directions(params: MetricsConfig | None = None) -> dict[str, str]:
    """metric -> "higher" | "lower" | "closer to 0", as a record stores it (with its own samples grid)."""
    params = params or MetricsConfig()
    table = {**DIRECTIONS, **{f"extraction_rate@{n}": False for n in params.samples}}
    return {**{k: ("higher" if v else "lower") for k, v in table.items()}, **{k: "closer to 0" for k in CLOSER_TO_ZERO}}


def measure_state(model, setting: Setting, scale_for=None, batch_size: int = 32, attacks: bool = True,
                  params: MetricsConfig | None = None, neighbours: bool = True) -> State:
    """Every per-state metric of one model (under an optional neuron scale), with the values of
    each sequence kept for bootstraps and per-sequence metrics. With `attacks`, membership
    inference (forget vs never-seen held-out sequences) and the sampled-extraction probability
    come from the same teacher-forced logits, so they cost no extra forward pass. `params`: the
    attacks' parameters (`--set metrics.*`; default: MetricsConfig()). With `neighbours`, the
    forget set's neighbours (neighbours.py) are measured too."""
    params = params or MetricsConfig()
    pad = setting.tokenizer.pad_token_id
    collected: dict[str, list] = {"repeated": [], "validation": []}

    def collect(role):
        if not attacks:
            return None
        from .extraction import attack_scores_from_logits
        from .privacy import zlib_entropy

        sequences = setting.repeated if role == "repeated" else membership_nonmembers(setting)
        zlib_lengths = zlib_entropy(sequences, lambda ids: setting.tokenizer.decode(ids, skip_special_tokens=True))
        start = [0]

        def on_logits(batch, logits):
            stop = start[0] + len(batch.ids)
            collected[role].append(attack_scores_from_logits(
                logits, batch, zlib_lengths[start[0]:stop], min_k_fraction=params.min_k_fraction,
                top_k=params.top_k, temperature=params.temperature))
            start[0] = stop
        return on_logits

    repeated = sequence_losses(model, setting.repeated, pad, batch_size, scale_for, on_logits=collect("repeated"))
    validation = sequence_losses(model, setting.validation, pad, batch_size, scale_for)
    control = sequence_losses(model, setting.control, pad, batch_size, scale_for)
    if attacks:
        sequence_losses(model, membership_nonmembers(setting), pad, batch_size, scale_for,
                        on_logits=collect("validation"))
    from .neighbours import neighbour_set

    look_alikes = neighbour_set(setting) if neighbours else None
    neighbour = sequence_losses(model, look_alikes, pad, batch_size, scale_for) if look_alikes is not None else None
    kept = getattr(setting, "other_repeated", None)
    other = sequence_losses(model, kept, pad, batch_size, scale_for).summary()["loss"] if kept is not None else None
    em_repeated, em_control = repeated.exact_match().summary(), control.exact_match().summary()
    per_sequence = PerSequence(repeated.whole.tolist(), repeated.target.tolist(), repeated.matched.tolist(),
                               control.whole.tolist(), control.target.tolist(), control.matched.tolist(),
                               validation.whole.tolist(),
                               neighbour_loss=neighbour.whole.tolist() if neighbour is not None else None)
    mia_auroc = extraction = None
    rep, val, ctl = repeated.summary(), validation.summary(), control.summary()
    finite = all(math.isfinite(v) for v in (rep["loss"], val["loss"]))     # a broken model is reported as such
    if attacks and finite and collected["repeated"] and collected["validation"]:
        mia_auroc, extraction = _attack_summaries(collected, per_sequence, params)
    return State(repeated_loss=rep["loss"], repeated_target_loss=rep["target_loss"], val_loss=val["loss"],
                 control_loss=ctl["loss"], control_target_loss=ctl["target_loss"],
                 em_repeated=em_repeated["exact_match"], em_repeated_full=em_repeated["exact_match_full"],
                 em_control=em_control["exact_match"], em_control_full=em_control["exact_match_full"],
                 per_sequence=per_sequence.compact(), mia_auroc=mia_auroc, extraction=extraction,
                 neighbour_loss=float(neighbour.whole.mean()) if neighbour is not None else None,
                 other_repeated_loss=other)


NONMEMBERS = 64                 # held-out sequences the membership attacks score against the forget set
NONMEMBER_CANARY_SALT = 104729


def membership_nonmembers(setting: Setting):
    """Never-trained sequences shaped like the forget set: the first NONMEMBERS validation stories,
    cut to the same story length and given fresh random canaries when the forget set carries
    canaries (a canary-free story is far likelier than any canaried one, which would make the
    attack read the canary, not membership). Deterministic in the setting's data seed."""
    cached = getattr(setting, "_membership_nonmembers", None)
    if cached is not None:
        return cached
    import torch

    from .setting import SequenceSet

    held = setting.validation.subset(range(min(NONMEMBERS, len(setting.validation))))
    canary = setting.data.canary_length if setting.data is not None else 0
    if canary:
        room = 1 + setting.data.seq_len - 1 - canary               # BOS + the forget set's story room
        generator = torch.Generator().manual_seed(setting.data.seed + NONMEMBER_CANARY_SALT)
        tokens, spans = [], []
        for seq in held.tokens:
            story = seq[:room]
            fresh = torch.randint(1, len(setting.tokenizer), (canary,), generator=generator).tolist()
            tokens.append(story + fresh)
            spans.append((len(story), len(story) + canary))
        held = SequenceSet(tokens, list(held.ids), spans)
    setting._membership_nonmembers = held
    return held


def _attack_summaries(collected: dict, per_sequence: PerSequence, params: MetricsConfig) -> tuple[dict, dict]:
    """(attack -> AUROC of forget vs held-out, extraction rates); per-sequence values filled in."""
    import torch

    from .extraction import extraction_rate
    from .privacy import HEADLINE_ATTACK, MembershipScores, membership_aurocs

    members = MembershipScores.cat([scores for scores, _ in collected["repeated"]])
    held_out = MembershipScores.cat([scores for scores, _ in collected["validation"]])
    log_p_z = torch.cat([log_p for _, log_p in collected["repeated"]])
    p_z = log_p_z.exp()
    per_sequence.log_p_z = [max(v, -1e9) for v in log_p_z.tolist()]          # -inf: a target outside the top-k
    per_sequence.mia_repeated = getattr(members, HEADLINE_ATTACK).tolist()
    per_sequence.mia_validation = getattr(held_out, HEADLINE_ATTACK).tolist()
    extraction = {f"rate@{n}": extraction_rate(p_z, n, params.extraction_p) for n in params.samples}
    extraction["mean_p_z"] = float(p_z.mean())
    return membership_aurocs(members, held_out), extraction


def evaluate_state(model, setting: Setting, scale_for=None, batch_size: int = 32) -> dict[str, float]:
    """The means of `measure_state` as a plain dict."""
    return measure_state(model, setting, scale_for, batch_size).means()


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if abs(denominator) > 1e-9 else None


def point_metrics(knob, after: State, before: State, norep: State, never_seen: State | None = None) -> Point:
    """One sweep point: `after` scored against the base state and the no-rep reference (and, for
    PrivLeak, the never-seen model's membership AUROC)."""
    forgetting = after.repeated_loss - before.repeated_loss
    forgetting_target = after.repeated_target_loss - before.repeated_target_loss
    return Point(
        **after.means(), per_sequence=after.per_sequence, mia_auroc=after.mia_auroc, extraction=after.extraction,
        knob=knob, privleak=privleak_of(after, never_seen),
        forgetting=forgetting,
        forgetting_target=forgetting_target,
        degradation=after.val_loss - before.val_loss,
        control_degradation=after.control_loss - before.control_loss,
        neighbour_degradation=(after.neighbour_loss - before.neighbour_loss
                               if after.neighbour_loss is not None and before.neighbour_loss is not None else None),
        other_forgetting=(after.other_repeated_loss - before.other_repeated_loss
                          if after.other_repeated_loss is not None and before.other_repeated_loss is not None else None),
        gap_closed=_ratio(forgetting, norep.repeated_loss - before.repeated_loss),
        gap_closed_target=_ratio(forgetting_target, norep.repeated_target_loss - before.repeated_target_loss),
    )


def privleak_of(state: State, never_seen: State | None) -> float | None:
    """MUSE's PrivLeak of a state's headline attack against the never-seen model (None without one)."""
    from .privacy import HEADLINE_ATTACK, privleak

    if never_seen is None or not state.mia_auroc or not never_seen.mia_auroc:
        return None
    return privleak(state.mia_auroc[HEADLINE_ATTACK], never_seen.mia_auroc[HEADLINE_ATTACK])


GAP_CAP = 1.0      # gap closed counts up to the reference level: overshooting past it is not better


def capped(value: float) -> float:
    return min(value, GAP_CAP)


def point_order(point: Point, key: str) -> tuple[float, float]:
    """How points rank on `key`: the larger gap closed (capped at 1), then the smaller degradation."""
    return capped(getattr(point, key)), -point.degradation


def best_point(points: list[Point], key: str, budget: float) -> Point | None:
    """The point with the largest `key` (capped at 1; ties to the smaller degradation) among those
    whose degradation is within `budget`."""
    within = [p for p in points if getattr(p, key) is not None and p.degradation <= budget]
    return max(within, key=lambda p: point_order(p, key)) if within else None


def best_within(points: list[Point], key: str, budget: float) -> float:
    """Largest `key` (capped at 1) among points whose degradation is within `budget` (0 if none: do nothing)."""
    values = [capped(getattr(p, key)) for p in points if getattr(p, key) is not None and p.degradation <= budget]
    return max([0.0] + values)


def tradeoff_auc(points: list[Point], key: str, width: float = AUC_MAX_DEGRADATION) -> float:
    """Mean over budgets x in [0, width] of the best `key` (capped at 1) within budget x (a step function)."""
    usable = sorted((max(p.degradation, 0.0), capped(getattr(p, key))) for p in points if getattr(p, key) is not None)
    area, best, previous = 0.0, 0.0, 0.0
    for degradation, value in usable:
        if degradation >= width:
            break
        area += best * (degradation - previous)
        best, previous = max(best, value), degradation
    area += best * (width - previous)
    return area / width


def gap_key(budget: float, target: bool = False) -> str:
    """The summary's name for the largest gap closed within `budget` nats."""
    return f"gap_closed{'_target' if target else ''}@{budget}"


def summarize_curve(points: list[Point]) -> dict[str, float]:
    summary = {}
    for budget in BUDGETS:
        summary[gap_key(budget)] = best_within(points, "gap_closed", budget)
        summary[gap_key(budget, True)] = best_within(points, "gap_closed_target", budget)
    summary["auc"] = tradeoff_auc(points, "gap_closed")
    summary["auc_target"] = tradeoff_auc(points, "gap_closed_target")
    return summary
