"""Seeded TinyStories-style story generator: the benchmark's built-in default corpus.

Why it exists: the benchmark must run offline and reproducibly, so it ships its own corpus in
the style of TinyStories (Eldan & Li 2023): simple words a small child knows, named children and
animals, everyday places and toys, feelings, short dialogue, a problem that gets resolved and
often a moral. Twelve plot structures, many template variants per step and combinatorial slot
filling keep stories nearly all distinct, so a model cannot simply memorise a handful of texts.

The words and sentences are data in `stories/`: words.yaml (names, kinds, looks, toys, places,
synonym pools), story.yaml (the opening, the arcs in drawing order, fillers, the helpers) and
arcs/<arc>.yaml (one plot structure each: its tables and its steps). This module is the grammar.

A template is a format string in lower case; rendering fills its slots, writes "an" for "a"
before a vowel and capitalizes sentence starts. A slot {x} is, in this order of lookup:
  * a story fact: the hero (name, kind, adj, he, him, his, himself, look), the friend (the same
    with an "f" in front, and fintro, the friend's first mention), the grown-up (parent,
    parent_call, phe, phim, phis), the place (place, in_place, near_place, feature1, feature2),
    the hero's toy (toy, color, obj, cobj), the helper once chosen (helper, helper_intro,
    helper_call, hhe, hhim, hhis), and the slots that steps set, pick, sample or short_name;
  * a field of a table row the arc picked, rendered afresh at each use;
  * a synonym pool of words.yaml, re-drawn at each use.

Steps run in order; a step is "para" (a new paragraph) or a mapping whose first key is its kind:
  say: [variants]                one sentence, one variant drawn (a string is one variant)
  maybe: [variants], p: 0.6      a colour sentence with probability p, dropped first if too long
  end: [variants], p: 0.75       the closing moral, with probability p
  set: {slot: template} | [fields]   render now and keep as facts | the same for fields of the
                                 picked row, so that their synonyms are drawn once, here
  pick: table | {slot: table}    one row of a table (its fields become slots) | one list entry
  sample: table, as: [slots]     distinct entries of a list, one per slot
  place: template                move the story to that place of words.yaml
  helper: p                      who helps: the grown-up with probability p, else the friend
  short_name: {slot: template}   the noun without its article and "with ..."/"in ..." tail
  chance: p, then: [steps], else: [steps]    |    one_of: {name: [steps], ...}
Tables are looked up in the picked rows, then the arc's `tables`, then words.yaml. Every draw
comes from the story's own random.Random in the order of the steps and entries, so reordering
either changes the corpus; story i of generate_stories(n, seed) depends only on (seed, i).
"""

from __future__ import annotations

import functools
import random
import re
from collections import ChainMap
from pathlib import Path

import yaml

MIN_TOKENS, MAX_TOKENS = 80, 250
MAYBE_P, END_P = 0.6, 0.75    # default probabilities of a colour sentence and of a closing moral
STORIES_DIR = Path(__file__).with_name("stories")


@functools.cache
def story_data() -> dict:
    """story.yaml's entries, plus `words` (words.yaml) and `arcs` (arc name -> its file, in order)."""
    def read(path: Path) -> dict:
        return yaml.safe_load(path.read_text(encoding="utf-8"))

    data = read(STORIES_DIR / "story.yaml")
    data["words"] = read(STORIES_DIR / "words.yaml")
    data["arcs"] = {name: read(STORIES_DIR / "arcs" / f"{name}.yaml") for name in data["arcs"]}
    return data


class _Slots(dict):
    """Template context: story facts (the dict), then picked-row fields, then synonym pools."""

    def __init__(self, rng: random.Random, facts: dict[str, str] | None = None):
        super().__init__(facts or {})
        self.rng = rng
        self.row: dict = {}
        self.synonyms = story_data()["words"]["synonyms"]

    def __missing__(self, key: str) -> str:
        template = self.row[key] if key in self.row else self.rng.choice(self.synonyms[key])
        return str(template).format_map(self)


_ARTICLE = re.compile(r"\b([Aa])n? (?=([A-Za-z]))")
_SENTENCE_START = re.compile(r'(^[^A-Za-z]*|[.!?] +|\." +| ")([a-z])')


def _fix_articles(text: str) -> str:
    """Templates always write "a"; choose a/an from the next word so slot filling stays simple."""
    return _ARTICLE.sub(lambda m: m.group(1) + ("n " if m.group(2).lower() in "aeiou" else " "), text)


def _capitalize(text: str) -> str:
    """Upper-case sentence starts: the first letter, after ". ", after '." ' and after an opening
    quote (' "'), but not dialogue tags after !" ?" ," ('"Look!" she said.' keeps "she")."""
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


