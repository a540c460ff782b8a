"""Leaderboard statistics: budgets read from the curve and capped at 1, bootstrap intervals over
seeds and forget sequences, paired comparisons with the random control, rank swaps marked."""

from __future__ import annotations

import numpy as np
import pytest

from memsink_bench.intervals import best_within, intervals, paired_difference, pareto_auc, point_value
from memsink_bench.leaderboard import STATISTICS, leaderboard_frame
from memsink_bench.record import CheckpointInfo, PerSequence, Point, Reference, ResultRecord, Seeds, State, Timings

N_REP, N_VAL = 40, 30


def _state(repeated: np.ndarray, val: np.ndarray, **point) -> dict:
    per = PerSequence(list(repeated), list(repeated), [0] * N_REP, [1.0] * 8, [1.0] * 8, [0] * 8, list(val))
    means = dict(repeated_loss=float(repeated.mean()), repeated_target_loss=float(repeated.mean()),
                 val_loss=float(val.mean()), control_loss=1.0, control_target_loss=1.0, em_repeated=10.0,
                 em_repeated_full=0.5, em_control=1.0, em_control_full=0.0)
    return {**means, "per_sequence": per, **point}


def record(method: str, seed: int, forgetting: list[float], degradation: list[float], spread: float = 0.5,
           method_type: str = "localizer") -> ResultRecord:
    """A record whose forget sequences each forget by `f * (1 + spread * noise)` at a point."""
    rng = np.random.default_rng(seed)
    before_rep, val = rng.uniform(0.1, 0.3, N_REP), rng.uniform(0.9, 1.1, N_VAL)
    norep_rep = before_rep + 1.0                       # the gap is 1 nat on every sequence
    noise = rng.normal(size=N_REP)
    points = []
    for i, (f, d) in enumerate(zip(forgetting, degradation)):
        after = before_rep + f * (1 + spread * noise)
        gap = float((after - before_rep).mean() / (norep_rep - before_rep).mean())
        forgetting = float((after - before_rep).mean())      # the target span is the whole sequence here
        points.append(Point(**_state(after, val + d), knob=i + 1, forgetting=forgetting,
                            forgetting_target=forgetting, degradation=d, control_degradation=0.0, gap_closed=gap,
                            gap_closed_target=gap))
    return ResultRecord(
        created="2026-01-01T00:00:00+00:00", method=method, method_type=method_type, method_source="built-in",
        hyperparameters={}, knob="r", grid=[p.knob for p in points], setting="ts-canary", preset="cpu",
        setting_hash="0" * 16, corpus="synthetic-stories", corpus_hash="ab" * 32,
        checkpoint=CheckpointInfo("standard", "standard", "default", "/ckpt", 1.0),
        reference=Reference("standard", "/no-rep"), seeds=Seeds(seed, seed, 0),
        config={"train": {"seed": seed}, "data": {"seed": 0}}, versions={}, git_commit="0" * 40,
        before=State(**_state(before_rep, val)), no_rep=State(**_state(norep_rep, val)), points=points,
        summary={}, extras={}, timings=Timings(1.0, 1.0, 2.0), directions={})


def test_budgets_read_the_curve_and_cap_gap_closed_at_one():
    gap = np.array([[0.2, 1.4, 0.6]])
    degradation = np.array([[0.01, 0.04, 0.3]])
    assert best_within(gap, degradation, 0.02)[0] == pytest.approx(0.2)
    assert best_within(gap, degradation, 0.05)[0] == pytest.approx(1.0)       # overshooting is not better
    assert best_within(gap, degradation, 0.001)[0] == 0.0                     # nothing within: do nothing
    # Pareto area over [0, 0.5]: 0 until 0.01, 0.2 until 0.04, then 1 -> (0.03 * 0.2 + 0.46 * 1) / 0.5
    assert pareto_auc(gap, degradation, 0.5)[0] == pytest.approx((0.03 * 0.2 + 0.46) / 0.5, abs=0.01)


def test_interval_covers_the_value_and_widens_with_the_sequences_spread():
    tight = [record("ig", s, [0.1, 0.3], [0.01, 0.04], spread=0.05) for s in range(3)]
    loose = [record("ig", s, [0.1, 0.3], [0.01, 0.04], spread=1.5) for s in range(3)]
    statistic = {"gap": STATISTICS["gap closed @0.05"]}
    for replicates in (tight, loose):
        low, high = intervals(replicates, statistic)["gap"]
        assert low <= point_value(replicates, statistic["gap"]) <= high
    width = {name: np.subtract(*intervals(r, statistic)["gap"][::-1]) for name, r in (("tight", tight), ("loose", loose))}
    assert width["loose"] > 3 * width["tight"] > 0


