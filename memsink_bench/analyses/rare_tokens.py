"""Rare-token attention heads (Stoehr et al. §6.2, Fig. 7).

Why: Stoehr et al. found one low-layer head (GPT-Neo-125M L1H2, Kendall tau ~ -0.97) whose
attention from the first decoded position goes to the prefix's rarest tokens, and proposed that
the model looks paragraphs up by a "bag of rare words". This module finds the head most tied
to rare tokens, separately for memorized and non-memorized sequences, and measures how much
exact match on the memorized sequences depends on it (by zeroing its output). The attention
patterns are read from the transformer-lens view of the model (`common.as_hooked`); the head
is ablated on the HF model through the architecture-neutral layout (`attention.ablated_head`).

Definitions (recorded in the output):
- unigram frequency: token counts over a corpus file the user gives (`frequencies=FILE`, .txt /
  .jsonl / .parquet, tokenized with the setting's tokenizer), or else over the setting's own
  sequences: for a task setting its training data, each repeated sequence counted
  `data.repetitions` times and each single sequence once; for a pretrained model's paragraphs
  (which have no known training data) every sequence of the setting once (forget, retain,
  control and validation sets). `summary.frequencies` says which was used;
- prefix keys: positions 1..start-1 of a sequence whose target span starts at `start` (position
  0, BOS in a task setting and a paragraph's first token otherwise, is an attention sink with no
  frequency meaning and is left out); the query is position start-1, the one that predicts the
  first target token;
- controls (`summary.controls`): the same top head found with the query at the first target
  position (the other reading of "the first decoded token"), and both readings with every
  prefix cut to the same number of tokens in both groups (memorized canary stories have longer
  prefixes than control stories); `summary.ablation.control`: the exact-match drop of ablating
  other heads (every one on a small model, else 16 seeded ones) instead of the top head;
- dense frequency rank of each prefix token (0 = rarest, ties share a rank);
- per head: Kendall tau / Spearman between frequency and attention, within each sequence and
  averaged over sequences (`tau`, `spearman`; the head ranking uses `tau`), and the same between
  rank and the attention summed per rank averaged over sequences (`profile_tau`, Fig. 7's view).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from ..errors import UserError
from ..evaluate import collate, exact_match
from .attention import ablated_head, attention_blocks
from .common import as_hooked, pad_id_of, plain, sequence_groups

NAME = "rare-tokens"
TITLE = "Rare-token attention heads"


# --- frequencies and ranks -------------------------------------------------------------------

def unigram_frequencies(setting, vocab_size: int) -> np.ndarray:
    """[vocab] token counts over the setting's sequences: a task setting's training data
    (repeated sequences weighted by their repetitions), or every sequence of a pretrained
    model's paragraph setting once."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    if setting.data is None:
        weighted = [(1, s) for s in (setting.repeated, setting.single, setting.control, setting.validation)]
    else:
        weighted = ((1, setting.single), (setting.data.repetitions, setting.repeated))
    for weight, sequences in weighted:
        for tokens in sequences.tokens:
            counts += weight * np.bincount(tokens, minlength=vocab_size)[:vocab_size]
    return counts


def corpus_frequencies(documents: list[str], tokenizer, vocab_size: int, chunk: int = 1024) -> np.ndarray:
    """[vocab] token counts of documents tokenized without special tokens (ids beyond the model's
    vocabulary are not counted), `chunk` documents at a time."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for first in range(0, len(documents), chunk):
        for ids in tokenizer(documents[first:first + chunk], add_special_tokens=False)["input_ids"]:
            ids = np.asarray(ids, dtype=np.int64)
            counts += np.bincount(ids[ids < vocab_size], minlength=vocab_size)
    return counts


def frequency_file(path: str | Path) -> Path:
    """The corpus file to count frequencies in, checked before anything is computed."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in (".txt", ".jsonl", ".parquet"):
        raise UserError(f"--frequencies {path} is not an existing .txt, .jsonl or .parquet file",
                        "give a corpus file of text (one document per line, or a `text` field / column)")
    return path


