"""The analyses on your own model and text, offline: a tiny random GPT-Neo is built here,
fine-tuned for a few seconds until it memorizes four paragraphs, saved with `save_pretrained`, and
analyzed through the CLI path a user takes with a hub model (`memsink-bench analyze ANALYSIS
--model DIR --paragraphs FILE`): memorized = its forget set, non-memorized = the control set."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from memsink_bench.cli import main
from memsink_bench.corpus.synthetic import generate_stories
from memsink_bench.setting import train_tokenizer

from tests.pretrained.test_pretrained import MEMORIZED, SETS, K, P, _configs, _memorize

N_CONTROL = N_RETAIN = N_VALIDATION = 6          # as SETS sets them


@pytest.fixture(scope="module")
def neo(tmp_path_factory):
    """A GPT-Neo directory that reproduces the first 4 of 26 paragraphs, the paragraphs file, a
    corpus file of 14 other stories, and a workdir shared by the tests (the setting is cached)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("neo")
    stories = [" ".join(s.split()) for s in generate_stories(40, 11)]
    tokenizer = train_tokenizer(stories, 400)
    encoded = [tokenizer.encode(s, add_special_tokens=False)[:P + K] for s in stories]
    paragraphs = root / "paragraphs.jsonl"
    paragraphs.write_text("\n".join(json.dumps({"text": s}) for s in stories[:26]))
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(stories[26:]) + "\n")
    model = AutoModelForCausalLM.from_config(_configs(len(tokenizer))["gpt-neo"])
    _memorize(model, encoded[:MEMORIZED])
    directory = root / "gpt-neo"
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    corpus_tokens = sum(len(tokenizer.encode(s, add_special_tokens=False)) for s in stories[26:])
    return {"model": directory, "paragraphs": paragraphs, "corpus": corpus, "corpus_tokens": corpus_tokens,
            "workdir": root / "work"}


def _analyze(neo, results, analysis, *extra):
    return main(["analyze", analysis, "--model", str(neo["model"]), "--paragraphs", str(neo["paragraphs"]), *SETS,
                 "--quiet", "--workdir", str(neo["workdir"]), "--results", str(results), *extra])


def test_rare_tokens_on_a_pretrained_gpt_neo_compares_its_forget_set_with_the_control_set(neo, tmp_path, capsys):
    results = tmp_path / "results"
    assert _analyze(neo, results, "rare-tokens") == 0
    assert "### Rare-token attention heads: paragraphs (gpt-neo preset), checkpoint pretrained" in capsys.readouterr().out
    stem = results / "analyses" / "paragraphs-gpt-neo" / "pretrained" / "rare-tokens"
    assert all(stem.with_suffix(suffix).is_file() for suffix in (".json", ".csv", ".md", ".pdf", ".png"))
    payload = json.loads(stem.with_suffix(".json").read_text())
    summary = payload["summary"]
    assert (payload["setting"], payload["preset"]) == ("paragraphs", "gpt-neo")
    assert payload["checkpoint"] == {"label": "pretrained", "kind": "pretrained", "view": "model",
                                     "path": str(neo["model"])}
    assert summary["groups"]["memorized"]["n_sequences"] == MEMORIZED
    assert summary["groups"]["non-memorized"]["n_sequences"] == N_CONTROL
    # the memorized group is exactly what the model reproduces, the control set is not
    assert summary["ablation"]["memorized"]["em_before"] == K
    assert summary["ablation"]["non-memorized"]["em_before"] < K / 2
    assert len(payload["table"]) == 2 * 2 * 2                            # groups x layers x heads
    # no corpus given: every paragraph of the setting counted once
    assert summary["frequencies"] == {"source": "setting sequences",
                                      "tokens": (MEMORIZED + N_CONTROL + N_RETAIN + N_VALIDATION) * (P + K)}

    assert _analyze(neo, results, "rare-tokens", "--frequencies", str(neo["corpus"])) == 0
    payload = json.loads(stem.with_suffix(".json").read_text())
    assert payload["parameters"]["frequencies"] == str(neo["corpus"])
    assert payload["summary"]["frequencies"] == {
        "source": "file", "path": str(neo["corpus"]), "sha256": hashlib.sha256(neo["corpus"].read_bytes()).hexdigest(),
        "documents": 14, "tokens": neo["corpus_tokens"]}


@pytest.mark.parametrize("extra, problem", [
    (["--setting", "ts-canary"], "give either --setting, or --model with --paragraphs"),
    (["--checkpoint", "standard"], "--checkpoint does not apply to --model"),
    (["--frequencies", "no-such-corpus.txt"], "--frequencies no-such-corpus.txt is not an existing"),
])
def test_bad_analyze_input_on_a_pretrained_model_is_one_line_exit_2(neo, tmp_path, capsys, extra, problem):
    capsys.readouterr()
    assert _analyze(neo, tmp_path / "results", "rare-tokens", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and problem in err, err
    assert not (tmp_path / "results" / "analyses").exists()


def test_frequencies_is_refused_by_the_analyses_that_do_not_count_them(neo, tmp_path, capsys):
    capsys.readouterr()
    assert _analyze(neo, tmp_path / "results", "gradient-signature", "--frequencies", str(neo["corpus"])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--frequencies does not apply to the gradient-signature analysis" in err
