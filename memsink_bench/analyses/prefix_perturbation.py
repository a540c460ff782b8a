"""Prefix-token perturbation (Stoehr et al. §4, Fig. 3).

Why: where in the prefix does a model look to recite a memorized continuation? Each prefix
token (positions 1..start-1; BOS is kept) is replaced, one at a time, by a random token
(seeded, never the original token or BOS), the target span is greedy-decoded, and the exact
match (tokens matched before the first mismatch) is compared with the unperturbed decoding.
Stoehr et al. found drops growing towards the end of the prefix, a few distinctive early tokens
able to corrupt the whole continuation, and memorized paragraphs harder to perturb than
non-memorized ones.

Two drops per perturbation:
- `em_drop`: EM against the true continuation, unperturbed minus perturbed (what memorization
  loses; ~0 for sequences the model never reproduced);
- `own_drop`: span length minus the EM of the perturbed decoding against the model's own
  unperturbed decoding (how far the perturbation moves the model, meaningful for both groups).
Positions are aligned by their distance to the target start (1 = the token just before it).
All perturbed copies of a group are greedy-decoded together, in batches of up to `batch_rows`.
"""

from __future__ import annotations

import random

import pandas as pd

from ..evaluate import greedy_targets, matched_prefix_length
from ..setting import SequenceSet
from .common import GROUPS, plain, sequence_groups

NAME = "prefix-perturbation"
TITLE = "Prefix-token perturbation"


def random_replacement(original: int, vocab_size: int, rng: random.Random, forbidden: set[int]) -> int:
    """A uniformly random token id other than `original` and the `forbidden` (special) ids."""
    while True:
        token = rng.randrange(vocab_size)
        if token != original and token not in forbidden:
            return token


def perturbed_copies(tokens: list[int], start: int, vocab_size: int, rng: random.Random,
                     forbidden: set[int]) -> list[list[int]]:
    """[start] sequences: the original, then one per prefix position 1..start-1 with that token
    replaced (the target span is kept so greedy decoding has the same length)."""
    copies = [list(tokens)]
    for position in range(1, start):
        copy = list(tokens)
        copy[position] = random_replacement(tokens[position], vocab_size, rng, forbidden)
        copies.append(copy)
    return copies


def perturbation_rows(decoded: list[list[int]], tokens: list[int], span: tuple[int, int]) -> list[dict]:
    """One row per prefix position from the decodings of `perturbed_copies` (original first)."""
    start, end = span
    truth, own = tokens[start:end], decoded[0]
    em_before = matched_prefix_length(own, truth)
    rows = []
    for position, generated in enumerate(decoded[1:], start=1):
        em_after = matched_prefix_length(generated, truth)
        rows.append({"position": position, "distance": start - position, "em_before": em_before,
                     "em_after": em_after, "em_drop": em_before - em_after,
                     "own_drop": len(own) - matched_prefix_length(generated, own)})
    return rows


def group_perturbation(model, sequences, vocab_size: int, seed: int, group: str, forbidden: set[int],
                       batch_rows: int) -> list[dict]:
    """Decode every perturbed copy of every sequence of a group; rows as `perturbation_rows`.

    Batches hold `batch_rows` copies, or one sequence's copies if that is more; `greedy_targets`
    groups copies by prefix length, so no padding enters a prefix."""
    copies, counts = [], []
    for index, (tokens, span) in enumerate(zip(sequences.tokens, sequences.spans)):
        rng = random.Random(f"prefix-perturbation:{seed}:{group}:{index}")
        made = perturbed_copies(tokens, span[0], vocab_size, rng, forbidden)
        copies.append(made)
        counts.append(len(made))
    flat = [copy for made in copies for copy in made]
    spans = [span for span, count in zip(sequences.spans, counts) for _ in range(count)]
    decoded = greedy_targets(model, SequenceSet(flat, [0] * len(flat), spans), batch_size=max([batch_rows, *counts]))
    rows, offset = [], 0
    for index, (tokens, span, count) in enumerate(zip(sequences.tokens, sequences.spans, counts)):
        rows += [{"group": group, "sequence": index, **row}
                 for row in perturbation_rows(decoded[offset:offset + count], tokens, span)]
        offset += count
    return rows


def run(model, setting, *, seed: int = 0, max_sequences: int | None = None,
        batch_rows: int = 256) -> tuple[pd.DataFrame, dict]:
    """Rows: group x sequence x prefix position; summary: per group the unperturbed EM, the mean
    drops, and the distance whose perturbation hurts most on average."""
    vocab_size = model.config.vocab_size
    forbidden = {setting.tokenizer.bos_token_id, setting.tokenizer.pad_token_id} - {None}
    rows = []
    for group, sequences in sequence_groups(setting, max_sequences).items():
        rows += group_perturbation(model, sequences, vocab_size, seed, group, forbidden, batch_rows)
    frame = pd.DataFrame(rows).sort_values(["group", "sequence", "position"]).reset_index(drop=True)
    return frame, plain(_summary(frame, seed))


def mean_by_distance(frame: pd.DataFrame) -> pd.DataFrame:
    """[group x distance] mean em_drop / own_drop and the number of sequences averaged."""
    return (frame.groupby(["group", "distance"])
            .agg(em_drop=("em_drop", "mean"), own_drop=("own_drop", "mean"), n=("sequence", "nunique"))
            .reset_index().sort_values(["group", "distance"]))


def markdown_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The table shown in Markdown: mean drops per distance (the CSV / JSON keep every row)."""
    return mean_by_distance(frame).reset_index(drop=True)


def _summary(frame: pd.DataFrame, seed: int) -> dict:
    summary = {"seed": seed, "groups": {}}
    by_distance = mean_by_distance(frame)
    for group, rows in frame.groupby("group", sort=True):
        curve = by_distance[by_distance["group"] == group]
        worst = curve.sort_values(["em_drop", "distance"], ascending=[False, True]).iloc[0]
        summary["groups"][group] = {
            "n_sequences": int(rows["sequence"].nunique()),
            "em_before": float(rows.groupby("sequence")["em_before"].first().mean()),
            "mean_em_drop": float(rows["em_drop"].mean()), "mean_own_drop": float(rows["own_drop"].mean()),
            "worst_distance": int(worst["distance"]), "worst_distance_em_drop": float(worst["em_drop"])}
    return summary


def figure(frame: pd.DataFrame, summary: dict, max_distance: int | None = None):
    """Mean EM drop (left: against the truth; right: against the model's own decoding) per
    prefix position, counted back from the target start, memorized vs non-memorized."""
    from .. import plots

    curves = mean_by_distance(frame)
    if max_distance is not None:
        curves = curves[curves["distance"] <= max_distance]
    with plots.paper_style():
        fig, axes = plots.subplots(1, 2, width=plots.DOUBLE_COLUMN, height=2.7)
        for ax, key, ylabel in zip(axes, ("em_drop", "own_drop"),
                                   ("EM drop vs true continuation", "EM drop vs own decoding")):
            for group in [g for g in GROUPS if g in set(curves["group"])]:
                rows = curves[curves["group"] == group]
                ax.plot(rows["distance"], rows[key], color=plots.GROUP_COLORS[group], label=group)
            ax.set_xlabel("perturbed position (tokens before the target)")
            ax.set_ylabel(ylabel)
            ax.invert_xaxis()
            ax.legend()
    return fig