def token_frequencies(setting, vocab_size: int, corpus: str | Path | None = None) -> tuple[np.ndarray, dict]:
    """([vocab] counts, where they came from): the corpus file when given, else the setting's own
    sequences (`unigram_frequencies`)."""
    if corpus is None:
        counts = unigram_frequencies(setting, vocab_size)
        source = "setting sequences" if setting.data is None else "setting training data"
        return counts, {"source": source, "tokens": int(counts.sum())}
    from ..corpus.sources import read_document_file

    path = frequency_file(corpus)
    documents = [d for d in read_document_file(path) if d and d.strip()]
    counts = corpus_frequencies(documents, setting.tokenizer, vocab_size)
    if not counts.sum():
        raise UserError(f"--frequencies {path} holds no text the model's tokenizer turns into tokens",
                        "give a corpus file with text in it, or leave --frequencies out to count the setting's sequences")
    return counts, {"source": "file", "path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "documents": len(documents), "tokens": int(counts.sum())}


def dense_frequency_ranks(tokens, frequencies: np.ndarray) -> np.ndarray:
    """[len(tokens)] dense rank of each token's corpus frequency: 0 = rarest, ties share a rank."""
    return stats.rankdata(frequencies[np.asarray(tokens)], method="dense").astype(np.int64) - 1


# --- attention -------------------------------------------------------------------------------

READINGS = {"query start-1": 0, "query start": 1}   # the position that predicts the first target token,
#                                                     or the first target position itself (Stoehr's "first decoded token")


def attention_inputs(tokens: list[int], start: int, query_offset: int = 0,
                     window: int | None = None) -> tuple[list[int], int, list[int]]:
    """(input tokens, query index, key tokens) of one sequence: the keys are the prefix tokens
    1..start-1, or with `window` only the last `window` of them (fed after the first token, the
    attention sink, so that every sequence has the same context); the query is the last prefix
    position (`query_offset` 0) or the first target position (1, its token fed too)."""
    keys = list(tokens[1:start]) if window is None else list(tokens[start - window:start])
    fed = [tokens[0], *keys, *tokens[start:start + query_offset]]
    return fed, len(fed) - 1, keys


@torch.no_grad()
def first_target_attention(hooked, sequences, pad_id: int, batch_size: int = 16, query_offset: int = 0,
                           window: int | None = None) -> list[np.ndarray]:
    """Per sequence, [layers, heads, keys] attention from the query to the key positions of
    `attention_inputs` (default: query start-1 onto prefix tokens 1..start-1).

    Only what `attention_inputs` gives is fed (right-padded; causal attention keeps padding out
    of the query). The hooks keep just the query's row of each `blocks.{l}.attn.hook_pattern`
    [batch, head, q, k]: the same values as `run_with_cache`, without holding every layer's full
    pattern (1.6 GB per batch of 16 at the paper's scale).
    """
    found = []
    for first in range(0, len(sequences), batch_size):
        inputs = [attention_inputs(t, s, query_offset, window)
                  for t, (s, _) in zip(sequences.tokens[first:first + batch_size],
                                       sequences.spans[first:first + batch_size])]
        fed = [i[0] for i in inputs]
        queries = torch.tensor([i[1] for i in inputs], device=hooked.cfg.device)
        rows: dict[int, torch.Tensor] = {}

        def keep_query_row(pattern, hook):
            layer = int(hook.name.split(".")[1])
            rows[layer] = pattern[torch.arange(len(queries), device=pattern.device), :, queries]  # [batch, head, k]

        batch = collate(fed, [0] * len(fed), [(1, 1)] * len(fed), pad_id)
        hooked.run_with_hooks(batch.input_ids.to(hooked.cfg.device), return_type=None, fwd_hooks=[
            (lambda name: name.endswith("attn.hook_pattern"), keep_query_row)])
        stacked = torch.stack([rows[layer] for layer in sorted(rows)], dim=1)              # [batch, layer, head, k]
        found += [stacked[row, :, :, 1:len(keys) + 1].float().cpu().numpy()
                  for row, (_, _, keys) in enumerate(inputs)]
    return found


def _correlation(fn, x: np.ndarray, y: np.ndarray) -> float:
    """A rank correlation, NaN where it is undefined (fewer than 2 points, a constant input)."""
    if len(x) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(x, y).statistic)


