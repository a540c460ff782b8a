"""Every checkpoint kind trains at the smoke preset; an interrupted run resumes bit for bit."""

import json

import pytest
import torch
from safetensors.torch import load_file

from memsink_bench.checkpoints import get_checkpoint, load_checkpoint
from memsink_bench.config import load_config
from memsink_bench.errors import UserError
from memsink_bench.train import train

KINDS = ["standard", "standard-no-rep", "never-seen", "gradient-masked", "memsinks"]


@pytest.fixture(scope="module")
def trained(smoke_setting, smoke_config, session_workdir):
    return {kind: get_checkpoint(session_workdir, smoke_setting, kind, smoke_config, progress=False)
            for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_trains_and_its_losses_fall(trained, kind):
    metrics = [json.loads(line) for line in (trained[kind].directory / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == sorted({m["step"] for m in metrics})
    first, last = metrics[0], metrics[-1]
    assert last["val_loss"] < first["val_loss"] - 0.1
    assert last["repeated_loss"] < first["repeated_loss"] - 0.1
    manifest = trained[kind].manifest
    assert manifest["kind"] == kind and len(manifest["corpus_hash"]) == 64
    assert manifest["final_metrics"]["step"] == manifest["steps"]
    for name in ("torch", "transformers"):
        assert manifest["versions"][name] != "absent"


def test_no_rep_trains_fewer_steps_than_standard(trained):
    assert trained["standard-no-rep"].manifest["steps"] < trained["standard"].manifest["steps"]


def test_kind_views_are_logged(trained):
    memsinks = trained["memsinks"].manifest["final_metrics"]
    assert {"repeated_loss@own", "repeated_loss@mean", "repeated_loss@drop-unscaled"} <= set(memsinks)
    masked = trained["gradient-masked"].manifest["final_metrics"]
    assert "repeated_loss@keep-all" in masked


def test_gradient_masked_logs_its_memorization_blocks_share_as_it_trains(trained, smoke_setting, smoke_config):
    """The collapse diagnostic during training: the memorization block's share of the MLP output on
    held-out and repeated text and the kept-all validation loss, at every evaluation, equal to
    what the block-norms analysis and a plain evaluation measure on the final model."""
    from memsink_bench.analyses.block_norms import block_output_norms
    from memsink_bench.evaluate import sequence_losses
    from memsink_bench.kinds.gradient_masked import DIAGNOSTIC_SEQUENCES, memorization_block
    from memsink_bench.models import mlp_shape

    checkpoint = trained["gradient-masked"]
    logged = [json.loads(line) for line in (checkpoint.directory / "metrics.jsonl").read_text().splitlines()]
    assert all({"mem_block_share@validation", "mem_block_share@repeated", "val_loss@keep-all"} <= set(m)
               for m in logged)
    final = checkpoint.manifest["final_metrics"]
    model, pad = checkpoint.model.eval(), smoke_setting.tokenizer.pad_token_id
    n_gen, _ = memorization_block(mlp_shape(model)[1], smoke_config.gradient_masked.generalization_fraction)
    for role, sequences in (("validation", smoke_setting.validation), ("repeated", smoke_setting.repeated)):
        norms = block_output_norms(model, sequences.subset(range(min(DIAGNOSTIC_SEQUENCES, len(sequences)))), pad, n_gen)
        assert 0 < final[f"mem_block_share@{role}"] < 1
        assert final[f"mem_block_share@{role}"] == pytest.approx(float((norms[:, 1] / norms.sum(1)).mean()), rel=1e-4)
    kept = sequence_losses(model, smoke_setting.validation, pad).summary()["loss"]
    assert final["val_loss@keep-all"] == pytest.approx(kept, rel=1e-4)
    assert final["val_loss@keep-all"] != pytest.approx(final["val_loss"], rel=1e-3)    # the dropped-block view differs


def test_checkpoint_is_reused_not_retrained(trained, smoke_setting, smoke_config, session_workdir):
    again = get_checkpoint(session_workdir, smoke_setting, "standard", smoke_config, progress=False)
    assert again.directory == trained["standard"].directory
    assert again.manifest["train_seconds"] == trained["standard"].manifest["train_seconds"]


@pytest.mark.parametrize("kind", ["standard", "memsinks", "gradient-masked"])
def test_interrupted_run_resumed_equals_uninterrupted(smoke_setting, tmp_path, kind):
    config = load_config("ts-canary", "smoke", ["train.eval_every=7"])
    full = train(smoke_setting, kind, config, tmp_path / "full", progress=False)
    train(smoke_setting, kind, config, tmp_path / "cut", stop_after=16, progress=False)
    resumed = train(smoke_setting, kind, config, tmp_path / "cut", resume=True, progress=False)
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    steps = [m["step"] for m in resumed.metrics]
    assert steps == [m["step"] for m in full.metrics]           # no duplicate or missing log lines


def test_foreign_checkpoint_is_refused(trained, session_workdir):
    from memsink_bench.setting import get_setting

    other = load_config("ts-repetition", "smoke")
    other_setting = get_setting(other.setting, other.data, session_workdir)
    with pytest.raises(UserError, match="trained on setting 'ts-canary'"):
        load_checkpoint(trained["standard"].directory, other_setting)


def test_truncated_weights_are_a_clear_error(trained, smoke_setting, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained["standard"].directory, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="unreadable"):
        load_checkpoint(broken, smoke_setting)


def test_saved_weights_are_safetensors(trained):
    state = load_file(str(trained["standard"].directory / "model.safetensors"))
    assert any(name.endswith("mlp.c_fc.weight") for name in state)


def test_repeated_trace_logs_every_appearance_and_does_not_change_the_checkpoint_key(smoke_setting, tmp_path):
    from memsink_bench.checkpoints import checkpoint_key
    from memsink_bench.train import TRACE_FILE

    config = load_config("ts-canary", "smoke", ["train.trace_repeated=true"])
    plain = load_config("ts-canary", "smoke")
    assert checkpoint_key("memsinks", config, "h") == checkpoint_key("memsinks", plain, "h")
    result = train(smoke_setting, "memsinks", config, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / TRACE_FILE).read_text().splitlines()]
    epochs, n_repeated = config.train.epochs, len(smoke_setting.repeated)
    assert len(rows) == epochs * n_repeated * config.data.repetitions        # every appearance, once
    assert {r["sequence"] for r in rows} == set(range(n_repeated))
    assert all(0 < r["step"] <= result.steps for r in rows)
    first = [r["loss"] for r in rows if r["sequence"] == 0]
    assert first[-1] < first[0]                                             # it is being learned


def test_two_processes_train_one_checkpoint_together(tmp_path):
    """`torchrun` (what `accelerate launch --multi_gpu` starts on a CPU-only machine): two ranks
    shard every batch, all-reduce gradients, and rank 0 alone writes the checkpoint."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "memsink_bench.cli",
               "train", "--setting", "ts-canary", "--preset", "smoke", "--kind", "memsinks", "--quiet",
               "--workdir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    [directory] = list((tmp_path / "checkpoints" / "ts-canary").glob("memsinks-*"))
    assert json.loads((directory / "manifest.json").read_text())["processes"] == 2
    metrics = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"]
