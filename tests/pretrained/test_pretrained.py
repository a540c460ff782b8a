"""Bring your own model and text, offline: tiny random models of each supported architecture are
built here, fine-tuned for a few seconds until they memorize four paragraphs, saved with
`save_pretrained`, and run through the same CLI path a user takes with a hub model
(`memsink-bench run --method ... --model DIR --paragraphs FILE`)."""

from __future__ import annotations

import json

import pytest
import torch

from memsink_bench.cli import main
from memsink_bench.corpus.synthetic import generate_stories
from memsink_bench.setting import train_tokenizer

P, K = 12, 12
MEMORIZED = 4
SETS = ["--set", f"paragraphs.prefix_len={P}", "--set", f"paragraphs.continuation_len={K}",
        "--set", "paragraphs.n_control=6", "--set", "paragraphs.n_retain=6", "--set", "paragraphs.n_validation=6"]


def _configs(vocab: int):
    from transformers import GPT2Config, GPTNeoConfig, GPTNeoXConfig, LlamaConfig

    small = dict(vocab_size=vocab, bos_token_id=0, eos_token_id=0)
    return {
        "gpt2": GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=64, **small),
        "gpt-neo": GPTNeoConfig(num_layers=2, hidden_size=64, num_heads=2, max_position_embeddings=64,
                                attention_types=[[["global", "local"], 1]], window_size=32, **small),
        "gpt-neox": GPTNeoXConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128,
                                  max_position_embeddings=64, **small),
        "llama": LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, num_key_value_heads=2,
                             intermediate_size=128, max_position_embeddings=64, **small),
    }


def _memorize(model, sequences: list[list[int]], steps: int = 150) -> None:
    batch = torch.tensor(sequences)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """{architecture: model directory}, the paragraphs file (4 memorized, 22 not) and a text file."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("zoo")
    stories = [" ".join(s.split()) for s in generate_stories(40, 11)]
    tokenizer = train_tokenizer(stories, 400)
    encoded = [tokenizer.encode(s, add_special_tokens=False)[:P + K] for s in stories]
    assert all(len(e) == P + K for e in encoded)
    paragraphs = root / "paragraphs.jsonl"
    paragraphs.write_text("\n".join(json.dumps({"text": s}) for s in stories[:26]))
    (root / "short.txt").write_text("\n".join(["Too short."] * 30))
    models = {}
    for name, config in _configs(len(tokenizer)).items():
        model = AutoModelForCausalLM.from_config(config)
        _memorize(model, encoded[:MEMORIZED])
        directory = root / name
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        models[name] = directory
    untrained = root / "untrained"
    AutoModelForCausalLM.from_config(_configs(len(tokenizer))["gpt2"]).save_pretrained(untrained)
    tokenizer.save_pretrained(untrained)
    no_tokenizer = root / "no-tokenizer"
    AutoModelForCausalLM.from_config(_configs(len(tokenizer))["gpt2"]).save_pretrained(no_tokenizer)
    return {"models": models, "paragraphs": paragraphs, "root": root, "untrained": untrained,
            "no_tokenizer": no_tokenizer}


def _run(zoo, tmp_path, model, method="random-neurons", *extra, paragraphs=None):
    return main(["run", "--method", method, "--model", str(model), "--paragraphs", str(paragraphs or zoo["paragraphs"]),
                 *SETS, "--quiet", "--workdir", str(tmp_path / "work"), "--results", str(tmp_path / "results"), *extra])


@pytest.mark.parametrize("architecture", ["gpt2", "gpt-neo", "gpt-neox", "llama"])
def test_every_architecture_runs_a_localizer_on_its_memorized_paragraphs(zoo, tmp_path, architecture):
    assert _run(zoo, tmp_path, zoo["models"][architecture], "random-neurons", "--set", "sweep.ratios=[0.1,0.5]") == 0
    [path] = (tmp_path / "results" / "records" / f"paragraphs-{architecture}").glob("random-neurons__*.json")
    record = json.loads(path.read_text())
    assert record["extras"]["forget_set_size"] == MEMORIZED
    assert record["before"]["em_repeated"] == K                 # the forget set is exactly what it reproduces
    assert record["before"]["em_control"] < K / 2              # the control paragraphs are not memorized
    assert record["checkpoint"] == {"label": architecture, "kind": "pretrained", "view": "model",
                                    "path": str(zoo["models"][architecture]), "train_seconds": 0.0}
    # the reference level is the model's loss on non-memorized paragraphs: dropping half of every
    # layer's neurons must raise the forget loss towards it
    assert record["no_rep"]["repeated_loss"] == record["before"]["control_loss"]
    assert record["points"][-1]["forgetting"] > 0


def test_a_localizer_and_an_editor_on_gpt_neo_give_a_leaderboard_row_per_method(zoo, tmp_path, capsys):
    model = zoo["models"]["gpt-neo"]
    assert _run(zoo, tmp_path, model, "ig", "--set", "sweep.ratios=[0.05,0.2]") == 0
    assert _run(zoo, tmp_path, model, "sparse-ft", "--set", "sweep.steps=[1,5]") == 0
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(tmp_path / "results")]) == 0
    table = capsys.readouterr().out
    assert "### paragraphs (gpt-neo preset" in table
    rows = [line for line in table.splitlines() if line.startswith("| ig ") or line.startswith("| sparse-ft ")]
    assert len(rows) == 2 and all("| gpt-neo " in row for row in rows)
    [ig_row] = [row for row in rows if row.startswith("| ig ")]
    assert " [" in ig_row           # one seed, but per-sequence values: a bootstrap interval over the forget set
    # rerunning reuses both records; the setting was classified once and cached by content
    assert _run(zoo, tmp_path, model, "ig", "--set", "sweep.ratios=[0.05,0.2]") == 0
    assert "reused the existing record" in capsys.readouterr().err
    assert len(list((tmp_path / "work" / "settings").glob("paragraphs-*"))) == 1


@pytest.mark.parametrize("case, problem, fix", [
    ("not-a-model", "is not a Hugging Face model directory", "save_pretrained"),
    ("no-tokenizer", "cannot load the tokenizer", "tokenizer.save_pretrained"),
    ("short", "no paragraph in", "lower --set paragraphs.prefix_len"),
    ("untrained", "reproduces no paragraph", "EM distribution"),
    ("offline-hub-id", "cannot load the tokenizer of 'no-such-org/no-such-model' (hub id)", "download the model"),
    ("training-time-method", "needs its own training-time 'memsinks' checkpoint", "post-hoc methods"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(zoo, tmp_path, capsys, monkeypatch, case, problem, fix):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, paragraphs, method = zoo["models"]["gpt2"], None, "random-neurons"
    if case == "not-a-model":
        model = zoo["root"]
    elif case == "no-tokenizer":
        model = zoo["no_tokenizer"]
    elif case == "short":
        paragraphs = zoo["root"] / "short.txt"
    elif case == "untrained":
        model = zoo["untrained"]
    elif case == "offline-hub-id":
        model = "no-such-org/no-such-model"
    elif case == "training-time-method":
        method = "memsinks"
    capsys.readouterr()
    assert _run(zoo, tmp_path, model, method, paragraphs=paragraphs) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and problem in err and fix in err, err
    assert not (tmp_path / "results" / "records").exists()
    assert not list((tmp_path / "work").glob("settings/*")) if (tmp_path / "work").exists() else True