def within_sequence_correlations(attentions: list[np.ndarray], frequencies: list[np.ndarray]) -> np.ndarray:
    """[2, layers*heads]: mean over sequences of Kendall tau and of Spearman rho between the
    prefix tokens' corpus frequencies and the attention they receive (NaNs skipped)."""
    units = attentions[0].shape[0] * attentions[0].shape[1]
    values = np.full((2, len(attentions), units), np.nan)
    for index, (attention, frequency) in enumerate(zip(attentions, frequencies)):
        for unit, row in enumerate(attention.reshape(units, -1)):
            values[:, index, unit] = (_correlation(stats.kendalltau, frequency, row),
                                      _correlation(stats.spearmanr, frequency, row))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # a head with no defined value
        return np.nanmean(values, axis=1)


def rank_profile(attentions: list[np.ndarray], ranks: list[np.ndarray]) -> np.ndarray:
    """[layers*heads, ranks]: attention summed over the prefix tokens of each frequency rank,
    averaged over the sequences that have that rank (dense ranks: every rank up to the widest
    sequence's occurs somewhere)."""
    units = attentions[0].shape[0] * attentions[0].shape[1]
    width = max([int(r.max()) + 1 for r in ranks if len(r)] or [1])
    sums, present = np.zeros((units, width)), np.zeros(width)
    for attention, rank in zip(attentions, ranks):
        present[np.unique(rank)] += 1
        for unit, row in enumerate(attention.reshape(units, -1)):
            sums[unit] += np.bincount(rank, weights=row, minlength=width)
    return sums / np.maximum(present, 1)


def head_rarity_table(attentions: list[np.ndarray], frequencies: list[np.ndarray],
                      ranks: list[np.ndarray]) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per layer x head (the correlations of the module docstring) and the rank profile."""
    heads = attentions[0].shape[1]
    (tau, rho), profile = within_sequence_correlations(attentions, frequencies), rank_profile(attentions, ranks)
    order = np.arange(profile.shape[1])
    prefix_mass = np.mean([a.sum(-1).reshape(-1) for a in attentions], axis=0)
    rows = [{"layer": unit // heads, "head": unit % heads, "tau": tau[unit], "spearman": rho[unit],
             "profile_tau": _correlation(stats.kendalltau, order, profile[unit]),
             "profile_spearman": _correlation(stats.spearmanr, order, profile[unit]),
             "rarest_attention": profile[unit, 0], "prefix_attention": prefix_mass[unit]}
            for unit in range(len(profile))]
    return pd.DataFrame(rows), profile


def most_rare_tied(frame: pd.DataFrame) -> dict:
    """The head with the most negative mean frequency-attention tau."""
    best = frame.sort_values(["tau", "layer", "head"], na_position="last").iloc[0]
    return {"layer": int(best["layer"]), "head": int(best["head"]), "tau": float(best["tau"]),
            "profile_tau": float(best["profile_tau"])}


# --- ablation --------------------------------------------------------------------------------

def ablation_effect(model, sequences, layer: int, head: int, batch_size: int = 32) -> dict:
    """Exact match (tokens matched before the first mismatch) with and without the head."""
    before = exact_match(model, sequences, batch_size).summary()["exact_match"]
    with ablated_head(model, layer, head):
        after = exact_match(model, sequences, batch_size).summary()["exact_match"]
    return {"em_before": before, "em_after": after, "em_drop": before - after}


CONTROL_HEADS = 16      # other heads ablated as the control (every other head when there are fewer)


def ablation_control(model, sequences, top: tuple[int, int], layers: int, heads: int, seed: int = 0,
                     batch_size: int = 32) -> dict:
    """The memorized group's exact-match drop when each of up to CONTROL_HEADS other heads (all
    of them on a small model, else a seeded sample) is ablated instead of the top head: their
    mean, their 2.5-97.5 percentile range, and the top head's rank among all heads ablated
    (1 = the largest drop). A drop inside the others' range is not specific to the head."""
    import random

    others = [(layer, head) for layer in range(layers) for head in range(heads) if (layer, head) != top]
    if len(others) > CONTROL_HEADS:
        others = sorted(random.Random(f"ablation-control:{seed}").sample(others, CONTROL_HEADS))
    if not others:
        return {}
    before = exact_match(model, sequences, batch_size).summary()["exact_match"]

    def drop(layer, head):
        with ablated_head(model, layer, head):
            return before - exact_match(model, sequences, batch_size).summary()["exact_match"]

    drops = np.array([drop(*unit) for unit in others])
    top_drop = drop(*top)
    return {"heads": [f"L{layer}H{head}" for layer, head in others], "em_drops": drops.tolist(),
            "mean_em_drop": float(drops.mean()), "range": [float(np.percentile(drops, 2.5)),
                                                           float(np.percentile(drops, 97.5))],
            "top_head_em_drop": float(top_drop), "top_head_rank": int(1 + (drops > top_drop).sum()),
            "of_heads": len(others) + 1}