def test_one_seed_without_per_sequence_values_has_no_interval():
    single = record("ig", 0, [0.1, 0.3], [0.01, 0.04])
    for state in (single.before, single.no_rep, *single.points):
        state.per_sequence = None
    assert intervals([single], {"gap": STATISTICS["gap closed @0.05"]}) == {"gap": None}


def test_paired_difference_tells_a_real_gain_from_noise():
    gain, band, common = paired_difference({0: 0.30, 1: 0.32, 2: 0.31, 3: 0.29}, {0: 0.10, 1: 0.11, 2: 0.09, 3: 0.10})
    assert common == 4 and gain == pytest.approx(0.205) and band[0] > 0
    _, band, _ = paired_difference({0: 0.10, 1: 0.14, 2: 0.08, 3: 0.12}, {0: 0.12, 1: 0.10, 2: 0.11, 3: 0.11})
    assert band[0] < 0 < band[1]


def test_leaderboard_marks_rows_like_their_control_and_rank_swaps():
    rows = [record("ig", s, [0.02, 0.6], [0.01, 0.15]) for s in range(3)]                 # wins late
    rows += [record("hard-concrete", s, [0.10, 0.12], [0.01, 0.15]) for s in range(3)]     # wins early
    rows += [record("random-neurons", s, [0.02 + 0.001 * s, 0.1], [0.01, 0.15]) for s in range(3)]
    frame = leaderboard_frame(rows).set_index("method")
    assert frame.loc["ig", "gap closed @0.02"] < frame.loc["hard-concrete", "gap closed @0.02"]
    assert frame.loc["ig", "gap closed @0.2"] > frame.loc["hard-concrete", "gap closed @0.2"]
    assert "↕" in frame.loc["ig", "flags"] and "↕" in frame.loc["hard-concrete", "flags"]
    assert "≈ control" in frame.loc["ig", "flags"]            # at the primary budget ig equals the control
    assert "≈ control" not in frame.loc["hard-concrete", "flags"]
    assert frame.loc["hard-concrete", "vs control"].startswith("+0.0")
    # the top row of the group (hard-concrete at 0.05) against the others, paired by seed
    assert frame.loc["hard-concrete", "vs top"] == "top"
    assert frame.loc["ig", "vs top"].startswith("-0.0") and not frame.loc["ig", "vs top"].endswith("tied")


def test_a_row_within_noise_of_the_top_is_marked_tied():
    first = [record("ig", s, [0.10 + 0.03 * (s % 2), 0.2], [0.01, 0.15]) for s in range(4)]
    second = [record("hard-concrete", s, [0.12 - 0.03 * (s % 2), 0.2], [0.01, 0.15]) for s in range(4)]
    frame = leaderboard_frame(first + second).set_index("method")
    top, other = ("ig", "hard-concrete") if frame.loc["ig", "vs top"] == "top" else ("hard-concrete", "ig")
    assert frame.loc[top, "vs top"] == "top" and frame.loc[other, "vs top"].endswith("tied")


def test_gap_to_the_never_seen_model_reads_its_own_level():
    """The never-seen model's forget-span loss is 2 nats above the unedited model's where the
    no-rep model's is 1 nat above: the same forgetting closes half as much of that gap."""
    rows = [record("ig", s, [0.1, 0.3], [0.01, 0.04]) for s in range(3)]
    statistic = STATISTICS["gap to never-seen @0.05"]
    assert np.isnan(point_value(rows, statistic))                    # no never-seen model: no level
    for row in rows:
        before = row.before.per_sequence
        unseen = np.asarray(before.repeated_loss) + 2.0
        row.never_seen = State(**_state(unseen, np.asarray(before.val_loss)))
    assert point_value(rows, statistic) == pytest.approx(point_value(rows, STATISTICS["gap closed @0.05"]) / 2)
    low, high = intervals(rows, {"never": statistic})["never"]
    assert low <= point_value(rows, statistic) <= high


def test_chosen_point_columns_have_seed_intervals_and_short_curves_are_marked():
    rising = [record("ig", s, [0.1, 0.2 + 0.02 * s, 0.4], [0.01, 0.03 + 0.005 * s, 0.15]) for s in range(3)]
    flat = [record("hard-concrete", s, [0.1, 0.3, 0.3], [0.01, 0.04, 0.15]) for s in range(3)]
    reaching = [record("random-neurons", s, [0.1, 0.2, 0.5], [0.01, 0.04, 0.3]) for s in range(3)]
    frame = leaderboard_frame(rising + flat + reaching).set_index("method")
    # ig stops at 0.15 nats still rising; hard-concrete flattened; the control reaches 0.2 nats
    assert "⊣" in frame.loc["ig", "flags"]
    assert "⊣" not in frame.loc["hard-concrete", "flags"] and "⊣" not in frame.loc["random-neurons", "flags"]
    # the chosen points' degradations differ by seed: an interval around their mean
    low, high = frame.loc["ig", "_seed_bands"]["val degr. @0.05"]
    assert low < frame.loc["ig", "val degr. @0.05"] < high
    assert frame.loc["hard-concrete", "_seed_bands"]["val degr. @0.05"] is None      # equal on every seed


