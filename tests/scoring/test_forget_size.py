"""Forgetting only some of the repeated sequences (`scoring.forget_count`): the forget set is the
first N, every forget metric reads them, the rest stay memorized and their loss is collateral."""

from __future__ import annotations

import json

import pytest
import torch

from memsink_bench.cli import main
from memsink_bench.config import load_config
from memsink_bench.errors import UserError
from memsink_bench.kinds.memsinks import MemSinks
from memsink_bench.masks import split_neurons
from memsink_bench.setting import forget_view

SMOKE = ["--setting", "ts-canary", "--preset", "smoke", "--quiet"]


def test_a_forget_view_splits_the_repeated_sequences_and_all_is_the_setting_itself(smoke_setting):
    view = forget_view(smoke_setting, 1)
    assert view.repeated.tokens == smoke_setting.repeated.tokens[:1] and view.repeated.ids == smoke_setting.repeated.ids[:1]
    assert view.other_repeated.tokens == smoke_setting.repeated.tokens[1:] and view.forget_count == 1
    assert view.single is smoke_setting.single and view.setting_hash == smoke_setting.setting_hash
    assert forget_view(smoke_setting, 0) is smoke_setting
    assert forget_view(smoke_setting, len(smoke_setting.repeated)) is smoke_setting
    with pytest.raises(UserError, match="scoring.forget_count=99 exceeds"):
        forget_view(smoke_setting, 99)
    with pytest.raises(UserError, match="scoring.forget_count"):
        load_config("ts-canary", "smoke", ["scoring.forget_count=-1"])


def test_memsinks_forgetting_a_subset_drops_only_the_union_of_their_own_sinks(smoke_config):
    config, d_mlp = smoke_config, 128
    kind = MemSinks()
    n_shared, _ = split_neurons(d_mlp, config.memsinks.shared_fraction)
    ids = torch.tensor([1, 2])
    own = (kind.training_scale(config, d_mlp, ids)[0, :, 0, :] > 0)
    union = own.any(dim=0) & (torch.arange(d_mlp) >= n_shared)
    full = kind.union_removal_scale(config, d_mlp, ids, 1.0).flatten()
    p = config.memsinks.sink_fraction
    assert torch.equal(full[union], torch.zeros(int(union.sum())))                  # their sinks: off
    assert torch.allclose(full[~union & (torch.arange(d_mlp) >= n_shared)], torch.tensor(p))   # others: mean view
    assert torch.equal(full[:n_shared], torch.ones(n_shared))                       # shared: as in `mean`
    half = kind.union_removal_scale(config, d_mlp, ids, 0.5).flatten()
    assert torch.allclose(half[union], torch.tensor(p * 0.5))


def test_a_run_forgetting_one_sequence_scores_it_and_measures_the_kept_ones(session_workdir, tmp_path, capsys):
    results = tmp_path / "results"
    paths = {}
    for count in (0, 1):
        code = main(["run", "--method", "random-neurons", *SMOKE, "--set", "sweep.ratios=[0.05,0.5]",
                     "--set", f"scoring.forget_count={count}", "--workdir", str(session_workdir),
                     "--results", str(results)])
        assert code == 0, capsys.readouterr().err
        paths[count] = {p for p in (results / "records").glob("*/*.json")} - set().union(*paths.values())
    [one] = paths[1]
    [every] = paths[0]
    record, all_of_them = json.loads(one.read_text()), json.loads(every.read_text())
    assert len(record["before"]["per_sequence"]["repeated_loss"]) == 1               # the forget set: 1 sequence
    assert record["before"]["per_sequence"]["repeated_loss"][0] == pytest.approx(
        all_of_them["before"]["per_sequence"]["repeated_loss"][0], abs=1e-4)
    kept = all_of_them["before"]["per_sequence"]["repeated_loss"][1:]
    assert record["before"]["other_repeated_loss"] == pytest.approx(sum(kept) / len(kept), abs=1e-4)
    assert all(p["other_forgetting"] is not None for p in record["points"])
    assert "other_repeated_loss" not in all_of_them["before"]
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(results), "--format", "md"]) == 0
    table = capsys.readouterr().out
    assert "forgetting the canary of 1 sequence" in table and "kept rep. forgetting @0.05" in table