# --- the analysis ----------------------------------------------------------------------------

def analyze_group(hooked, sequences, frequencies: np.ndarray, pad_id: int, batch_size: int, query_offset: int = 0,
                  window: int | None = None) -> tuple[pd.DataFrame, dict]:
    """The per-head table of one group and its summary (top head, rank profile for the heatmap)."""
    attentions = first_target_attention(hooked, sequences, pad_id, batch_size, query_offset, window)
    keys = [np.asarray(attention_inputs(t, s, query_offset, window)[2])
            for t, (s, _) in zip(sequences.tokens, sequences.spans)]
    table, profile = head_rarity_table(attentions, [frequencies[k] for k in keys],
                                       [dense_frequency_ranks(k, frequencies) for k in keys])
    return table, {"top_head": most_rare_tied(table), "n_sequences": len(sequences),
                   "attention_by_rank": profile, "n_heads": hooked.cfg.n_heads}


def run(model, setting, *, hooked=None, max_sequences: int | None = None, ablate: bool = True,
        batch_size: int = 16, frequencies: str | Path | None = None) -> tuple[pd.DataFrame, dict]:
    """Rows: group x layer x head with the correlations above; summary: the most rare-tied head
    per group, attention-by-rank profiles for the heatmap, and the ablation of the memorized
    group's head (exact-match drop on memorized and non-memorized sequences).
    `hooked`: a HookedTransformer of `model` (converted here when not given); `frequencies`: a
    corpus file to count unigram frequencies in (else the setting's sequences)."""
    attention_blocks(model, f"the {NAME} analysis")      # an unknown architecture fails before any work
    model.eval()
    groups = sequence_groups(setting, max_sequences)
    hooked = hooked if hooked is not None else as_hooked(model)
    counts, source = token_frequencies(setting, hooked.cfg.d_vocab, frequencies)
    frames, summary = [], {"definition": "tau: mean within-sequence Kendall tau(frequency, attention "
                                         "from query start-1 to prefix tokens 1..start-1)", "groups": {},
                           "frequencies": source}
    for group, sequences in groups.items():
        table, summary["groups"][group] = analyze_group(hooked, sequences, counts, pad_id_of(setting), batch_size)
        frames.append(table.assign(group=group))
    summary["controls"] = reading_controls(hooked, groups, counts, pad_id_of(setting), batch_size,
                                           {group: found["top_head"] for group, found in summary["groups"].items()})
    if ablate:
        top = summary["groups"]["memorized"]["top_head"]
        summary["ablation"] = {"layer": top["layer"], "head": top["head"], **{
            group: ablation_effect(model, sequences, top["layer"], top["head"]) for group, sequences in groups.items()}}
        summary["ablation"]["control"] = ablation_control(model, groups["memorized"], (top["layer"], top["head"]),
                                                          hooked.cfg.n_layers, hooked.cfg.n_heads)
    key = ["group", "layer", "head"]
    frame = pd.concat(frames).sort_values(key).reset_index(drop=True)
    return frame[key + [c for c in frame.columns if c not in key]], plain(summary)


