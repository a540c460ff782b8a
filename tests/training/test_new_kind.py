"""A fifth checkpoint kind is one class and one registry line: this tiny made-up kind (the last
quarter of every MLP switched off during training, a `half-off` view, a removal curve) trains,
gets its own cache key, loads with its views, and runs methods through the same CLI paths."""

from __future__ import annotations

import json

import pytest
import torch

from memsink_bench import kinds
from memsink_bench.checkpoints import checkpoint_dir, get_checkpoint
from memsink_bench.cli import main
from memsink_bench.config import load_config
from memsink_bench.interventions import per_layer_scale
from memsink_bench.kinds import Kind, View, register_kind
from memsink_bench.models import build_model

SMOKE = ["--setting", "ts-canary", "--preset", "smoke", "--quiet", "--set", "train.epochs=1"]


class QuarterOff(Kind):
    name = "quarter-off"
    description = "the last quarter of every MLP is switched off during training"
    default_view = "trained"
    validation_view = "trained"

    def _scale(self, d_mlp: int, value: float) -> torch.Tensor:
        scale = torch.ones(d_mlp)
        scale[3 * d_mlp // 4:] = value
        return scale

    def training_scale(self, config, d_mlp, ids):
        return per_layer_scale(self._scale(d_mlp, 0.0)[None, :]).to(ids.device)

    def own_views(self, config, d_mlp):
        off = per_layer_scale(self._scale(d_mlp, 0.0)[None, :])
        return {"trained": View("trained", "as trained: the last quarter off", lambda ids: off.to(ids.device)),
                "all-on": View("all-on", "every neuron on", None)}


@pytest.fixture()
def quarter_off():
    kind = register_kind(QuarterOff())
    yield kind
    del kinds.KINDS[kind.name]


def test_a_new_kind_trains_once_and_keys_its_own_checkpoint(quarter_off, smoke_setting, session_workdir):
    config = load_config("ts-canary", "smoke", ["train.epochs=1"])
    directory = checkpoint_dir(session_workdir, "quarter-off", config)
    assert directory != checkpoint_dir(session_workdir, "standard", config)
    checkpoint = get_checkpoint(session_workdir, smoke_setting, "quarter-off", config, progress=False)
    assert checkpoint.directory == directory and checkpoint.kind == "quarter-off"
    metrics = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert "repeated_loss@all-on" in metrics[-1]             # every view is measured during training
    # the switched-off quarter got no gradient: AdamW's decoupled weight decay only shrank its
    # down-projection rows, so they still point where they started; the trained neurons' rows moved
    init = build_model(config.model, smoke_setting.vocab_size, config.data.seq_len, config.train.seed)
    trained, start = checkpoint.model.transformer.h[0].mlp.c_proj.weight, init.transformer.h[0].mlp.c_proj.weight
    quarter = 3 * trained.shape[0] // 4          # Conv1D weight: [d_mlp, d_model]
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(trained[quarter:].flatten(), start[quarter:].flatten(), dim=0) > 0.9999
    assert cosine(trained[:quarter].flatten(), start[:quarter].flatten(), dim=0) < 0.999


def test_cli_runs_a_method_on_the_new_kind_and_its_views(quarter_off, tmp_path, session_workdir, capsys):
    common = ["--workdir", str(session_workdir), "--results", str(tmp_path)]
    assert main(["run", "--method", "random-neurons", *SMOKE, "--set", "sweep.ratios=[0.1]",
                 "--checkpoint", "quarter-off:all-on", *common]) == 0
    [path] = (tmp_path / "records" / "ts-canary-smoke").glob("random-neurons__quarter-off-all-on__*.json")
    record = json.loads(path.read_text())
    assert record["checkpoint"]["kind"] == "quarter-off" and record["checkpoint"]["view"] == "all-on"
    assert main(["run", "--method", "random-neurons", *SMOKE, "--checkpoint", "quarter-off:nope", *common]) == 2
    assert "has no view 'nope'" in capsys.readouterr().err
