"""Scoring a model state and a tradeoff curve.

Per model state (`evaluate_state`): repeated-sequence loss (whole sequence and target tokens),
validation loss, control-set loss, exact match on repeated and control sequences.
Per point of a curve (`point_metrics`), against the unedited base state and the no-rep reference:
    sequence forgetting   = repeated loss after - before                      (higher better)
    model degradation     = validation loss after - before                    (lower better)
    memorization gap closed = forgetting / (no-rep repeated loss - before)    (1.0: as if never memorized)
Per curve (`summarize_curve`): the largest gap closed within each degradation budget, and the
area under the "best gap closed within budget x" curve for x in [0, AUC_MAX_DEGRADATION],
divided by that width (so 1.0 would be: the whole gap closed at no degradation).
"""

from __future__ import annotations

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
    "method_seconds": False,
    **{f"gap_closed@{b}": True for b in BUDGETS}, **{f"gap_closed_target@{b}": True for b in BUDGETS},
    "auc": True, "auc_target": True,
}


def measure_state(model, setting: Setting, scale_for=None, batch_size: int = 32) -> State:
    """Every per-state metric of one model (under an optional neuron scale), with the values of
    each sequence kept for bootstraps and per-sequence metrics."""
    pad = setting.tokenizer.pad_token_id
    repeated = sequence_losses(model, setting.repeated, pad, batch_size, scale_for)
    validation = sequence_losses(model, setting.validation, pad, batch_size, scale_for)
    control = sequence_losses(model, setting.control, pad, batch_size, scale_for)
    em_repeated, em_control = repeated.exact_match().summary(), control.exact_match().summary()
    per_sequence = PerSequence(repeated.whole.tolist(), repeated.target.tolist(), repeated.matched.tolist(),
                               control.whole.tolist(), control.target.tolist(), control.matched.tolist(),
                               validation.whole.tolist()).compact()
    rep, val, ctl = repeated.summary(), validation.summary(), control.summary()
    return State(repeated_loss=rep["loss"], repeated_target_loss=rep["target_loss"], val_loss=val["loss"],
                 control_loss=ctl["loss"], control_target_loss=ctl["target_loss"],
                 em_repeated=em_repeated["exact_match"], em_repeated_full=em_repeated["exact_match_full"],
                 em_control=em_control["exact_match"], em_control_full=em_control["exact_match_full"],
                 per_sequence=per_sequence)


def evaluate_state(model, setting: Setting, scale_for=None, batch_size: int = 32) -> dict[str, float]:
    """The means of `measure_state` as a plain dict."""
    return measure_state(model, setting, scale_for, batch_size).means()


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if abs(denominator) > 1e-9 else None


def point_metrics(knob, after: State, before: State, norep: State) -> Point:
    """One sweep point: `after` scored against the base state and the no-rep reference."""
    forgetting = after.repeated_loss - before.repeated_loss
    forgetting_target = after.repeated_target_loss - before.repeated_target_loss
    return Point(
        **after.means(), per_sequence=after.per_sequence, knob=knob,
        forgetting=forgetting,
        forgetting_target=forgetting_target,
        degradation=after.val_loss - before.val_loss,
        control_degradation=after.control_loss - before.control_loss,
        gap_closed=_ratio(forgetting, norep.repeated_loss - before.repeated_loss),
        gap_closed_target=_ratio(forgetting_target, norep.repeated_target_loss - before.repeated_target_loss),
    )


def best_point(points: list[Point], key: str, budget: float) -> Point | None:
    """The point with the largest `key` among those whose degradation is within `budget`."""
    within = [p for p in points if getattr(p, key) is not None and p.degradation <= budget]
    return max(within, key=lambda p: getattr(p, key)) if within else None


def best_within(points: list[Point], key: str, budget: float) -> float:
    """Largest `key` among points whose degradation is within `budget` (0 if none: do nothing)."""
    values = [getattr(p, key) for p in points if getattr(p, key) is not None and p.degradation <= budget]
    return max([0.0] + values)


def tradeoff_auc(points: list[Point], key: str, width: float = AUC_MAX_DEGRADATION) -> float:
    """Mean over budgets x in [0, width] of the best `key` within budget x (a step function)."""
    usable = sorted((max(p.degradation, 0.0), getattr(p, key)) for p in points if getattr(p, key) is not None)
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