def reading_controls(hooked, groups: dict, counts: np.ndarray, pad_id: int, batch_size: int,
                     primary: dict) -> dict:
    """The top head and its tau under both readings of "attention from the first decoded token"
    (READINGS), with the full prefixes and with prefixes matched in length across the groups (the
    last `window` tokens of every prefix, window = the shortest prefix of either group), so that a
    difference between the groups is not one of prefix length. `primary`: the top heads already
    found with full prefixes from query start-1, reused rather than computed again."""
    window = min(s - 1 for sequences in groups.values() for s, _ in sequences.spans)
    variants = {}
    for condition, cut in (("full prefix", None), (f"matched prefix ({window} tokens)", window)):
        for reading, offset in READINGS.items():
            if cut is None and offset == 0:         # the primary analysis itself (`primary`: its top heads)
                variants[f"{condition}, {reading}"] = primary
                continue
            variants[f"{condition}, {reading}"] = {
                group: analyze_group(hooked, sequences, counts, pad_id, batch_size, offset, cut)[1]["top_head"]
                for group, sequences in groups.items()}
    lengths = {group: [int(s - 1) for s, _ in sequences.spans] for group, sequences in groups.items()}
    return {"matched_prefix_tokens": int(window), "variants": variants,
            "prefix_tokens": {g: {"min": min(v), "max": max(v), "mean": float(np.mean(v))} for g, v in lengths.items()}}


# --- figure ----------------------------------------------------------------------------------

def figure(frame: pd.DataFrame, summary: dict, max_ranks: int = 50):
    """Heatmaps of attention summed per frequency rank (x, 0 = rarest) by head (y), memorized
    and non-memorized side by side (each with its own colour scale: the groups' prefixes may
    differ in length); the most rare-tied head is starred."""
    from .. import plots

    groups = [g for g in ("memorized", "non-memorized") if g in summary["groups"]]
    profiles = {g: np.asarray(summary["groups"][g]["attention_by_rank"], dtype=float)[:, :max_ranks]
                for g in groups}
    with plots.paper_style():
        fig, axes = plots.subplots(1, len(groups), width=plots.DOUBLE_COLUMN,
                                   height=0.25 * len(profiles[groups[0]]) + 1.9)
        for ax, group in zip(np.atleast_1d(axes), groups):
            image = _heatmap(ax, profiles[group], summary["groups"][group], group)
            fig.colorbar(image, ax=ax, label="attention summed per rank")
    return fig


def _heatmap(ax, profile: np.ndarray, group_summary: dict, group: str):
    from matplotlib.ticker import MaxNLocator

    heads = group_summary["n_heads"]
    best = group_summary["top_head"]
    image = ax.imshow(profile, aspect="auto", cmap="viridis", vmin=0.0, interpolation="nearest")
    labels = [f"L{u // heads}H{u % heads}" + (" *" if (u // heads, u % heads) == (best["layer"], best["head"])
                                                else "") for u in range(len(profile))]
    ax.set_yticks(range(len(profile)), labels)
    ax.set_xlabel("frequency rank in prefix (0 = rarest)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(False)
    tau = "n/a" if best["tau"] is None else f"{best['tau']:.2f}"
    ax.set_title(f"{group} (n={group_summary['n_sequences']})\n* most rare-tied: L{best['layer']}H{best['head']}, "
                 f"tau={tau}")
    return image