class _Story:
    """A story being written: its slots, its paragraphs of (sentence, optional: may be dropped to
    fit the length) and one method per step kind (STEP_KINDS), which gets the step's mapping."""

    def __init__(self, rng: random.Random, ctx: _Slots):
        self.rng, self.ctx = rng, ctx
        self.tables = ChainMap(ctx.row, story_data()["words"])   # an arc puts its own in between
        self.paras: list[list[tuple[str, bool]]] = [[]]
        self.intro_end = 0   # where hero/setting fillers go: right after the opening

    def render(self, template: str) -> str:
        return _capitalize(_fix_articles(template.format_map(self.ctx)))

    def run(self, steps: list) -> None:
        """Carry out steps in order: "para", or a mapping whose first key is one of STEP_KINDS."""
        for step in steps:
            kind = step if step == "para" else next(iter(step))
            if kind not in STEP_KINDS:
                raise ValueError(f"unknown story step '{kind}'; the kinds are {', '.join(STEP_KINDS)}")
            getattr(self, kind)(step)

    def _add(self, variants: str | list[str], optional: bool = False) -> None:
        variants = [variants] if isinstance(variants, str) else variants
        self.paras[-1].append((self.render(self.rng.choice(variants)), optional))

    def _fix_facts(self, templates: dict[str, str]) -> None:
        """Fix story facts now, in order (slots inside them are drawn once)."""
        for key, template in templates.items():
            self.ctx[key] = template.format_map(self.ctx)

    def para(self, step: str = "para") -> None:
        """Start a new paragraph (TinyStories texts have several short ones)."""
        if self.paras[-1]:
            self.paras.append([])

    def say(self, step: dict) -> None:
        self._add(step["say"])

    def maybe(self, step: dict) -> None:
        """A colour sentence: present with probability p and removable if the story runs long."""
        if self.rng.random() < step.get("p", MAYBE_P):
            self._add(step["maybe"], optional=True)

    def end(self, step: dict) -> None:
        """The closing moral; TinyStories often, but not always, ends with one."""
        if self.rng.random() < step.get("p", END_P):
            self._add(step["end"])

    def set(self, step: dict) -> None:
        what = step["set"]
        self._fix_facts(what if isinstance(what, dict) else {field: self.ctx.row[field] for field in what})

    def pick(self, step: dict) -> None:
        if isinstance(step["pick"], str):
            self.ctx.row.update(self.rng.choice(self.tables[step["pick"]]))
        else:
            for slot, table in step["pick"].items():
                self.ctx[slot] = self.rng.choice(self.tables[table])

    def sample(self, step: dict) -> None:
        self.ctx.update(zip(step["as"], self.rng.sample(self.tables[step["sample"]], len(step["as"]))))

    def place(self, step: dict) -> None:
        _set_place(self.ctx, self.rng, step["place"].format_map(self.ctx))

    def helper(self, step: dict) -> None:
        """p is a number or a template such as "{p_parent}" (a field of the picked row)."""
        grown_up = self.rng.random() < float(str(step["helper"]).format_map(self.ctx))
        self._fix_facts(story_data()["helpers"]["grown_up" if grown_up else "friend"])

    def short_name(self, step: dict) -> None:
        """'a lion with a fluffy mane' -> 'lion', 'funny monkeys swinging in the trees' -> 'funny
        monkeys swinging': how a story names a sight again ("dreamed about the lion")."""
        for slot, template in step["short_name"].items():
            phrase = template.format_map(self.ctx)
            self.ctx[slot] = re.sub(r"^an? ", "", phrase.split(" with ")[0].split(" in ")[0])

    def chance(self, step: dict) -> None:
        self.run(step["then"] if self.rng.random() < step["chance"] else step["else"])

    def one_of(self, step: dict) -> None:
        self.run(self.rng.choice(list(step["one_of"].values())))

    def n_tokens(self) -> int:
        return sum(len(text.split()) for para in self.paras for text, _ in para)

    def text(self) -> str:
        return "\n\n".join(" ".join(t for t, _ in para) for para in self.paras if para)


STEP_KINDS = ("para", "say", "maybe", "end", "set", "pick", "sample", "place", "helper", "short_name",
              "chance", "one_of")


# --- characters and setting -------------------------------------------------------------------

def _character(rng: random.Random, avoid: set[str]) -> dict[str, str]:
    """A child or an animal with a name, a look and pronouns that match (he, him, his, himself)."""
    words = story_data()["words"]
    female = rng.random() < 0.5
    people_names = words["girl_names" if female else "boy_names"]
    if rng.random() < 0.55:
        kind, pool, looks = "girl" if female else "boy", people_names, words["kid_looks"]
    else:
        kind = rng.choice(list(words["animals"]))
        pool = words["pet_names"] if rng.random() < 0.6 else people_names
        looks = words["animals"][kind]
    name = rng.choice([n for n in pool if n not in avoid])
    he, him, his, himself = ("she", "her", "her", "herself") if female else ("he", "him", "his", "himself")
    return {"name": name, "kind": kind, "adj": rng.choice(words["adjectives"]), "he": he, "him": him,
            "his": his, "himself": himself, "look": rng.choice(looks)}


