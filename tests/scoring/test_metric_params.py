"""The metric parameters (`--set metrics.*`): validated, carried into the attacks and robustness,
and in the record identity only when they differ from the defaults."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from memsink_bench.config import MetricsConfig, load_config, metrics_config, metrics_in_key
from memsink_bench.errors import UserError
from memsink_bench.metrics import directions, measure_state
from memsink_bench.models import build_model
from memsink_bench.record import ResultRecord
from memsink_bench.run import plan_run


def test_defaults_keep_the_identity_and_a_changed_value_enters_it(tmp_path):
    base = plan_run("ig", load_config("ts-canary", "cpu"), tmp_path).path
    explicit = plan_run("ig", load_config("ts-canary", "cpu", ["metrics.top_k=40", "metrics.samples=[1,10,100]"]),
                        tmp_path).path
    changed = plan_run("ig", load_config("ts-canary", "cpu", ["metrics.top_k=10"]), tmp_path).path
    other = plan_run("ig", load_config("ts-canary", "cpu", ["metrics.relearn_steps=[5]"]), tmp_path).path
    assert base == explicit
    assert len({base, changed, other}) == 3


def test_a_config_without_the_section_keys_like_one_with_the_defaults():
    config = load_config("ts-canary", "cpu").to_dict()
    without = {k: v for k, v in config.items() if k != "metrics"}
    assert metrics_in_key(config) == without == metrics_in_key(without)
    changed = copy.deepcopy(config)
    changed["metrics"]["temperature"] = 0.5
    assert metrics_in_key(changed)["metrics"] == {"temperature": 0.5}


def test_records_with_and_without_the_section_are_replicates_of_one_configuration():
    """A record written before `metrics` existed groups with one written with the defaults."""
    committed = sorted(Path(__file__).resolve().parents[2].glob("results/records/ts-canary-cpu/ig__standard__*.json"))
    record = ResultRecord.read(committed[0])
    assert "metrics" not in record.config
    with_defaults = copy.deepcopy(record)
    with_defaults.config["metrics"] = json.loads(json.dumps(MetricsConfig().__dict__))
    assert with_defaults.configuration() == record.configuration()
    with_defaults.config["metrics"]["min_k_fraction"] = 0.1
    assert with_defaults.configuration() != record.configuration()


def test_pretrained_runs_read_the_metrics_section_and_ignore_the_others():
    params = metrics_config(["paragraphs.prefix_len=8", "metrics.samples=[2,3]", "metrics.top_k=5"])
    assert params.samples == [2, 3] and params.top_k == 5 and params.non_default() == {"samples": [2, 3], "top_k": 5}
    with pytest.raises(UserError, match="unknown key 'metrics.topk'"):
        metrics_config(["metrics.topk=5"])


def test_the_parameters_reach_the_attacks(smoke_config, smoke_setting):
    model = build_model(smoke_config.model, len(smoke_setting.tokenizer), smoke_config.data.seq_len + 1, seed=0).eval()
    default = measure_state(model, smoke_setting)
    assert set(default.extraction) == {"rate@1", "rate@10", "rate@100", "mean_p_z"}
    vocab = len(smoke_setting.tokenizer)
    params = MetricsConfig(samples=[2, 3], top_k=1, min_k_fraction=1.0)
    changed = measure_state(model, smoke_setting, params=params)
    assert set(changed.extraction) == {"rate@2", "rate@3", "mean_p_z"}
    # an untrained model's top-1 token is never every target token: p_z is 0 (log stored as -1e9)
    assert set(changed.per_sequence.log_p_z) == {-1e9}
    # over the whole vocabulary p_z is positive, and the temperature changes it
    whole = measure_state(model, smoke_setting, params=MetricsConfig(top_k=vocab)).per_sequence.log_p_z
    hotter = measure_state(model, smoke_setting, params=MetricsConfig(top_k=vocab, temperature=2.0)).per_sequence.log_p_z
    assert all(-1e9 < v < 0 for v in whole) and all(a != pytest.approx(b) for a, b in zip(whole, hotter))
    # Min-K% over all tokens is the loss attack
    assert changed.mia_auroc["min_k"] == pytest.approx(changed.mia_auroc["loss"])
    assert default.mia_auroc["min_k"] != pytest.approx(default.mia_auroc["loss"])
    # the losses do not depend on the attack parameters
    assert changed.repeated_loss == default.repeated_loss and changed.val_loss == default.val_loss


def test_a_records_directions_cover_its_own_samples_grid():
    table = directions(MetricsConfig(samples=[7]))
    assert table["extraction_rate@7"] == "lower" and table["privleak"] == "closer to 0"
    assert "extraction_rate@7" not in directions()


def test_relearning_runs_at_the_training_peak_unless_metrics_relearn_lr_says_otherwise(session_workdir, tmp_path, capsys):
    from memsink_bench.cli import main

    rates = {}
    for extra in ([], ["--set", "metrics.relearn_lr=1e-4"]):
        results = tmp_path / ("gentle" if extra else "default")
        code = main(["run", "--method", "random-neurons", "--setting", "ts-canary", "--preset", "smoke", "--quiet",
                     "--set", "sweep.ratios=[0.05]", *extra, "--workdir", str(session_workdir),
                     "--results", str(results)])
        assert code == 0, capsys.readouterr().err
        [path] = (results / "records").glob("*/*.json")
        rates[bool(extra)] = (path.name, json.loads(path.read_text())["extras"]["robustness"]["relearn_lr"])
    assert rates[False][1] == load_config("ts-canary", "smoke").train.lr
    assert rates[True][1] == pytest.approx(1e-4)
    assert rates[False][0] != rates[True][0]                    # another identity
    with pytest.raises(UserError, match="metrics.relearn_lr"):
        load_config("ts-canary", "smoke", ["metrics.relearn_lr=-1"])
