"""The forget span: what every method's objective reads is exactly what the primary columns score."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from memsink_bench.cli import main
from memsink_bench.config import ModelConfig, identity_config, load_config
from memsink_bench.errors import UserError
from memsink_bench.evaluate import batches, sequence_losses
from memsink_bench.methods.base import target_nll
from memsink_bench.models import build_model
from memsink_bench.record import ResultRecord
from memsink_bench.setting import forget_set

SMOKE = ["--setting", "ts-canary", "--preset", "smoke", "--quiet"]


def test_task_files_declare_each_settings_forget_span_and_bad_values_are_refused():
    assert load_config("ts-repetition", "cpu").scoring.forget_span == "sequence"     # the MemSinks paper's measure
    assert load_config("ts-canary", "cpu").scoring.forget_span == "extraction"       # the canary
    with pytest.raises(UserError, match="scoring.forget_span"):
        load_config("ts-canary", "smoke", ["scoring.forget_span=canaries"])


def test_an_extraction_forget_span_keeps_the_identity_records_had_before_the_section_existed():
    before = {"data": {"seed": 0}, "train": {"lr": 1e-3}}
    assert identity_config({**before, "scoring": {"forget_span": "extraction"}}) == before
    assert identity_config({**before, "scoring": {"forget_span": "sequence"}})["scoring"] == {"forget_span": "sequence"}


@pytest.mark.parametrize("span", ["sequence", "extraction"])
def test_the_methods_objective_per_sequence_is_the_scored_loss(smoke_setting, span):
    """target_nll, the loss every built-in method's objective is made of, over the forget set
    (MethodContext.targets) equals per sequence the loss the primary column scores: the
    whole-sequence loss for `sequence`, the canary's for `extraction`."""
    model = build_model(ModelConfig(n_layer=1, n_embd=32, n_head=2, d_mlp=64), smoke_setting.vocab_size,
                        128, seed=0).eval()
    pad = smoke_setting.tokenizer.pad_token_id
    report = sequence_losses(model, smoke_setting.repeated, pad)
    scored = report.whole if span == "sequence" else report.target
    targets = forget_set(smoke_setting, span)
    objective = torch.stack([target_nll(model, batch).detach() for batch in batches(targets, 1, pad)])
    torch.testing.assert_close(objective, scored.to(objective.dtype), rtol=1e-5, atol=1e-5)
    if span == "extraction":                      # the canary: the repeated story's last 16 tokens
        assert [end - start for start, end in targets.spans] == [16] * len(targets)
        assert not torch.allclose(report.whole, report.target)


RECORDING = '''
import json, os
import torch
from memsink_bench.methods.base import NeuronLocalizer
from memsink_bench.models import mlp_shape


class Recording(NeuronLocalizer):
    """writes the target tokens it was asked to forget; scores nothing in particular"""

    name = "recording"

    def score(self, model, context):
        seen = []
        for batch in context.target_batches():
            for row in range(batch.labels.shape[0]):
                seen.append(batch.labels[row][batch.target_mask[row]].tolist())
        with open(os.environ["RECORDING_PATH"], "w") as handle:
            json.dump(seen, handle)
        layers, d_mlp = mlp_shape(model)
        return torch.rand(layers, d_mlp, generator=context.generator())
'''


def test_a_run_hands_its_method_the_forget_span_and_ranks_it_there(session_workdir, tmp_path, monkeypatch, capsys):
    from memsink_bench.setting import get_setting

    (tmp_path / "recording.py").write_text(textwrap.dedent(RECORDING))
    setting = get_setting("ts-canary", load_config("ts-canary", "smoke").data, session_workdir)
    results = tmp_path / "results"
    seen, records = {}, {}
    for span in ("sequence", "extraction"):
        monkeypatch.setenv("RECORDING_PATH", str(tmp_path / f"{span}.json"))
        code = main(["run", "--method", f"{tmp_path / 'recording.py'}:Recording", *SMOKE, "--set",
                     f"scoring.forget_span={span}", "--set", "sweep.ratios=[0.1]", "--workdir", str(session_workdir),
                     "--results", str(results)])
        assert code == 0, capsys.readouterr().err
        seen[span] = json.loads((tmp_path / f"{span}.json").read_text())
        [path] = [p for p in (results / "records").glob("*/*.json") if p not in records.values()]
        records[span] = path
    # sequence: every token after BOS; extraction: exactly the canary
    assert seen["sequence"] == [tokens[1:] for tokens in setting.repeated.tokens]
    assert seen["extraction"] == [tokens[start:end] for tokens, (start, end)
                                  in zip(setting.repeated.tokens, setting.repeated.spans)]
    for span, path in records.items():
        record = ResultRecord.read(path)
        assert record.forget_span == span
        assert record.forget_key == ("gap_closed" if span == "sequence" else "gap_closed_target")
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(results), "--format", "md"]) == 0
    table = capsys.readouterr().out
    # the two runs forgot different spans: never ranked against each other
    assert "post-hoc on standard, forgetting the sequence" in table
    assert "post-hoc on standard, forgetting the canary" in table


def test_co_edit_edits_the_extraction_span_when_the_forget_span_is_the_whole_sequence(session_workdir, tmp_path,
                                                                                        capsys):
    """A whole-sequence forget span has no prefix to perturb: co-edit rewrites the continuation
    after the extraction prefix (MethodContext.with_prefix) and is scored on the whole sequence."""
    results = tmp_path / "results"
    code = main(["run", "--method", "co-edit", "--setting", "ts-repetition", "--preset", "smoke", "--quiet",
                 "--set", "sweep.steps=[1,2]", "--workdir", str(session_workdir), "--results", str(results)])
    assert code == 0, capsys.readouterr().err
    [path] = (results / "records").glob("*/*.json")
    record = ResultRecord.read(path)
    assert record.forget_span == "sequence" and record.extras["edited_sequences"] >= 1
