"""How far a run walks its knob grid and which point it is scored at: gap closed counts up to 1,
editors stop past the widest budget, and relearning trains with the run's own optimizer settings."""

from __future__ import annotations

import json
import textwrap

import pytest

from memsink_bench.cli import main
from memsink_bench.config import load_config
from memsink_bench.methods.base import ModelEditor, NeuronLocalizer
from memsink_bench.metrics import AUC_MAX_DEGRADATION, best_point, best_within, summarize_curve, tradeoff_auc
from memsink_bench.record import Point, ResultRecord

SMOKE = ["--setting", "ts-canary", "--preset", "smoke", "--quiet"]


def _point(knob, gap, degradation) -> Point:
    state = dict.fromkeys(["repeated_loss", "repeated_target_loss", "val_loss", "control_loss", "control_target_loss",
                           "em_repeated", "em_repeated_full", "em_control", "em_control_full"], 0.0)
    return Point(**state, knob=knob, gap_closed=gap, gap_closed_target=gap, degradation=degradation)


def test_overshooting_the_reference_level_is_not_better_than_reaching_it():
    reached, overshoot = _point(1, 1.0, 0.01), _point(2, 1.4, 0.04)
    points = [_point(0, 0.3, 0.0), reached, overshoot]
    # capped at 1, the two tie; the tie goes to the smaller degradation
    assert best_point(points, "gap_closed", 0.05) is reached
    assert best_within(points, "gap_closed", 0.05) == 1.0
    assert summarize_curve(points)["gap_closed@0.05"] == 1.0
    # the area: 0.3 on [0, 0.01), then 1 on [0.01, 0.5]: never above 1
    assert tradeoff_auc(points, "gap_closed") == pytest.approx((0.3 * 0.01 + 1.0 * 0.49) / 0.5)
    assert tradeoff_auc([_point(0, 3.0, 0.0)], "gap_closed") == 1.0


def test_the_run_loop_picks_the_same_chosen_point_as_the_leaderboard():
    from memsink_bench.run import _better_within

    reached, overshoot = _point(1, 1.0, 0.01), _point(2, 1.4, 0.04)
    assert not _better_within(overshoot, reached)       # capped: a tie, and it degrades more
    assert _better_within(reached, overshoot)
    assert not _better_within(_point(3, 0.9, 0.06), None)                    # outside the budget


def test_only_step_count_editors_stop_past_the_widest_budget():
    assert ModelEditor.stops_past_budgets and not NeuronLocalizer.stops_past_budgets


SHRINK = '''
import copy, json, os
from memsink_bench.methods.base import ModelEditor

class Shrink(ModelEditor):
    """scales the token embeddings towards 0: degradation grows with the knob"""
    name = "shrink"
    def edit(self, model, context, knob):
        with open(os.environ["EDITS_PATH"], "a") as handle:
            handle.write(json.dumps(knob) + "\\n")
        edited = copy.deepcopy(model)
        edited.get_input_embeddings().weight.data.mul_(1 - knob / 20)
        return edited
'''


def test_an_editor_stops_at_the_first_point_past_the_widest_budget(session_workdir, tmp_path, monkeypatch, capsys):
    (tmp_path / "shrink.py").write_text(textwrap.dedent(SHRINK))
    monkeypatch.setenv("EDITS_PATH", str(tmp_path / "edits.jsonl"))
    results = tmp_path / "results"
    grid = [1, 2, 5, 10, 15, 19, 20]
    code = main(["run", "--method", f"{tmp_path / 'shrink.py'}:Shrink", *SMOKE, "--set",
                 f"sweep.steps=[{','.join(map(str, grid))}]", "--workdir", str(session_workdir),
                 "--results", str(results)])
    assert code == 0, capsys.readouterr().err
    [path] = (results / "records").glob("*/*.json")
    record = ResultRecord.read(path)
    degradations = [p.degradation for p in record.points]
    # the smoke model without its embeddings is far past 0.5 nats: the walk must stop before the end
    assert len(record.points) < len(grid) and record.grid == grid
    assert degradations[-1] >= AUC_MAX_DEGRADATION and all(d < AUC_MAX_DEGRADATION for d in degradations[:-1])
    assert record.extras["sweep_stopped"]["knob"] == record.points[-1].knob
    # the editor was never asked for a point after the stop
    edits = [json.loads(line) for line in (tmp_path / "edits.jsonl").read_text().splitlines()]
    assert edits == [p.knob for p in record.points]


def test_relearning_trains_with_the_runs_optimizer_settings(session_workdir, tmp_path, monkeypatch, capsys):
    """Relearning is 'AdamW as in training': the run's weight decay, betas, clipping and batch size,
    not TrainConfig's defaults (the smoke preset's batch size 8 differs from the default)."""
    from memsink_bench import robustness

    seen = []
    real = robustness.relearn

    def spy(*args, **kwargs):
        seen.append(kwargs.get("train"))
        return real(*args, **kwargs)

    monkeypatch.setattr(robustness, "relearn", spy)
    code = main(["run", "--method", "co-unlearn", *SMOKE, "--set", "sweep.steps=[1]", "--workdir",
                 str(session_workdir), "--results", str(tmp_path / "results")])
    assert code == 0, capsys.readouterr().err
    smoke = load_config("ts-canary", "smoke").train
    assert seen and all(train == smoke for train in seen)
    assert smoke.batch_size != type(smoke)().batch_size          # the check could tell the two apart


IN_PLACE = '''
import copy
from memsink_bench.methods.base import ModelEditor

class ShrinkInPlace(ModelEditor):
    """walks its steps on one working copy, as co-unlearn does: the embeddings at (1 - knob/20)"""
    name = "shrink-in-place"
    def edit(self, model, context, knob):
        return next(iter(self.edit_sweep(model, context, [knob])))[1]
    def edit_sweep(self, model, context, knobs):
        working = copy.deepcopy(model)
        original = model.get_input_embeddings().weight.detach().clone()
        for knob in knobs:
            working.get_input_embeddings().weight.data.copy_(original * (1 - knob / 20))
            yield knob, working
'''


def test_robustness_is_measured_on_the_chosen_state_of_an_incremental_editor(session_workdir, tmp_path, capsys):
    """An editor yielding one model it goes on changing: the chosen point's state must be kept as
    it was, not read after the walk went on to its last, far more degraded step."""
    (tmp_path / "in_place.py").write_text(textwrap.dedent(IN_PLACE))
    results = tmp_path / "results"
    code = main(["run", "--method", f"{tmp_path / 'in_place.py'}:ShrinkInPlace", *SMOKE, "--set",
                 "sweep.steps=[1,19,20]", "--workdir", str(session_workdir), "--results", str(results)])
    assert code == 0, capsys.readouterr().err
    [path] = (results / "records").glob("*/*.json")
    record = ResultRecord.read(path)
    chosen, last = record.points[0], record.points[-1]
    assert record.extras["robustness"]["knob"] == chosen.knob == 1
    assert last.degradation > 10 * max(chosen.degradation, 0.01)        # the walk went far past the choice
    # 8-bit rounding barely moves a model: its forgetting is the chosen state's, not the last one's
    eight = record.extras["robustness"]["quantization"]["8"]["forgetting_target"]     # ts-canary: the canary
    assert abs(eight - chosen.forgetting_target) < 0.2 * abs(last.forgetting_target - chosen.forgetting_target)
