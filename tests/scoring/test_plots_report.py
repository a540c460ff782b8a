"""Figures and the report from stored outputs: byte-identical rebuilds, one fixed colour per
method in every figure, and the CLI commands that draw them (no model is trained here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memsink_bench import plots
from memsink_bench.analyses.store import analysis_path, render_analysis, write_analysis
from memsink_bench.cli import main
from memsink_bench.record import CheckpointInfo, Point, Reference, ResultRecord, Seeds, State, Timings
from memsink_bench.report import build_report, save_training_curves

SETTING, PRESET = "ts-canary", "cpu"


def make_record(method: str, method_type: str, label: str, forgetting: list[float], degradation: list[float],
                before_repeated: float = 0.2) -> ResultRecord:
    """A complete result record with made-up numbers that leaderboard, tradeoff and report read."""
    def state(**values) -> dict:
        base = {"repeated_loss": before_repeated, "repeated_target_loss": before_repeated, "val_loss": 3.0,
                "control_loss": 3.0, "control_target_loss": 3.0, "em_repeated": 16.0, "em_repeated_full": 1.0,
                "em_control": 1.0, "em_control_full": 0.0}
        return {**base, **values}

    points = [Point(**state(repeated_loss=before_repeated + f, val_loss=3.0 + d, em_repeated=16.0 - 4 * f),
                    knob=0.01 * (i + 1), forgetting=f, forgetting_target=1.5 * f, degradation=d,
                    gap_closed=f / 4.0, gap_closed_target=1.5 * f / 4.0)
              for i, (f, d) in enumerate(zip(forgetting, degradation))]
    return ResultRecord(
        created="2026-01-01T00:00:00+00:00", method=method, method_type=method_type, method_source="built-in",
        hyperparameters={}, knob="r", grid=[p.knob for p in points], setting=SETTING, preset=PRESET,
        setting_hash="0" * 16, corpus="synthetic-stories", corpus_hash="ab" * 32,
        checkpoint=CheckpointInfo(label, label.split(":")[0], "default", "/ckpt", 1.0),
        reference=Reference("standard", "/ckpt/no-rep"), seeds=Seeds(0, 0, 0),
        config={"train": {"seed": 0}, "data": {"seed": 0}, "scoring": {"forget_span": "sequence"}}, versions={}, git_commit="0" * 40,
        before=State(**state()), no_rep=State(**state(repeated_loss=4.2, val_loss=3.1)), points=points,
        summary={"gap_closed@0.05": points[0].gap_closed, "gap_closed@0.1": points[-1].gap_closed,
                 "auc": 0.1, "auc_target": 0.2, "gap_closed_target@0.05": 0.1, "gap_closed_target@0.1": 0.2},
        extras={}, timings=Timings(1.5, 1.0, 3.0), directions={})


RECORDS = {
    "hard-concrete__standard": make_record("hard-concrete", "localizer", "standard", [0.5, 1.0, 2.0], [0.02, 0.08, 0.3]),
    "ig__standard": make_record("ig", "localizer", "standard", [0.4, 1.2], [0.01, 0.05]),
    "memsinks__memsinks": make_record("memsinks", "training", "memsinks", [1.0, 2.5], [0.0, 0.01]),
    "my-plugin__standard": make_record("my-plugin", "localizer", "standard", [0.1, 0.2], [0.1, 0.2]),
}


@pytest.fixture()
def results(tmp_path) -> Path:
    directory = tmp_path / "results"
    for name, record in RECORDS.items():
        path = directory / "records" / f"{SETTING}-{PRESET}" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record.to_dict()))
    curves = {"standard": [{"step": s, "val_loss": 4 - s / 100, "repeated_loss": 3 - s / 50} for s in (10, 20, 30)],
              "memsinks": [{"step": s, "val_loss": 4 - s / 100, "repeated_loss": 3.5 - s / 100,
                            "repeated_loss@own": 3 - s / 40} for s in (10, 20, 30)]}
    save_training_curves(directory, SETTING, PRESET, curves, {"standard": "/ckpt/standard", "memsinks": "/ckpt/ms"})
    frame = pd.DataFrame({"group": ["memorized", "memorized", "non-memorized", "non-memorized"],
                          "sequence": [0, 0, 0, 0], "position": [1, 2, 1, 2], "distance": [2, 1, 2, 1],
                          "em_before": [8, 8, 1, 1], "em_after": [8, 0, 1, 0], "em_drop": [0, 8, 0, 1],
                          "own_drop": [0, 8, 0, 3]})
    write_analysis(analysis_path(directory, SETTING, PRESET, "standard", "prefix-perturbation"),
                   "prefix-perturbation", frame, {"seed": 0, "groups": {}},
                   {"setting": SETTING, "preset": PRESET, "checkpoint": {"label": "standard", "kind": "standard"}})
    return directory


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and "records" not in p.parts}


def test_report_rebuilds_byte_identical_tables_and_figures(results):
    build_report(results)
    first = snapshot(results)
    build_report(results)
    assert snapshot(results) == first
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "leaderboard.html", "index.html",
                 f"figures/tradeoff_{SETTING}-{PRESET}.png", f"figures/tradeoff_{SETTING}-{PRESET}.pdf",
                 f"figures/training-curves_{SETTING}-{PRESET}.png",
                 f"analyses/{SETTING}-{PRESET}/standard/prefix-perturbation.md",
                 f"analyses/{SETTING}-{PRESET}/standard/prefix-perturbation.png"):
        assert name in first, name
    leaderboard = first["leaderboard.md"].decode()
    post_hoc = leaderboard.index("#### post-hoc on standard")
    training = leaderboard.index("#### training-time, vs standard")
    # ranked by gap closed @0.05 within a group (ig 0.3 > hard-concrete 0.125 > my-plugin 0.025);
    # memsinks (another before-state) in its own group
    assert post_hoc < leaderboard.index("| ig ") < leaderboard.index("| hard-concrete ") < \
        leaderboard.index("| my-plugin ") < training < leaderboard.index("| memsinks ")
    index = first["index.html"].decode()
    assert f'src="figures/tradeoff_{SETTING}-{PRESET}.png"' in index
    assert f'src="analyses/{SETTING}-{PRESET}/standard/prefix-perturbation.png"' in index


def test_figures_carry_no_timestamp_or_software_stamp(results):
    build_report(results)
    png = (results / "figures" / f"tradeoff_{SETTING}-{PRESET}.png").read_bytes()
    pdf = (results / "figures" / f"tradeoff_{SETTING}-{PRESET}.pdf").read_bytes()
    assert png.startswith(b"\x89PNG") and b"Software" not in png
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf


def line_colors(figure) -> dict[str, str]:
    """Legend label -> colour of every labelled line in a figure."""
    from matplotlib.colors import to_hex

    return {line.get_label(): to_hex(line.get_color()) for ax in figure.axes for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def test_each_method_keeps_one_color_across_figures():
    records = list(RECORDS.values())
    everything = line_colors(plots.tradeoff_figure(records))
    reordered = line_colors(plots.tradeoff_figure([records[3], records[2], records[0]]))
    for method in ("hard-concrete", "memsinks", "my-plugin"):
        assert everything[method] == reordered[method] == plots.method_color(method)
    methods = ["hard-concrete", "ig", "memsinks", "my-plugin"]
    assert len({everything[m] for m in methods}) == len(methods)
    curves = line_colors(plots.training_curves_figure({"memsinks": [{"step": 1, "val_loss": 3.0, "repeated_loss": 2.0,
                                                                     "repeated_loss@own": 0.1}]}))
    assert curves["memsinks (own sinks)"] == curves["memsinks (sinks dropped)"] == plots.method_color("memsinks")
    sweep = line_colors(plots.sweep_figure([(0.3, {"val_loss": 3.0}), (0.1, {"val_loss": 3.1})], "p"))
    assert sweep["val_loss"] == plots.method_color("memsinks")


def test_plugin_colors_are_stable_and_distinct_from_built_ins():
    color = plots.method_color("my-plugin")
    assert color == plots.method_color("my-plugin") and color in plots.FALLBACK_COLORS
    assert color not in plots.METHOD_COLORS.values()


def test_tradeoff_marks_memsinks_and_the_no_rep_level():
    figure = plots.tradeoff_figure(list(RECORDS.values()))
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert lines["memsinks"].get_marker() == "*" and lines["hard-concrete"].get_marker() == "o"
    assert lines["my-plugin"].get_marker() == plots.PLUGIN_MARKER
    level = lines["no-rep level (vs standard, sequence)"]
    assert list(level.get_ydata()) == pytest.approx([4.2 - 0.2, 4.2 - 0.2])


def test_analysis_render_is_deterministic_from_its_json(results):
    path = analysis_path(results, SETTING, PRESET, "standard", "prefix-perturbation")
    written = render_analysis(path)
    first = {p: p.read_bytes() for p in written}
    render_analysis(path)
    assert {p: p.read_bytes() for p in written} == first
    table = path.with_suffix(".md").read_text()
    assert "em_drop" in table and "distance" in table


def test_cli_plot_and_report(results, capsys):
    assert main(["plot", "tradeoff", "--setting", SETTING, "--preset", PRESET, "--results", str(results)]) == 0
    assert (results / "figures" / f"tradeoff_{SETTING}-{PRESET}.pdf").is_file()
    assert main(["plot", "tradeoff", "--setting", "ts-repetition", "--results", str(results)]) == 2
    assert "no result records" in capsys.readouterr().err
    assert main(["report", "--results", str(results)]) == 0
    assert (results / "index.html").is_file() and (results / "leaderboard.tex").is_file()


def test_leaderboard_averages_seeds_and_picks_configurations_by_their_mean():
    """Replicates (records differing only in seeds) are averaged; the best configuration is
    chosen by its mean, so a lucky seed of a worse configuration is not picked."""
    from memsink_bench.leaderboard import leaderboard_frame

    def replicate(lr: float, seed: int, gap: float) -> ResultRecord:
        record = make_record("sparse-ft", "editor", "standard", [0.4, 1.0], [0.01, 0.05])
        record.hyperparameters = {"lr": lr}
        record.config = {"train": {"seed": seed, "lr": 0.002}, "data": {"seed": 0}, "scoring": {"forget_span": "sequence"}}
        record.seeds = Seeds(method=seed, train=seed, data=0)
        for point in record.points:             # the leaderboard reads the curve, not the stored summary
            point.gap_closed = gap
        return record

    records = [replicate(1e-4, 0, 0.30), replicate(1e-4, 1, 0.20), replicate(1e-4, 2, 0.10),   # mean 0.20
               replicate(1e-3, 0, 0.25), replicate(1e-3, 1, 0.23)]                              # mean 0.24
    [row] = leaderboard_frame(records).to_dict("records")
    assert row["configs"] == 2 and row["seeds"] == 2
    assert row["gap closed @0.05"] == pytest.approx(0.24)
    assert row["sd @0.05"] == pytest.approx(0.0141421, abs=1e-6)
    other_data = replicate(1e-4, 3, 0.9)
    other_data.config["data"]["seed"] = 3              # its own forget set: still a replicate (a seed)
    other_data.seeds = Seeds(method=3, train=3, data=3)
    [row] = leaderboard_frame([*records, other_data]).to_dict("records")
    assert row["configs"] == 2 and row["seeds"] == 4 and row["gap closed @0.05"] == pytest.approx(0.375)
    other_setting = replicate(1e-4, 4, 0.9)
    other_setting.config["data"]["n_single"] = 10      # a different setting is not a replicate
    rows = leaderboard_frame([*records, other_setting]).to_dict("records")
    assert rows[0]["configs"] == 3 and rows[0]["seeds"] == 1 and rows[0]["gap closed @0.05"] == pytest.approx(0.9)


def test_a_torn_record_beside_readable_ones_is_named_not_silently_skipped(tmp_path, capsys):
    import shutil

    from memsink_bench.leaderboard import load_records

    committed = sorted((Path(__file__).resolve().parents[2] / "results" / "records" / "ts-canary-cpu").glob("ig__*.json"))[0]
    folder = tmp_path / "records" / "ts-canary-cpu"
    folder.mkdir(parents=True)
    shutil.copy(committed, folder / committed.name)
    (folder / "torn.json").write_text('{"schema": 1, "poi')
    records = load_records(tmp_path)
    assert [r.path.name for r in records] == [committed.name]
    err = capsys.readouterr().err
    assert "skipped" in err and str(folder / "torn.json") in err


# --- the privacy and robustness figure ---------------------------------------------------------

def test_roc_points_golden_values():
    # members 0.9, 0.4; non-members 0.5, 0.1: thresholds 0.9, 0.5, 0.4, 0.1
    fpr, tpr = plots.roc_points([0.9, 0.4], [0.5, 0.1])
    assert fpr == [0.0, 0.0, 0.5, 0.5, 1.0] and tpr == [0.0, 0.5, 0.5, 1.0, 1.0]
    fpr, tpr = plots.roc_points([1.0, 1.0], [1.0, 0.0])          # a tie moves both rates at once
    assert fpr == [0.0, 0.5, 1.0] and tpr == [0.0, 1.0, 1.0]


def with_robustness(record: ResultRecord, seed: int, relearned: list[float]) -> ResultRecord:
    """`record` with per-sequence attack scores at its first point and a relearning curve there."""
    import copy

    from memsink_bench.record import PerSequence

    record = copy.deepcopy(record)
    record.seeds = Seeds(seed, seed, 0)
    record.config = {"train": {"seed": seed}, "data": {"seed": 0}, "scoring": {"forget_span": "sequence"}}
    per_sequence = PerSequence([0.1] * 2, [0.1] * 2, [1] * 2, [3.0] * 2, [3.0] * 2, [0] * 2, [3.0] * 2,
                               mia_repeated=[0.9, 0.4], mia_validation=[0.5, 0.1])
    record.points[0].per_sequence, record.points[0].mia_auroc = per_sequence, {"min_k_plus_plus": 0.75}
    record.before.per_sequence, record.before.mia_auroc = per_sequence, {"min_k_plus_plus": 0.75}
    record.extras = {"robustness": {
        "knob": record.points[0].knob, "relearn_lr": 1e-3,
        "relearning_base": {"memorizing_loss": 0.2, "after_removal_loss": 2.0},
        "relearning": {str(s): {"loss": v, "never_seen_loss": 4.0 - s / 10} for s, v in zip((1, 5, 20), relearned)}}}
    return record


def test_robustness_figure_draws_the_roc_and_the_mean_relearning_curve_over_seeds():
    seeds = [with_robustness(RECORDS["ig__standard"], 0, [1.0, 0.6, 0.4]),
             with_robustness(RECORDS["ig__standard"], 1, [1.4, 0.8, 0.6])]
    figure = plots.robustness_figure([seeds])
    roc, relearn = figure.axes[:2]
    lines = {line.get_label(): line for line in roc.get_lines()}
    assert list(lines["ig (0.75)"].get_xdata()) == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert "unedited standard (0.75)" in lines and "chance" in lines
    curves = {line.get_label(): line for line in relearn.get_lines()}
    assert list(curves["ig"].get_xdata()) == [0, 1, 5, 20]
    assert list(curves["ig"].get_ydata()) == pytest.approx([2.0, 1.2, 0.7, 0.5])
    assert list(curves["memorizing model"].get_ydata()) == pytest.approx([0.2, 0.2])
    assert list(curves["never-seen model"].get_ydata()) == pytest.approx([3.9, 3.5, 2.0])


def test_cli_plot_robustness_needs_records_with_robustness(results, capsys):
    argv = ["plot", "robustness", "--setting", SETTING, "--preset", PRESET, "--results", str(results)]
    assert main(argv) == 2
    assert "no records with robustness results" in capsys.readouterr().err
    path = results / "records" / f"{SETTING}-{PRESET}" / "ig__standard.json"
    path.write_text(json.dumps(with_robustness(RECORDS["ig__standard"], 0, [1.0, 0.6, 0.4]).to_dict()))
    assert main(argv) == 0
    assert (results / "figures" / f"robustness_{SETTING}-{PRESET}.png").is_file()


def test_pareto_front_is_the_best_gap_closed_within_each_budget():
    # ig: gap closed 0.1 at 0.01 nats, 0.3 at 0.05 (make_record: gap = forgetting / 4)
    figure = plots.pareto_figure([[RECORDS["ig__standard"]]])
    line = next(line for line in figure.axes[0].get_lines() if line.get_label() == "ig")
    x, y = list(line.get_xdata()), list(line.get_ydata())
    at = {round(a, 3): b for a, b in zip(x, y)}
    assert at[0.0] == 0.0 and at[0.01] == pytest.approx(0.1) and at[0.04] == pytest.approx(0.1)
    assert at[0.05] == pytest.approx(0.3) and at[0.5] == pytest.approx(0.3)
    assert all(b >= a for a, b in zip(y, y[1:]))          # a larger budget never closes less


def test_cli_plot_pareto(results):
    assert main(["plot", "pareto", "--setting", SETTING, "--preset", PRESET, "--results", str(results)]) == 0
    assert (results / "figures" / f"pareto_{SETTING}-{PRESET}.png").is_file()


def test_pareto_front_draws_a_seaborn_band_of_the_bootstrap_draws_around_the_mean():
    from matplotlib.collections import PolyCollection

    from tests.scoring.test_intervals import record

    seeds = [record("ig", s, [0.1, 0.3], [0.01, 0.04], spread=1.0) for s in range(3)]
    figure = plots.pareto_figure([seeds])
    ax = figure.axes[0]
    [band] = [c for c in ax.collections if isinstance(c, PolyCollection)]
    line = next(line for line in ax.get_lines() if line.get_label().startswith("ig"))
    x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    vertices = band.get_paths()[0].vertices
    inside = vertices[(vertices[:, 0] > 0.1) & (vertices[:, 0] < 0.4)][:, 1]
    level = y[(x > 0.1) & (x < 0.4)]
    assert inside.min() < level.min() <= level.max() < inside.max()
