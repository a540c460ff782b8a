"""Task YAMLs, presets, overrides and method YAMLs load, validate and round-trip."""

import pytest
import yaml

from memsink_bench.config import ExperimentConfig, available_settings, data_dir, load_config
from memsink_bench.errors import UserError
from memsink_bench.methods.registry import BUILTINS, registry


@pytest.mark.parametrize("setting", ["ts-repetition", "ts-canary"])
@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_every_preset_loads_and_round_trips(setting, preset):
    config = load_config(setting, preset)
    assert ExperimentConfig.from_dict(config.to_dict()) == config
    assert (config.data.canary_length > 0) == (setting == "ts-canary")


def test_paper_preset_has_the_papers_numbers():
    data = load_config("ts-repetition", "paper").data
    assert (data.n_repeated, data.repetitions, data.n_single) == (100, 128, 20000)
    model = load_config("ts-repetition", "paper").model
    assert (model.n_layer, model.n_embd, model.d_mlp) == (24, 1024, 4096)


def test_overrides_apply_and_parse_numbers():
    config = load_config("ts-canary", "smoke", ["train.lr=1e-3", "memsinks.sink_fraction=0.5",
                                                 "data.corpus_path=/x/y.txt", "data.corpus=file"])
    assert config.train.lr == 1e-3 and config.memsinks.sink_fraction == 0.5
    assert config.data.corpus == "file"


@pytest.mark.parametrize("override, message", [
    ("memsinks.sink_fraction=0", "memsinks.sink_fraction=0"),
    ("memsinks.shared_fraction=1", "memsinks.shared_fraction=1"),
    ("model.n_head=3", "not divisible"),
    ("data.prefix_len=200", "must be below"),
    ("data.n_control=100000", "n_control exceeds"),
    ("data.corpus=files", "did you mean 'file'"),
    ("data.corpus=file", "needs a path"),
])
def test_invalid_values_name_the_field_and_the_fix(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        load_config("ts-canary", "smoke", [override])


def test_settings_are_found():
    assert {"ts-repetition", "ts-canary"} <= set(available_settings())


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_baseline_yaml_mirrors_the_constructor(name):
    """baselines/<method>.yaml hyperparameters are exactly the constructor arguments."""
    raw = yaml.safe_load((data_dir("baselines") / f"{name}.yaml").read_text())
    cls = registry().get(name).load()
    assert raw["method"] == name
    assert set(raw["hyperparameters"]) == set(cls.hyperparameter_names())
    method = cls(**raw["hyperparameters"])
    assert {**method.hyperparameters(), **method.resources()} == {k: (tuple(v) if isinstance(v, list) else v)
                                                                 for k, v in raw["hyperparameters"].items()}
