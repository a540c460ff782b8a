"""Localization accuracy against ground truth: golden values on the planted model (one known
neuron carries the targets), chance for a random localizer, and the CLI on a MemSinks checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from memsink_bench.cli import main
from memsink_bench.localization import RECALL_GRID, auroc_of, precision_at_k, precision_recall, top_k_mask
from memsink_bench.methods.ig import IntegratedGradients
from memsink_bench.methods.random_neurons import RandomNeurons
from memsink_bench.models import mlp_shape
from tests.helpers.planted import PLANTED, planted_model


def _truth(model) -> torch.Tensor:
    truth = torch.zeros(mlp_shape(model), dtype=torch.bool)
    truth[PLANTED] = True
    return truth


def test_a_correct_localizer_scores_precision_one_and_a_random_one_chance():
    model, context, _ = planted_model()
    truth = _truth(model)
    ig = IntegratedGradients(steps=8).score(model, context)
    assert precision_at_k(ig, truth) == 1.0 and auroc_of(ig, truth) > 0.99
    hits = [precision_at_k(RandomNeurons(salt=s).score(model, context), truth) for s in range(200)]
    chance = truth.float().mean().item()                     # 1 of layers x d_mlp
    assert abs(sum(hits) / len(hits) - chance) < 0.02        # about chance (binomial sd of the mean ~0.0003)


def test_precision_and_auroc_golden_values_with_and_without_a_candidate_pool():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.7], [0.2, 0.6, 0.3, 0.0]])
    truth = torch.tensor([[True, False, False, True], [False, False, True, False]])
    assert precision_at_k(scores, truth) == pytest.approx(2 / 3)   # top 3: 0.9 (T), 0.8 (F), 0.7 (T)
    pool = torch.tensor([[False, False, True, True], [False, False, True, True]])
    assert precision_at_k(scores, truth, pool) == 1.0        # in the pool, top 2 of (0.1, 0.7, 0.3, 0.0): 0.7 T, 0.3 T
    assert auroc_of(scores, truth, pool) == 1.0
    assert top_k_mask(scores, 2).sum() == 2 and top_k_mask(scores, 2)[0, :2].all()


def test_precision_recall_golden_values():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.7], [0.2, 0.6, 0.3, 0.0]])
    truth = torch.tensor([[True, False, False, True], [False, False, True, False]])
    # ranking: 0.9 T, 0.8 F, 0.7 T, 0.6 F, 0.3 T, ...: precision 1, 1/2, 2/3, 2/4, 3/5 at recall 1/3, 1/3, 2/3, 2/3, 1
    curve, average = precision_recall(scores, truth)
    assert average == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert curve[0] == 1.0 and curve[RECALL_GRID.index(0.3)] == 1.0        # recall <= 1/3: precision 1
    assert curve[RECALL_GRID.index(0.5)] == pytest.approx(2 / 3)           # recall in (1/3, 2/3]: 2/3
    assert curve[-1] == pytest.approx(3 / 5)                               # full recall at rank 5
    perfect, average = precision_recall(truth.float(), truth)
    assert perfect == [1.0] * len(RECALL_GRID) and average == 1.0


def test_localize_cli_scores_against_the_memsinks_sinks(tmp_path, session_workdir, capsys):
    argv = ["localize", "--setting", "ts-canary", "--preset", "smoke", "--set", "train.epochs=1", "--quiet",
            "--methods", "ig,random-neurons", "--workdir", str(session_workdir), "--results", str(tmp_path)]
    assert main(argv) == 0
    report = json.loads((tmp_path / "analyses" / "ts-canary-smoke" / "memsinks-mean" / "localization.json").read_text())
    random = report["methods"]["random-neurons"]["summary"]
    chance_pool = random["chance_pool"]["mean"]
    assert 0.2 < chance_pool < 0.4                           # own sinks: p = 0.3 of the pool
    low, high = random["precision_pool"]["interval"]
    assert low - 0.1 < chance_pool < high + 0.1 and abs(random["auroc_pool"]["mean"] - 0.5) < 0.1
    assert len(report["methods"]["ig"]["groups"]) == 4       # one group per forget sequence (smoke: 4)
    for row in report["methods"]["ig"]["groups"]:             # the causal check net of the drop's degradation
        assert row["net_own_sinks"] == pytest.approx(row["forgetting_own_sinks"] - row["degradation_own_sinks"])
        assert row["net_method_top_k"] == pytest.approx(row["forgetting_method_top_k"] - row["degradation_method_top_k"])
        assert row["degradation_own_sinks"] != 0.0            # dropping neurons of a trained model changes its loss
    table = (tmp_path / "analyses" / "ts-canary-smoke" / "memsinks-mean" / "localization.md").read_text()
    assert "net (forgetting - degradation)" in table
    # precision-recall curves: per group and averaged, and the figure
    ig = report["methods"]["ig"]
    assert all(len(row["pr_all"]) == len(RECALL_GRID) and 0 < row["ap_pool"] <= 1 for row in ig["groups"])
    assert ig["summary"]["pr_pool"] == pytest.approx([sum(row["pr_pool"][i] for row in ig["groups"]) / 4
                                                     for i in range(len(RECALL_GRID))])
    assert abs(random["ap_pool"]["mean"] - chance_pool) < 0.15                    # a random ranking: AP ~ base rate
    assert "AP (sink pool)" in table
    assert (tmp_path / "figures" / "localization-pr_ts-canary-smoke.png").is_file()
    # the report shows the table (a localization report is not an analysis) and its figure
    assert main(["report", "--results", str(tmp_path)]) == 0
    index = (tmp_path / "index.html").read_text()
    assert "Localization against own sinks: ts-canary (smoke)" in index and "localization-pr_ts-canary-smoke.png" in index
    assert main([*argv[:-6], "--methods", "sparse-ft", "--workdir", str(session_workdir),
                 "--results", str(tmp_path)]) == 2
    assert "is not a localizer" in capsys.readouterr().err


def test_localize_pools_seeds_and_resamples_them(tmp_path, session_workdir, capsys):
    """--seeds: each seed its own MemSinks checkpoint (and, with data.seed, its own forget set) and
    localizer seed; the summary weighs seeds alike and its interval resamples seeds, then groups."""
    from memsink_bench.localization import _resampled_means

    argv = ["localize", "--setting", "ts-canary", "--preset", "smoke", "--set", "train.epochs=1", "--quiet",
            "--methods", "random-neurons", "--seeds", "0,1", "--seed-fields", "train.seed,data.seed",
            "--workdir", str(session_workdir), "--results", str(tmp_path)]
    assert main(argv) == 0
    report = json.loads((tmp_path / "analyses" / "ts-canary-smoke" / "memsinks-mean" / "localization.json").read_text())
    assert report["seeds"] == [0, 1] and len(set(report["checkpoints"])) == 2
    assert report["directions"]["precision_pool"] == "higher" and report["directions"]["degradation_method_top_k"] == "lower"
    groups = report["methods"]["random-neurons"]["groups"]
    assert sorted({row["seed"] for row in groups}) == [0, 1] and len(groups) == 8      # smoke: 4 per seed
    # two seeds, two random draws: their picks differ
    first = [row["precision_all"] for row in groups if row["seed"] == 0]
    second = [row["precision_all"] for row in groups if row["seed"] == 1]
    assert first != second
    summary = report["methods"]["random-neurons"]["summary"]["precision_all"]
    assert summary["mean"] == pytest.approx((np.mean(first) + np.mean(second)) / 2)
    assert "seeds (0, 1) and forget-sequence groups" in capsys.readouterr().out
    # the two-level resample: constant groups within each seed leave only the seeds' spread
    draws = _resampled_means([1.0, 1.0, 3.0, 3.0], [0, 0, 1, 1], np.random.default_rng(0))
    assert set(np.round(draws, 6)) == {1.0, 2.0, 3.0}
    for bad in (["--seeds", "0,x"], ["--seeds", "1,1"], ["--seed-fields", "model.seed"], ["--set", "train.seed=5"]):
        assert main([*argv, *bad]) == 2
        assert "--seed" in capsys.readouterr().err
