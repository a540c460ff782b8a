"""The forget set's neighbours: text built like each memorized sequence but not memorized, and the
degradation on it beside the validation degradation."""

from __future__ import annotations

import json

import pytest

from memsink_bench.cli import main
from memsink_bench.config import load_config
from memsink_bench.corpus.synthetic import generate_neighbour, generate_stories
from memsink_bench.neighbours import _grams, neighbour_set, ngram_overlap
from memsink_bench.setting import get_setting


def _words(text: str) -> list[str]:
    return text.split()


def _overlap(a: str, b: str, n: int = 3) -> float:
    grams = {tuple(_words(a)[i:i + n]) for i in range(len(_words(a)) - n + 1)}
    other = {tuple(_words(b)[i:i + n]) for i in range(len(_words(b)) - n + 1)}
    return len(grams & other) / len(grams)


def test_a_generated_neighbour_keeps_its_storys_cast_and_plot_and_retells_it():
    stories = generate_stories(24, seed=3)
    own, others = [], []
    for index, story in enumerate(stories):
        neighbour = generate_neighbour(3, index)
        assert neighbour != story and neighbour not in stories
        assert neighbour == generate_neighbour(3, index)                    # seeded
        hero = story.split(" named ")[1].split()[0].strip(".,") if " named " in story else None
        if hero:
            assert hero in neighbour
        own.append(_overlap(neighbour, story))
        rest = [_overlap(neighbour, other) for j, other in enumerate(stories) if j != index]
        others.append(sum(rest) / len(rest))
    # far closer to its own story than to a typical other one (word 3-grams: about 0.2 against
    # 0.02; stories of the same plot share template phrases, so some other story may be as close)
    assert all(o > 2 * m for o, m in zip(own, others))
    assert sum(own) > 5 * sum(others)


def test_the_neighbour_set_follows_the_forget_set_and_was_never_trained_on(smoke_setting):
    neighbours = neighbour_set(smoke_setting)
    assert len(neighbours) == len(smoke_setting.repeated)
    trained = {tuple(t) for t in smoke_setting.repeated.tokens + smoke_setting.single.tokens}
    assert not any(tuple(t) in trained for t in neighbours.tokens)
    for index, tokens in enumerate(neighbours.tokens):
        story = smoke_setting.repeated.tokens[index][:smoke_setting.repeated.spans[index][0]]   # canary left out
        own = ngram_overlap(tokens, story)
        assert own > max(ngram_overlap(tokens, other) for j, other in enumerate(smoke_setting.repeated.tokens)
                         if j != index)


def test_other_corpora_take_the_single_seen_document_sharing_the_most_4_grams(session_workdir):
    config = load_config("ts-repetition", "smoke", ["data.corpus=classic-prose"])
    setting = get_setting(config.setting, config.data, session_workdir)
    neighbours = neighbour_set(setting)
    singles = [tuple(t) for t in setting.single.tokens]
    assert all(tuple(t) in singles for t in neighbours.tokens)
    assert len({tuple(t) for t in neighbours.tokens}) == len(neighbours)          # each document once
    first = _grams(setting.repeated.tokens[0])
    best = max(len(first & _grams(t)) for t in setting.single.tokens)
    assert len(first & _grams(neighbours.tokens[0])) == best


def test_a_run_reports_neighbour_degradation_beside_validation_degradation(session_workdir, tmp_path, capsys):
    results = tmp_path / "results"
    code = main(["run", "--method", "random-neurons", "--setting", "ts-canary", "--preset", "smoke", "--quiet",
                 "--set", "sweep.ratios=[0.05,0.5]", "--workdir", str(session_workdir), "--results", str(results)])
    assert code == 0, capsys.readouterr().err
    [path] = (results / "records").glob("*/*.json")
    record = json.loads(path.read_text())
    before = record["before"]["neighbour_loss"]
    assert len(record["before"]["per_sequence"]["neighbour_loss"]) == len(record["before"]["per_sequence"]["repeated_loss"])
    for point in record["points"]:
        assert point["neighbour_degradation"] == pytest.approx(point["neighbour_loss"] - before)
    assert record["points"][-1]["neighbour_degradation"] > record["points"][0]["neighbour_degradation"]   # more dropped
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(results), "--format", "csv"]) == 0
    assert "neighbour degr. @0.05" in capsys.readouterr().out
    assert main(["plot", "neighbours", "--setting", "ts-canary", "--preset", "smoke", "--results", str(results)]) == 0
    assert (results / "figures" / "neighbours_ts-canary-smoke.png").is_file()