def _context(rng: random.Random) -> _Slots:
    """Draw the hero, a friend, a grown-up, a place and a toy; arcs may override any of them."""
    words = story_data()["words"]
    hero = _character(rng, set())
    friend = _character(rng, {hero["name"]})
    ctx = _Slots(rng, hero)
    ctx.update({"f" + k: v for k, v in friend.items()})
    ctx.update(rng.choice(words["parents"]))
    animal = ctx["fkind"] not in ("girl", "boy")
    intros = story_data()["friend_intros"] + (story_data()["animal_friend_intros"] if animal else [])
    ctx["fintro"] = rng.choice(intros).format_map(ctx)   # "her friend Tom", "Pip the bunny"
    _set_place(ctx, rng, rng.choice(list(words["places"])))
    toy, color = rng.choice(words["toys"]), rng.choice(words["colors"])
    size = rng.choice(words["sizes"]) + " " if rng.random() < 0.5 else ""
    ctx.update(toy=toy, color=color, obj=f"{size}{color} {toy}", cobj=f"{color} {toy}")
    ctx["look"] = ctx["look"].format_map(ctx)
    ctx["flook"] = ctx["flook"].format_map(ctx)
    return ctx


def _set_place(ctx: _Slots, rng: random.Random, place: str) -> None:
    """Set the place with two of its features, so descriptions match where the story happens."""
    entry = story_data()["words"]["places"][place]
    f1, f2 = rng.sample(entry["features"], 2)
    ctx.update(place=place, in_place=entry["in_place"], near_place=entry.get("near_place", place),
               feature1=f1, feature2=f2)


# --- public API -------------------------------------------------------------------------------

def _fit_length(s: _Story) -> None:
    """Drop optional sentences while too long; add hero/setting sentences while too short."""
    total = s.n_tokens()
    while total > MAX_TOKENS:
        optional = [(p, i) for p, para in enumerate(s.paras) for i, (_, o) in enumerate(para) if o]
        if not optional:
            return
        p, i = s.rng.choice(optional)
        total -= len(s.paras[p].pop(i)[0].split())
    if total >= MIN_TOKENS:
        return
    fillers = list(story_data()["fillers"])
    s.rng.shuffle(fillers)
    present = {t for para in s.paras for t, _ in para}
    while total < MIN_TOKENS and fillers:
        text = s.render(fillers.pop())
        if text not in present:
            s.paras[0].insert(s.intro_end, (text, True))
            total += len(text.split())


def generate_story(rng: random.Random) -> str:
    """One story drawn from `rng`; retries (deterministically) in the rare case it won't fit."""
    return _generate(rng)[0]


def _generate(rng: random.Random, facts: dict | None = None, arc: dict | None = None) -> tuple[str, dict, dict]:
    """(story, its facts, its arc): the facts (hero, friend, grown-up, place, toy) and the plot are
    drawn from `rng` unless given, and every template variant, table row and synonym is."""
    data = story_data()
    arcs = list(data["arcs"].values())
    for _ in range(50):
        ctx = _context(rng) if facts is None else _Slots(rng, dict(facts))
        drawn = dict(ctx)
        s = _Story(rng, ctx)
        s.run(data["opening"])
        s.intro_end = len(s.paras[0])
        chosen = rng.choice(arcs) if arc is None else arc
        s.tables = ChainMap(s.ctx.row, chosen.get("tables", {}), data["words"])
        s.run(chosen["steps"])
        _fit_length(s)
        if MIN_TOKENS <= s.n_tokens() <= MAX_TOKENS:
            return s.text(), drawn, chosen
    raise RuntimeError("could not generate a story of the required length")


def generate_neighbour(seed: int, index: int, k: int = 0) -> str:
    """A neighbour of story `index` of generate_stories(n, seed): the same hero, friend, grown-up,
    place and toy and the same plot, told with freshly drawn template variants, table rows and
    synonyms (its own random.Random, seeded f"{seed}:{index}:neighbour:{k}"). It shares about 10
    times more word 3-grams with its story than a typical other story does (about 0.2 against 0.02),
    though another story of the same plot can share as many template phrases: a model that
    memorized the story but generalizes should predict it like any other story."""
    _, facts, arc = _generate(random.Random(f"{seed}:{index}"))
    return _generate(random.Random(f"{seed}:{index}:neighbour:{k}"), facts, arc)[0]


def generate_stories(n: int, seed: int) -> list[str]:
    """n stories, deterministic per seed (same seed -> identical list; story i must depend only
    on (seed, i), so generate_stories(10, s)[:5] == generate_stories(5, s)).

    Each story gets its own random.Random seeded with the string f"{seed}:{i}"; string seeds are
    hashed with SHA-512 by `random`, so this is stable across runs and Python processes.
    """
    return [generate_story(random.Random(f"{seed}:{i}")) for i in range(n)]


def distinct_ngram_share(texts: list[str], n: int = 8) -> float:
    """Share of whitespace-token n-grams (over all texts) that are distinct: len(set)/total.

    n-grams never cross text boundaries. A low value means the corpus is repetitive (a model
    could memorise it); returns 0.0 if no text has n tokens.
    """
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = text.split()
        grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0