@pytest.mark.parametrize("span, distance", [("extraction", 4.0), ("sequence", 2.0)])
def test_gap_to_never_seen_reads_the_forget_spans_field(span, distance):
    """The never-seen model is 2 nats further on the whole sequence and 4 on the extraction span:
    the column must read the record's own forget span (the no-rep gap is 1 nat on both)."""
    from memsink_bench.record import PerSequence

    rows = [record("ig", s, [0.1, 0.3], [0.01, 0.04]) for s in range(3)]
    for row in rows:
        row.config["scoring"] = {"forget_span": span}
        before = row.before.per_sequence
        whole, target = np.asarray(before.repeated_loss) + 2.0, np.asarray(before.repeated_target_loss) + 4.0
        state = State(**_state(whole, np.asarray(before.val_loss)))
        state.repeated_target_loss = float(target.mean())
        state.per_sequence = PerSequence(list(whole), list(target), *[getattr(before, f) for f in
                                         ("em_repeated", "control_loss", "control_target_loss", "em_control",
                                          "val_loss")])
        row.never_seen = state
    gap = point_value(rows, STATISTICS["gap closed @0.05"])
    assert point_value(rows, STATISTICS["gap to never-seen @0.05"]) == pytest.approx(gap / distance)
    # every sequence is exactly `distance` nats from the never-seen level (and 1 from no-rep), so
    # under the same resamples the never-seen gap is the no-rep gap over `distance`, draw by draw
    found = intervals(rows, {"never": STATISTICS["gap to never-seen @0.05"], "gap": STATISTICS["gap closed @0.05"]})
    assert found["never"] == pytest.approx(tuple(v / distance for v in found["gap"]))


def test_a_small_curve_still_doubling_is_short_and_a_flat_one_is_not():
    from memsink_bench.leaderboard import _short_curve

    doubling = record("ig", 0, [0.003, 0.006, 0.014], [0.001, 0.003, 0.009], spread=0.0)
    flat = record("ig", 0, [0.2, 0.30, 0.31], [0.01, 0.05, 0.1], spread=0.0)
    assert _short_curve(doubling) and not _short_curve(flat)


def test_training_time_rows_are_compared_with_the_top_post_hoc_row_on_their_checkpoint():
    """MemSinks and the post-hoc rows on the standard checkpoint are measured from the same standard
    model of each seed, so the one comparison across the groups pairs them by seed."""
    def training(seed, forgetting):
        row = record("memsinks", seed, forgetting, [0.01, 0.04], method_type="training")
        row.checkpoint = CheckpointInfo("memsinks", "memsinks", "default", "/ckpt", 1.0)
        return row
    rows = [training(s, [0.3, 0.5]) for s in range(4)]
    rows += [record("co-unlearn", s, [0.05, 0.1], [0.01, 0.04], method_type="editor") for s in range(4)]
    rows += [record("ig", s, [0.02, 0.04], [0.01, 0.04]) for s in range(4)]
    frame = leaderboard_frame(rows).set_index("method")
    assert frame.loc["memsinks", "group"].startswith("training-time")
    versus = frame.loc["memsinks", "vs post-hoc top"]
    assert versus.startswith("+0.") and versus.endswith("vs co-unlearn"), versus    # against the top one
    assert float(versus.split()[0]) == pytest.approx(frame.loc["memsinks", "gap closed @0.05"]
                                                     - frame.loc["co-unlearn", "gap closed @0.05"], abs=5e-4)
    assert (frame.loc[["co-unlearn", "ig"], "vs post-hoc top"] == "-").all()
    close = [training(s, [0.02, 0.1 + 0.04 * (s % 2 - 0.5)]) for s in range(4)]
    frame = leaderboard_frame(close + rows[4:]).set_index("method")
    assert frame.loc["memsinks", "vs post-hoc top"].endswith("vs co-unlearn tied")
    alone = leaderboard_frame([training(s, [0.3, 0.5]) for s in range(2)]).set_index("method")
    assert alone.loc["memsinks", "vs post-hoc top"] == "no post-hoc run"
