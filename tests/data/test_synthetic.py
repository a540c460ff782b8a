"""Tests for the built-in TinyStories-style corpus (memsink_bench.corpus.synthetic).

The corpus is the benchmark's default training data, so these check what matters for that use:
reproducibility per (seed, index) down to the byte, length bounds, diversity (a model must not be
able to just memorise a few texts), surface grammar, and that the story data (stories/*.yaml)
only refers to slots, tables and step kinds that exist.
"""

from __future__ import annotations

import copy
import hashlib
import random
import re
from collections import ChainMap
from string import Formatter

import pytest
import yaml

from memsink_bench.corpus import synthetic
from memsink_bench.corpus.sources import load_documents
from memsink_bench.corpus.synthetic import (STEP_KINDS, STORIES_DIR, distinct_ngram_share, generate_stories,
                                            generate_story, story_data)

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


# --- byte identity ----------------------------------------------------------------------------
# Golden values recorded from the generator as it was when its word tables and templates were
# Python literals in synthetic.py, before they moved to stories/*.yaml. Hard-coding them is the
# point: they pin the corpus byte for byte across that move and any later edit of the grammar or
# the data. Every setting, checkpoint and result is keyed by a hash of its documents, so a change
# here invalidates them all; if a story edit is intended, record new values on purpose.

GOLDEN_SHA256 = {  # sha256 of "\n".join(generate_stories(n, seed))
    (50, 0): "d5b9699c7517e054c9a20e5393c1bf4dda0756d86da85e27cc0227b09c09d5b4",
    (50, 1): "9ef7b934ad139f6a40e9e0855ce7add236f8185ba14d5faee0d2828880dc75a3",
    (50, 7): "5fbfef4406ba9c01c9904be17181f0463ac3b4f0ae8ca2bbfd3868f76d93aeb1",
    (3000, 0): "5774d72cb2fde3733865b273fa8a95867bf9e71f2e209a0bb36de728ebd3770b",
    (3000, 1): "d803af9465e9be01ff29c1e5cdb275ee033da3210ef3888c3b9cc3e9296f5c66",
    (3000, 7): "865455a1a40617f59abe72bec6e0deaa28d529fb9f10f845173e4a8576930174",
}
GOLDEN_DOCUMENTS_SHA256 = {  # sha256 of "\n".join(load_documents("synthetic-stories", n, seed))
    (50, 7): "7029076b48aea47da55cb3927834362287f54fc6bfd961b28a9651bfe4e08373",
    (3000, 0): "8ab12ef4ea818dc74646756423062d0e12a594fe1a4c9c8d8579a40851dc3446",
}
GOLDEN_STORY_X_SHA256 = "a61b739e0367b9ab701f2fe79ef57ba99b4175c92ef54c88a71259cfb753517e"
GOLDEN_FIRST_STORY_SEED_0 = (
    "Once upon a time, in a little town, there lived a friendly owl named Oscar. Oscar had big round "
    "eyes and a big smile. Every day, Oscar liked to play dress-up.\n\n"
    "One sunny day, Oscar and his dad went to visit the lake. \"Yay!\" Oscar shouted. He was too "
    "excited to sit still. They rode on a very big bus. Oscar looked out the window and saw cows, "
    "trees and a long river.\n\n"
    "At the lake, Oscar saw ducks swimming in a row. After that, he saw a green frog on a rock. "
    "\"Wow!\" said Oscar. \"Look at that!\" Oscar got an ice cream cone. But then it fell on the "
    "ground. Splat! Oscar wanted to cry. His dad laughed and shared his ice cream with him.\n\n"
    "At the end of the day, they went back home. Oscar was tired but so happy. He fell asleep on the "
    "way home and dreamed about the ducks swimming. It was the best trip ever."
)


