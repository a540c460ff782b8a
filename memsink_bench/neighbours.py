"""Neighbours of the forget set: text that resembles each memorized sequence but was not trained on
repeatedly, so that removing the memorized text can be checked for collateral damage where it is
most likely (typical memorization is dangerous because the memorized text resembles the rest).

* **synthetic stories**: for each repeated story the generator tells a new one with the same hero,
  friend, grown-up, place, toy and plot (`corpus.synthetic.generate_neighbour`). No model trained
  on it: a model that memorized the story but generalizes predicts it like any other story.
* **any other corpus**: the single-seen training document that shares the most token 4-grams with
  the forget sequence (each document at most once), seen once per epoch like every single story.

The degradation on the neighbours (their loss after removal - before) is reported beside the
validation degradation. Canaries are not part of a neighbour: it is the story alone.
"""

from __future__ import annotations

from .setting import SequenceSet, Setting

NGRAM = 4


def neighbour_set(setting: Setting) -> SequenceSet | None:
    """One neighbour per repeated sequence, in the same order (cached on the setting); None for a
    setting without a data config (a pretrained model's paragraphs)."""
    cached = getattr(setting, "_neighbours", None)
    if cached is not None or setting.data is None:
        return cached
    if setting.data.corpus == "synthetic-stories":
        neighbours = _generated_neighbours(setting)
    else:
        neighbours = _nearest_single(setting)
    setting._neighbours = neighbours
    return neighbours


def story_end(setting: Setting, index: int) -> int:
    """Where repeated sequence `index`'s story ends (its canary, if any, starts there)."""
    if setting.data is not None and setting.data.canary_length:
        return setting.repeated.spans[index][0]
    return len(setting.repeated.tokens[index])


def _generated_neighbours(setting: Setting) -> SequenceSet:
    from .corpus.synthetic import generate_neighbour
    from .setting import corpus_documents

    data = setting.data
    documents = corpus_documents(data)
    bos = setting.repeated.tokens[0][0]
    room = data.seq_len - 1 - data.canary_length
    tokens = []
    for index, sequence in enumerate(setting.repeated.tokens):
        text = setting.tokenizer.decode(sequence[1:story_end(setting, index)], skip_special_tokens=True)
        found = next((i for i, document in enumerate(documents) if document.startswith(text)), None)
        if found is None:
            raise RuntimeError(f"repeated sequence {index} matches no generated story; the setting cache is stale")
        neighbour = " ".join(generate_neighbour(data.seed, found).split())
        tokens.append([bos] + setting.tokenizer.encode(neighbour, add_special_tokens=False)[:room])
    return _as_set(setting, tokens)


def _grams(tokens: list[int]) -> set[tuple[int, ...]]:
    return {tuple(tokens[i:i + NGRAM]) for i in range(1, len(tokens) - NGRAM + 1)}


def _nearest_single(setting: Setting) -> SequenceSet:
    """Per forget sequence (in order), the unused single-seen document sharing the most 4-grams."""
    singles = [_grams(tokens) for tokens in setting.single.tokens]
    used: set[int] = set()
    tokens = []
    for index, sequence in enumerate(setting.repeated.tokens):
        grams = _grams(sequence[:story_end(setting, index)])
        scores = [(len(grams & other), -i) for i, other in enumerate(singles) if i not in used]
        _, best = max(scores)
        used.add(-best)
        tokens.append(setting.single.tokens[-best])
    return _as_set(setting, tokens)


def _as_set(setting: Setting, tokens: list[list[int]]) -> SequenceSet:
    data = setting.data
    span = (1 + data.prefix_len, min(1 + data.prefix_len + data.continuation_len, min(len(t) for t in tokens)))
    return SequenceSet(tokens, [0] * len(tokens), [span] * len(tokens))


def ngram_overlap(a: list[int], b: list[int]) -> float:
    """Share of a's token 4-grams that b also has (how close a neighbour is to its sequence)."""
    grams = _grams(a)
    return len(grams & _grams(b)) / max(len(grams), 1)
