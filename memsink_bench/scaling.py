"""The scaling result: memorization gap closed against model size, per corpus.

For one setting, every preset whose records exist is a point at its model's parameter count
(computed from the record's model config: GPT-2 with tied embeddings). Per corpus (a results
directory: `results/scaling/` for the synthetic stories, `results/scaling/prose/` for
classic-prose; tables never mix corpora), two rows per size: MemSinks (scored against the
standard model it replaces) and the best post-hoc method on the standard model, each with the
leaderboard's gap closed within the primary budget, its 95% interval over seeds and sequences,
its largest gap closed at any budget up to 0.2 nats, and its number of seeds (a size run with one
seed is labelled so). Sizes are compared only on the same forget span (records forgetting a
subset of the repeated sequences are left out).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .record import ResultRecord

SCALING_FILE = "scaling"
WIDE_BUDGET = 0.2        # the second budget of the table and figure: a leaderboard column (BUDGETS_SHOWN)


def gpt2_parameters(model: dict, vocab_size: int, positions: int) -> int:
    """Parameters of our GPT-2 (tied unembedding, biases, layer norms) from a model config dict."""
    d, m, layers = model["n_embd"], model["d_mlp"], model["n_layer"]
    block = (2 * d) + (3 * d * d + 3 * d) + (d * d + d) + (2 * d) + (d * m + m) + (m * d + d)
    return vocab_size * d + positions * d + layers * block + 2 * d


def record_parameters(record: ResultRecord) -> int | None:
    config = record.config
    if "model" not in config or "data" not in config:
        return None
    return gpt2_parameters(config["model"], config["data"]["vocab_size"], config["data"]["seq_len"] + 1)


def scaling_frame(sources: dict[str, list[ResultRecord]], setting: str) -> pd.DataFrame:
    """One row per (corpus, size, MemSinks | best post-hoc) from each corpus's records."""
    from .leaderboard import PRIMARY_BUDGET, RANK_BY, leaderboard_frame, span_label

    rows = []
    for corpus, records in sources.items():
        # every repeated sequence forgotten; sizes are compared only on the same forget span
        mine = [r for r in records if r.setting == setting and record_parameters(r) is not None and not r.forget_count]
        for span, preset in sorted({(span_label(r), r.preset) for r in mine}):
            these = [r for r in mine if r.preset == preset and span_label(r) == span]
            frame = leaderboard_frame(these)
            parameters = record_parameters(these[0])
            memsinks = frame[frame["method"] == "memsinks"]
            post_hoc = frame[(frame["_records"].map(lambda rs: rs[0].method_type) != "training")
                             & (frame["checkpoint"] == "standard")]
            for role, chosen in (("MemSinks", memsinks), ("best post-hoc", post_hoc)):
                if chosen.empty:
                    continue
                row = chosen.sort_values(RANK_BY, ascending=False, kind="stable").iloc[0]
                interval = row["_intervals"].get(RANK_BY)
                rows.append({"corpus": corpus, "span": span, "preset": preset, "parameters": parameters, "role": role,
                             "method": row["method"], "seeds": len(row["_records"]), "budget": PRIMARY_BUDGET,
                             "gap": row[RANK_BY], "interval": interval, "gap_at_0.2": row[f"gap closed @{WIDE_BUDGET}"],
                             "interval_at_0.2": row["_intervals"].get(f"gap closed @{WIDE_BUDGET}")})
    return pd.DataFrame(rows)


def render_scaling(frame: pd.DataFrame) -> str:
    lines = ["| corpus | forget span | preset | parameters | role | method | seeds | gap closed @0.05 [95% CI] | "
             "gap closed @0.2 [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|"]
    def interval(bounds) -> str:
        return f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else ""

    for _, row in frame.sort_values(["corpus", "span", "parameters", "role"]).iterrows():
        seeds = f"{row['seeds']}" + (" (one seed: interval over sequences only)" if row["seeds"] == 1 else "")
        lines.append(f"| {row['corpus']} | {row['span']} | {row['preset']} | {row['parameters'] / 1e6:.2f}M | {row['role']} | "
                     f"{row['method']} | {seeds} | {row['gap']:.3f}{interval(row['interval'])} | "
                     f"{row['gap_at_0.2']:.3f}{interval(row['interval_at_0.2'])} |")
    return "\n".join(lines) + "\n"


def scaling_figure(frame: pd.DataFrame, setting: str):
    """Gap closed against parameter count (log) within the primary budget (left) and within 0.2
    nats (right: MemSinks' sinks cost more than the primary budget at larger sizes, so the left
    panel alone would hide what they remove), one line per corpus and role, 95% intervals as error
    bars; the corpus is the marker and line style, the role the colour; a one-seed size is hollow."""
    from .plots import DOUBLE_COLUMN, method_color, paper_style, subplots

    styles = {"synthetic-stories": ("-", "o"), "classic-prose": ("--", "s")}
    panels = (("gap", "interval", f"within {frame['budget'].iloc[0]:g} nats"), ("gap_at_0.2", "interval_at_0.2", f"within {WIDE_BUDGET:g} nats"))
    with paper_style():
        fig, axes = subplots(1, 2, width=DOUBLE_COLUMN, height=3.0, sharey=True)
        for ax, (value, bounds, title) in zip(axes, panels):
            for (corpus, span, role), part in frame.groupby(["corpus", "span", "role"], sort=True):
                part = part.sort_values("parameters")
                color = method_color("memsinks" if role == "MemSinks" else "ig")
                linestyle, marker = styles.get(corpus, (":", "^"))
                gap = part[value]
                low = [g - i[0] if i else 0.0 for g, i in zip(gap, part[bounds])]
                high = [i[1] - g if i else 0.0 for g, i in zip(gap, part[bounds])]
                ax.errorbar(part["parameters"], gap, yerr=[low, high], color=color, linestyle=linestyle,
                            marker=marker, capsize=3, label=f"{role} ({corpus}, {span})")
                single = part[part["seeds"] == 1]
                ax.scatter(single["parameters"], single[value], s=60, marker=marker, facecolors="white",
                           edgecolors=color, zorder=3)
            ax.set_xscale("log")
            ax.set_xlabel("parameters")
            ax.set_title(title)
        axes[0].set_ylabel("memorization gap closed")
        fig.suptitle(f"{setting}: gap closed against model size")
        axes[1].scatter([], [], s=60, facecolors="white", edgecolors="0.3", label="one seed")
        axes[1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    return fig


def write_scaling(results: Path, setting: str, sources: dict[str, list[ResultRecord]]) -> list[Path]:
    """results/scaling_<setting>.md and results/figures/scaling_<setting>.{pdf,png} when some corpus
    has records at two or more sizes; nothing otherwise."""
    from .plots import save_figure
    from .storage import atomic_write_text

    frame = scaling_frame(sources, setting)
    if frame.empty or frame.groupby(["corpus", "span"])["parameters"].nunique().max() < 2:
        return []
    table = results / f"{SCALING_FILE}_{setting}.md"
    atomic_write_text(table, f"# {setting}: gap closed against model size\n\n" + render_scaling(frame))
    return [table, *save_figure(scaling_figure(frame, setting), results / "figures" / f"{SCALING_FILE}_{setting}")]