def sha256(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


@pytest.mark.parametrize(("n", "seed"), sorted(GOLDEN_SHA256))
def test_stories_are_byte_identical_to_the_recorded_corpus(n, seed):
    assert sha256(generate_stories(n, seed)) == GOLDEN_SHA256[n, seed]


@pytest.mark.parametrize(("n", "seed"), sorted(GOLDEN_DOCUMENTS_SHA256))
def test_documents_of_the_synthetic_corpus_are_byte_identical(n, seed):
    assert sha256(load_documents("synthetic-stories", n, seed)) == GOLDEN_DOCUMENTS_SHA256[n, seed]


def test_first_story_of_seed_0_and_a_story_from_a_given_rng_are_unchanged():
    assert generate_stories(1, 0) == [GOLDEN_FIRST_STORY_SEED_0]
    assert sha256([generate_story(random.Random("x"))]) == GOLDEN_STORY_X_SHA256


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


# --- the story data ---------------------------------------------------------------------------

STEP_OPTIONS = {"maybe": {"p"}, "end": {"p"}, "sample": {"as"}, "chance": {"then", "else"}}


class DataCheck:
    """Walks the story data in the order generation reads it and records each reference that would
    fail or silently misread: a {slot} that is no story fact, picked-row field or synonym pool, a
    table that does not exist, an unknown step kind, a row field hiding a slot of the same name.

    While walking an arc, `facts` are the slot names defined so far and `rows` maps each field of
    the rows picked so far to its values in all rows of that table.
    """

    def __init__(self, data: dict):
        self.data, self.words, self.problems = data, data["words"], []
        self.synonyms = set(self.words["synonyms"])
        self.context_facts = set(synthetic._context(random.Random(0)))   # what every story starts with
        self.helper_facts = set(data["helpers"]["grown_up"])

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")

    def template(self, text, facts: set, rows: dict, where: str) -> None:
        """Each {slot} is a fact, a synonym pool, or a field of a picked row (whose values are checked)."""
        if not isinstance(text, str):
            return self.problem(where, f"{text!r} is not a template string")
        try:
            names = [name for _, name, _, _ in Formatter().parse(text) if name is not None]
        except ValueError as error:
            return self.problem(where, f"{text!r}: {error}")
        for name in names:
            if name in facts or name in self.synonyms:
                continue
            if name not in rows:
                self.problem(where, f"{{{name}}} is no story fact, field of a picked row or synonym pool")
                continue
            others = {k: v for k, v in rows.items() if k != name}
            for value in rows[name]:
                if isinstance(value, str):
                    self.template(value, facts, others, f"{where} -> {name}")

    def lists(self, name: str, rows: dict, tables: ChainMap, where: str) -> list[list]:
        """The lists a table name can stand for: a list-valued field of the picked rows, or a table."""
        if name in rows:
            return rows[name]
        if name in tables:
            return [tables[name]]
        self.problem(where, f"there is no table '{name}'")
        return []

    def values(self, value, rows: dict) -> list:
        """What a step value can be: the values of a picked-row field if it is just "{field}"."""
        if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in rows:
            return rows[value[1:-1]]
        return [value]

    def steps(self, steps: list, facts: set, rows: dict, tables: ChainMap, where: str) -> tuple[set, dict]:
        """Check steps in order; return the facts and picked-row fields defined after them."""
        facts, rows = set(facts), dict(rows)
        for number, step in enumerate(steps, start=1):
            at = f"{where} step {number}"
            if step == "para":
                continue
            if not isinstance(step, dict) or not step:
                self.problem(at, f"{step!r} is neither 'para' nor a mapping")
                continue
            kind = next(iter(step))
            if kind not in STEP_KINDS:
                self.problem(at, f"unknown step kind '{kind}'")
                continue
            if set(step) - {kind} - STEP_OPTIONS.get(kind, set()):
                self.problem(at, f"unknown options {sorted(set(step) - {kind})} of '{kind}'")
            facts, rows = getattr(self, f"check_{kind}")(step, step[kind], facts, rows, tables, at)
        return facts, rows

    def check_say(self, step, value, facts, rows, tables, at):
        variants = [value] if isinstance(value, str) else value
        if not isinstance(variants, list) or not variants:
            self.problem(at, "a sentence needs a template or a list of them")
        for variant in variants or []:
            self.template(variant, facts, rows, at)
        return facts, rows

    check_maybe = check_end = check_say

    def check_set(self, step, value, facts, rows, tables, at):
        templates = value if isinstance(value, dict) else {field: "{" + field + "}" for field in value}
        for slot, template in templates.items():
            if not isinstance(value, dict) and slot not in rows:
                self.problem(at, f"no picked row has a field '{slot}'")
            self.template(template, facts, rows, at)
            facts = facts | {slot}
        return facts, rows

    def check_pick(self, step, value, facts, rows, tables, at):
        if isinstance(value, dict):   # one entry of a list of strings per slot
            for slot, name in value.items():
                if any(not table or not all(isinstance(e, str) for e in table)
                       for table in self.lists(name, rows, tables, at)):
                    self.problem(at, f"'{name}' is not a list of strings")
            return facts | set(value), rows
        rows = dict(rows)
        for table in self.lists(value, rows, tables, at):
            shapes = {frozenset(row) if isinstance(row, dict) else None for row in table}
            if len(shapes) != 1 or None in shapes:
                self.problem(at, f"'{value}' is not a table of rows that all have the same fields")
                continue
            for field in table[0]:
                if field in self.context_facts | self.synonyms | self.helper_facts:
                    self.problem(at, f"field '{field}' of '{value}' is hidden by the slot of that name")
                rows[field] = [row[field] for row in table]
        return facts, rows

    def check_sample(self, step, value, facts, rows, tables, at):
        for table in self.lists(value, rows, tables, at):
            if len(table) < len(step.get("as", [])):
                self.problem(at, f"'{value}' has fewer entries than {step['as']}")
        return facts | set(step.get("as", [])), rows

    def check_place(self, step, value, facts, rows, tables, at):
        for place in self.values(value, rows):
            if place not in self.words["places"]:
                self.problem(at, f"'{place}' is not a place of words.yaml")
        return facts, rows

    def check_helper(self, step, value, facts, rows, tables, at):
        for p in self.values(value, rows):
            if not isinstance(p, (int, float)) or not 0 <= p <= 1:
                self.problem(at, f"helper probability {p!r} is not a number from 0 to 1")
        return facts | self.helper_facts, rows

    def check_short_name(self, step, value, facts, rows, tables, at):
        for template in value.values():
            self.template(template, facts, rows, at)
        return facts | set(value), rows

    def check_chance(self, step, value, facts, rows, tables, at):
        return self.branches([step.get("then", []), step.get("else", [])], facts, rows, tables, at)

    def check_one_of(self, step, value, facts, rows, tables, at):
        return self.branches(list(value.values()), facts, rows, tables, at)

    def branches(self, branches, facts, rows, tables, at):
        """After a branch point, a template may use only what every branch defined."""
        ends = [self.steps(branch, facts, rows, tables, f"{at} branch {number}")
                for number, branch in enumerate(branches, start=1)]
        common_rows = {k: v for k, v in ends[0][1].items() if all(k in r for _, r in ends)}
        return set.intersection(*(f for f, _ in ends)), common_rows


def story_data_problems(data: dict) -> list[str]:
    """Every reference in the story data that generation could not resolve (empty: all is well)."""
    check = DataCheck(data)
    words, base = data["words"], check.context_facts
    for name, values in words["synonyms"].items():
        for value in values:
            check.template(value, base, {}, f"words.yaml synonyms.{name}")
    looks = words["kid_looks"] + [look for kind_looks in words["animals"].values() for look in kind_looks]
    for look in looks:
        check.template(look, base, {}, "words.yaml looks")
    for key in ("fillers", "friend_intros", "animal_friend_intros"):
        for template in data[key]:
            check.template(template, base, {}, f"story.yaml {key}")
    for who, templates in data["helpers"].items():
        if set(templates) != check.helper_facts:
            check.problem(f"story.yaml helpers.{who}", "does not set the same slots as helpers.grown_up")
        for template in templates.values():
            check.template(template, base, {}, f"story.yaml helpers.{who}")
    facts, _ = check.steps(data["opening"], base, {}, ChainMap(words), "story.yaml opening")
    for name, arc in data["arcs"].items():
        check.steps(arc["steps"], facts, {}, ChainMap(arc.get("tables", {}), words), f"arcs/{name}.yaml")
    return check.problems


def test_the_story_data_refers_only_to_slots_tables_and_steps_that_exist():
    assert story_data_problems(story_data()) == []


def _append_step(arc: str, step: dict):
    return lambda data: data["arcs"][arc]["steps"].append(step)


def _edit_rows(arc: str, table: str, edit, first_only: bool = True):
    def apply(data):
        rows = data["arcs"][arc]["tables"][table]
        for row in rows[:1] if first_only else rows:
            edit(row)
    return apply


@pytest.mark.parametrize(("break_data", "complaint"), [
    pytest.param(_append_step("lost", {"say": "{no_such_table} was there."}), "{no_such_table}", id="slot"),
    pytest.param(_append_step("race", {"pick": {"prize": "prizes"}}), "no table 'prizes'", id="table"),
    pytest.param(_append_step("share", {"sya": "they played."}), "unknown step kind 'sya'", id="step-kind"),
    pytest.param(_append_step("plant", {"set": ["becoming"]}), "no picked row has a field 'becoming'",
                 id="row-field"),
    pytest.param(lambda data: data["words"]["synonyms"]["happy"].append("glad about {it all}"), "{it all}",
                 id="slot-in-synonym"),
    pytest.param(_edit_rows("fear", "fears", lambda row: row.update(did="{nobody} slid.")), "{nobody}",
                 id="slot-in-row"),
    pytest.param(_edit_rows("fear", "fears", lambda row: row.pop("attempt")),
                 "rows that all have the same fields", id="missing-field"),
    pytest.param(_edit_rows("fear", "fears", lambda row: row.update(fear_place="moon")),
                 "'moon' is not a place", id="place"),
    pytest.param(_edit_rows("animal", "creatures", lambda row: row.update(name="Rex"), first_only=False),
                 "field 'name' of 'creatures' is hidden by the slot", id="hidden-field"),
])
def test_the_data_check_finds_a_broken_reference(break_data, complaint):
    """The check above must not pass vacuously: each edit would make generation fail or misread a slot."""
    data = copy.deepcopy(story_data())
    break_data(data)
    problems = story_data_problems(data)
    assert any(complaint in problem for problem in problems), problems


def test_every_arc_file_is_listed_once_and_is_loaded_once():
    listed = yaml.safe_load((STORIES_DIR / "story.yaml").read_text(encoding="utf-8"))["arcs"]
    assert sorted(listed) == sorted(p.stem for p in (STORIES_DIR / "arcs").glob("*.yaml"))
    assert len(set(listed)) == len(listed) == 12
    assert story_data() is story_data()


# --- distinct_ngram_share ---------------------------------------------------------------------

def test_distinct_ngram_share_counts_within_texts():
    assert distinct_ngram_share(["a b c", "a b c"], 2) == 0.5
    assert distinct_ngram_share(["a b", "b c"], 2) == 1.0     # no n-gram across texts
    assert distinct_ngram_share(["a a a a"], 1) == 0.25
    assert distinct_ngram_share(["short"], 8) == 0.0
    assert distinct_ngram_share([], 8) == 0.0
