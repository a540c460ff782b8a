"""Tests for the built-in TinyStories-style corpus (memsink_bench.corpus.synthetic).

The corpus is the benchmark's default training data, so these check what matters for that use:
reproducibility per (seed, index), length bounds, diversity (a model must not be able to just
memorise a few texts) and surface grammar.
"""

from __future__ import annotations

import random
import re

import pytest

from memsink_bench.corpus.synthetic import distinct_ngram_share, generate_stories, generate_story

N = 2000
# Measured on seeds 0-4 with 2,000 stories: 0.687-0.698 (20,000 stories, seed 0: 0.496).
MIN_DISTINCT_8GRAM_SHARE_2000 = 0.65
# Words that may follow a closing quote after "!", "?" or "," without a capital: dialogue tags.
TAG_STARTS = {"said", "asked", "shouted", "cried", "called", "whispered", "he", "she", "they",
              "his", "her"}


@pytest.fixture(scope="module")
def stories() -> list[str]:
    return generate_stories(N, 0)


# --- determinism ------------------------------------------------------------------------------

def test_same_seed_gives_identical_stories():
    assert generate_stories(50, 7) == generate_stories(50, 7)


def test_different_seeds_give_different_stories():
    a, b = generate_stories(50, 1), generate_stories(50, 2)
    assert a != b
    assert len(set(a) & set(b)) <= 1


def test_story_i_depends_only_on_seed_and_index():
    assert generate_stories(10, 3)[:5] == generate_stories(5, 3)
    assert generate_stories(0, 3) == []


def test_generate_story_is_deterministic_for_a_given_rng():
    assert generate_story(random.Random("x")) == generate_story(random.Random("x"))


# --- length and diversity ---------------------------------------------------------------------

def test_length_is_80_to_250_whitespace_tokens(stories):
    lengths = [len(s.split()) for s in stories]
    assert min(lengths) >= 80
    assert max(lengths) <= 250


def test_almost_all_stories_are_distinct(stories):
    assert len(set(stories)) >= 0.99 * len(stories)


def test_distinct_8gram_share_is_high(stories):
    assert distinct_ngram_share(stories, 8) > MIN_DISTINCT_8GRAM_SHARE_2000


def test_many_names_are_used(stories):
    names = set(re.findall(r"\b(?:named|called) ([A-Z][a-z]+)", " ".join(stories)))
    assert len(names) >= 50


def test_topics_vary(stories):
    """Each plot family shows up in a fair share of stories (12 arcs -> roughly 8% each)."""
    markers = {
        "lost": r"\b(?:lost|find)\b", "share": r"\bshar", "fear": r"\b(?:scared|afraid)\b",
        "trip": r"\btrip\b|\bgoing to the\b|\bwent to visit\b", "sorry": r"\bsorry\b",
        "weather": r"\brain|\bsnow|\bwind", "new friend": r"\blonely\b",
        "plant": r"\bseed\b", "race": r"\brace\b", "make": r"\b(?:make|build|bake)\b",
    }
    for topic, pattern in markers.items():
        hits = sum(bool(re.search(pattern, s, re.IGNORECASE)) for s in stories)
        assert hits >= 0.03 * len(stories), topic
    places = {"park", "garden", "forest", "beach", "kitchen", "farm", "pond", "meadow"}
    assert all(any(f" {p}" in s for s in stories) for p in places)


# --- grammar ----------------------------------------------------------------------------------

def test_articles_agree_with_next_word(stories):
    for s in stories:
        assert not re.search(r"\ba [aeiou]", s, re.IGNORECASE), s
        assert not re.search(r"\ban [b-df-hj-np-tv-z]", s, re.IGNORECASE), s


def test_sentences_start_with_capitals(stories):
    for s in stories:
        assert s[0].isupper() or (s[0] == '"' and s[1].isupper()), s[:40]
        for m in re.finditer(r'[.!?]\s+"?(\w)', s):          # after a sentence end
            assert m.group(1).isupper(), s[max(0, m.start() - 40):m.end() + 10]
        for m in re.finditer(r'\."\s+(\w)', s):              # after a quoted statement
            assert m.group(1).isupper(), s[max(0, m.start() - 40):m.end() + 10]
        for m in re.finditer(r'[!?,]"\s+(\w+)', s):          # tag or new sentence
            word = m.group(1)
            assert word[0].isupper() or word in TAG_STARTS, s[max(0, m.start() - 40):m.end() + 10]
        for quoted in s.split('"')[1::2]:                    # what is said starts a sentence
            assert quoted[0].isupper(), quoted


def test_quotes_are_balanced_per_paragraph(stories):
    for s in stories:
        for para in s.split("\n\n"):
            assert para.count('"') % 2 == 0, para


def test_no_template_leftovers_or_spacing_errors(stories):
    for s in stories:
        assert not re.search(r"[{}]|  | [,.!?]|\.\.|,,|\bi\b|\b(\w+) \1\b", s), s


def test_hero_pronouns_match_gender(stories):
    """In the opening paragraph (which is about the hero only) pronouns match 'girl'/'boy'."""
    checked = 0
    for s in stories:
        first = s.split("\n\n")[0]
        m = re.match(r"(?:Once upon a time, there was|There was once) an? \w+ (girl|boy) named", first)
        if not m:
            continue
        wrong = r"\b(he|him|his|himself)\b" if m.group(1) == "girl" else r"\b(she|her|herself)\b"
        assert not re.search(wrong, first, re.IGNORECASE), first
        checked += 1
    assert checked >= 100


# --- distinct_ngram_share ---------------------------------------------------------------------

def test_distinct_ngram_share_counts_within_texts():
    assert distinct_ngram_share(["a b c", "a b c"], 2) == 0.5
    assert distinct_ngram_share(["a b", "b c"], 2) == 1.0     # no n-gram across texts
    assert distinct_ngram_share(["a a a a"], 1) == 0.25
    assert distinct_ngram_share(["short"], 8) == 0.0
    assert distinct_ngram_share([], 8) == 0.0
