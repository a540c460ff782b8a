"""Selection seeds and evaluation seeds: a configuration chosen on runs the row does not report."""

from __future__ import annotations

import json

import pytest

from memsink_bench.cli import main
from memsink_bench.errors import UserError
from memsink_bench.leaderboard import leaderboard_frame, selection_frame
from memsink_bench.protocol import Protocol, load_protocol
from memsink_bench.record import Seeds
from memsink_bench.report import build_report
from tests.scoring.test_plots_report import make_record

SELECTION = Protocol((100, 101), "gap closed @0.05")


def replicate(lr: float, seed: int, gap: float):
    record = make_record("co-unlearn", "editor", "standard", [0.4, 1.0], [0.01, 0.05])
    record.hyperparameters = {"lr": lr}
    record.config = {"train": {"seed": seed}, "data": {"seed": seed}, "scoring": {"forget_span": "sequence"}}
    record.seeds = Seeds(method=seed, train=seed, data=seed)
    for point in record.points:
        point.gap_closed = gap
    return record


# lr 1e-3 looks best on the evaluation seeds (0.5), lr 1e-4 is best on the selection seeds
RECORDS = [replicate(1e-4, 100, 0.40), replicate(1e-4, 101, 0.30), replicate(1e-4, 0, 0.20), replicate(1e-4, 1, 0.22),
           replicate(1e-3, 100, 0.10), replicate(1e-3, 101, 0.15), replicate(1e-3, 0, 0.50), replicate(1e-3, 1, 0.48)]


def test_the_configuration_is_chosen_on_selection_seeds_and_reported_on_the_others():
    [row] = leaderboard_frame(RECORDS, protocol=SELECTION).to_dict("records")
    assert row["_records"][0].hyperparameters == {"lr": 1e-4}
    assert {r.seeds.train for r in row["_records"]} == {0, 1}              # evaluation seeds only
    assert row["gap closed @0.05"] == pytest.approx(0.21) and row["seeds"] == 2
    assert row["selected on"] == "seeds 100,101" and row["configs"] == 2


def test_without_a_protocol_every_seed_is_reported_and_the_column_says_so():
    [row] = leaderboard_frame(RECORDS).to_dict("records")
    assert row["_records"][0].hyperparameters == {"lr": 1e-3}             # best mean over all four seeds
    assert row["seeds"] == 4 and row["selected on"] == "reported seeds"


def test_a_configuration_without_selection_runs_cannot_be_chosen_beside_one_with_them():
    late = [replicate(1e-2, 0, 0.9), replicate(1e-2, 1, 0.9)]              # never run on the selection seeds
    [row] = leaderboard_frame([*RECORDS, *late], protocol=SELECTION).to_dict("records")
    assert row["_records"][0].hyperparameters == {"lr": 1e-4} and row["configs"] == 3


def test_the_selection_table_lists_every_configuration_tried_and_marks_the_one_the_leaderboard_reports():
    frame = selection_frame(RECORDS, SELECTION)
    rows = {row["configuration"]: row for row in frame.to_dict("records")}
    assert set(rows) == {"method.lr=0.0001", "method.lr=0.001"}          # labelled by the field they differ in
    assert rows["method.lr=0.0001"]["chosen"] and not rows["method.lr=0.001"]["chosen"]
    assert rows["method.lr=0.0001"]["gap closed @0.05"] == pytest.approx(0.35)
    assert rows["method.lr=0.0001"]["seeds"] == "100, 101"              # selection seeds only
    assert rows["method.lr=0.0001"]["per seed"] == "0.400, 0.300"
    [reported] = leaderboard_frame(RECORDS, protocol=SELECTION).to_dict("records")
    [chosen] = frame[frame["chosen"]].to_dict("records")
    assert chosen["_configuration"] == reported["_records"][0].configuration()
    assert selection_frame(RECORDS).empty                                 # no protocol, no selection stage


def test_the_report_writes_the_selection_table_only_under_a_protocol(tmp_path):
    results = tmp_path / "results"
    for index, record in enumerate(RECORDS):
        path = results / "records" / "ts-canary-cpu" / f"r{index}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record.to_dict()))
    build_report(results)
    assert not (results / "selection.md").exists()
    (results / "protocol.yaml").write_text("selection_seeds: [100, 101]\n")
    build_report(results)
    table = (results / "selection.md").read_text()
    [chosen] = [line for line in table.splitlines() if line.startswith("|") and "✓" in line]
    assert "method.lr=0.0001" in chosen and "0.350" in chosen
    assert "selection.md" in (results / "index.html").read_text()


def test_the_protocol_file_is_read_beside_the_records(tmp_path, capsys):
    results = tmp_path / "results"
    for index, record in enumerate(RECORDS):
        path = results / "records" / "ts-canary-cpu" / f"r{index}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record.to_dict()))
    (results / "protocol.yaml").write_text("selection_seeds: [100, 101]\n")
    assert load_protocol(results) == SELECTION
    assert main(["leaderboard", "--results", str(results), "--format", "csv"]) == 0
    table = capsys.readouterr().out
    assert "seeds 100,101" in table and "0.210" in table
    (results / "protocol.yaml").write_text("selection_seeds: [100]\ncriterion: best guess\n")
    with pytest.raises(UserError, match="not a leaderboard statistic"):
        load_protocol(results)
    (results / "protocol.yaml").write_text("selection_seed: [100]\n")
    assert main(["leaderboard", "--results", str(results)]) == 2
    assert "selection_seeds" in capsys.readouterr().err


def test_synthetic_replicates_with_their_own_data_seeds_share_a_table_other_corpora_do_not_mix():
    drawn = [replicate(1e-4, seed, 0.2) for seed in (0, 1)]
    drawn[1].corpus_hash = "ef" * 32                       # the synthetic stories drawn with another data seed
    [row] = leaderboard_frame(drawn).to_dict("records")
    assert row["seeds"] == 2
    for record in drawn:
        record.corpus = "file:docs.txt"
    with pytest.raises(UserError, match="different corpora"):
        leaderboard_frame(drawn)
