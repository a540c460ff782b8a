"""Paper-ready figures: the forgetting / degradation tradeoff, training curves, sweeps.

Conventions every figure follows, so that figures can sit side by side in a paper:
- one fixed colour per method (and per checkpoint kind) in every figure (`method_color`),
  from colourblind-safe palettes; a plugin method gets a colour derived from a hash of its
  name, so it is the same in every run;
- fonts of 9 pt or more; PDF (TrueType fonts, editable) and PNG (200 dpi) side by side;
- deterministic files: no creation date or software stamp, so the same inputs give the same
  bytes; figures are drawn on `matplotlib.figure.Figure` (the Agg renderer, no pyplot state).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from .record import ResultRecord
from .storage import atomic_write_bytes

# seaborn "colorblind" palette values, one per built-in method and checkpoint kind
METHOD_COLORS = {
    "memsinks": "#d55e00",          # vermillion
    "gradient-masked": "#cc78bc",   # reddish purple
    "hard-concrete": "#0173b2",     # blue
    "ig": "#029e73",                # bluish green
    "sparse-ft": "#de8f05",         # orange
    "co-unlearn": "#56b4e9",        # sky blue
    "co-edit": "#ece133",           # yellow
    "random-neurons": "#949494",    # grey
    "random-sparse-ft": "#fbafe4",  # pink
    "standard": "#000000",
    "standard-no-rep": "#ca9161",   # brown
}
# plugin methods: the colours of Paul Tol's "muted" scheme (colourblind-safe) that are not close
# to a built-in's colour; plugins are also drawn with their own marker
FALLBACK_COLORS = ("#332288", "#999933", "#ddcc77", "#cc6677", "#882255", "#5f5f5f")
PLUGIN_MARKER = "^"
METHOD_MARKERS = {"memsinks": "*", "gradient-masked": "D"}
TYPE_MARKERS = {"localizer": "o", "editor": "s", "training": "P"}
GROUP_COLORS = {"memorized": "#d55e00", "non-memorized": "#0173b2"}

STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 9,
    "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 10,
    "font.family": "DejaVu Sans", "pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": "memsink-bench",
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "lines.linewidth": 1.4, "lines.markersize": 5, "legend.frameon": False, "savefig.dpi": 200,
}
SINGLE_COLUMN, DOUBLE_COLUMN = 3.4, 7.0   # inches


def method_color(name: str) -> str:
    """The fixed colour of a method or checkpoint kind; plugins: a stable hash of the name."""
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]
    digest = int(hashlib.sha256(name.encode()).hexdigest(), 16)
    return FALLBACK_COLORS[digest % len(FALLBACK_COLORS)]


def method_marker(name: str, method_type: str = "") -> str:
    """MemSinks: star, gradient-masked: diamond, other built-ins by type, plugins: triangle."""
    if name in METHOD_MARKERS:
        return METHOD_MARKERS[name]
    return TYPE_MARKERS.get(method_type, "o") if name in METHOD_COLORS else PLUGIN_MARKER


@contextlib.contextmanager
def paper_style():
    with matplotlib.rc_context(STYLE):
        yield


def subplots(nrows: int = 1, ncols: int = 1, width: float = SINGLE_COLUMN, height: float = 2.6, **kwargs):
    """(Figure, axes) with constrained layout; create it inside `paper_style()`."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=True, **kwargs)


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """Write `stem`.pdf and `stem`.png atomically, without timestamps; returns the paths."""
    stem = Path(stem)
    written = []
    with paper_style():
        for fmt, metadata in (("pdf", {"CreationDate": None, "ModDate": None}), ("png", {"Software": None})):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, metadata=metadata)
            path = stem.with_name(f"{stem.name}.{fmt}")
            atomic_write_bytes(path, buffer.getvalue())
            written.append(path)
    return written


# --- (a) tradeoff ----------------------------------------------------------------------------

def on_other_checkpoint(record: ResultRecord) -> bool:
    """Is the method on another checkpoint than its usual one (the standard checkpoint for post-hoc
    methods, a training-time method's own)? Such curves are dashed."""
    from .kinds import STANDARD

    return not (record.checkpoint.label in (STANDARD, record.method) or record.method_type == "training")


def curve_label(record: ResultRecord) -> str:
    """Method name, plus the checkpoint when it is not the method's usual one, plus how many
    repeated sequences it forgot when not all of them (`scoring.forget_count`)."""
    label = f"{record.method} on {record.checkpoint.label}" if on_other_checkpoint(record) else record.method
    if record.forget_count:
        label += f", forgetting {record.forget_count}"
    return label


def _record_order(record: ResultRecord) -> tuple:
    return (record.method, record.checkpoint.label, Path(record.path or "").name,
            str(sorted(record.hyperparameters.items())))


def forgetting_of(record: ResultRecord, point) -> float:
    """A point's forgetting on its record's forget span (whole sequence, or the extraction span)."""
    return point.forgetting if record.forget_span == "sequence" else point.forgetting_target


def no_rep_levels(records: list[ResultRecord]) -> list[tuple[str, float]]:
    """(reference state, forgetting needed to reach the no-rep model's loss on the forget span),
    one per distinct "before" state and span: no_rep loss - before loss on that span."""
    levels = {}
    for record in records:
        if record.forget_span == "sequence":
            level = record.no_rep.repeated_loss - record.before.repeated_loss
        else:
            level = record.no_rep.repeated_target_loss - record.before.repeated_target_loss
        span = "sequence" if record.forget_span == "sequence" else "extraction span"
        levels[f"{record.reference.before}, {span}"] = level
    return sorted(levels.items())


TRADEOFF_MAX_DEGRADATION = 1.0    # nats: the x range shown; points beyond are named in the legend


def tradeoff_figure(records: list[ResultRecord], title: str | None = None) -> Figure:
    """Forgetting on the forget span (y) against model degradation (x), one curve per method x checkpoint x
    configuration over its knob (MemSinks: star, gradient-masked: diamond), and the no-rep level as
    a horizontal line -- the layout of MemSinks Fig. 2 / 4c. Up and to the left is better.

    Replicates (seeds) of one configuration are one curve: at each knob value its mean
    degradation, the mean forgetting over seeds, and a band of one standard deviation across
    seeds (seaborn's lineplot, errorbar="sd"). The x axis stops at TRADEOFF_MAX_DEGRADATION so that
    a method that wrecks the model does not flatten the rest."""
    with paper_style():
        fig, ax = subplots(width=DOUBLE_COLUMN, height=3.4)
        labelled = set()
        for replicates in _curves_of(records):
            _draw_curve(ax, replicates, labelled)
        for (reference, level), style in zip(no_rep_levels(records), ("--", ":", "-.", (0, (5, 1)))):
            ax.axhline(level, color="black", linestyle=style, linewidth=1.0,
                       label=f"no-rep level (vs {reference})")
        ax.axvline(0.0, color="0.6", linewidth=0.8, zorder=0)
        shown = [forgetting_of(r, p) for r in records for p in r.points if p.degradation <= TRADEOFF_MAX_DEGRADATION]
        top = max(shown + [level for _, level in no_rep_levels(records)] + [0.1])
        ax.set_xlim(-0.05, TRADEOFF_MAX_DEGRADATION)
        ax.set_ylim(min(shown + [0.0]) - 0.05 * top, 1.1 * top)
        ax.set_xlabel("model degradation (validation loss increase, nats)")
        spans = {r.forget_span for r in records}
        what = "sequence" if spans == {"sequence"} else "extraction-span" if spans == {"extraction"} else "forget-span"
        ax.set_ylabel(f"{what} forgetting\n(repeated loss increase, nats)")
        if title:
            ax.set_title(title, loc="left")      # centred, a long title is clipped
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _curves_of(records: list[ResultRecord]) -> list[list[ResultRecord]]:
    """Records grouped into curves (method x checkpoint x configuration), in a stable order."""
    groups: dict[tuple, list[ResultRecord]] = {}
    for record in sorted(records, key=_record_order):
        groups.setdefault((record.method, record.checkpoint.label, record.configuration()), []).append(record)
    return list(groups.values())


def _draw_curve(ax, replicates: list[ResultRecord], labelled: set) -> None:
    import pandas as pd
    import seaborn as sns

    first = replicates[0]
    by_knob: dict = {}
    for record in replicates:
        for point in record.points:
            by_knob.setdefault(point.knob, []).append(point)
    rows = []
    for knob in sorted(by_knob):
        points = by_knob[knob]
        x = sum(p.degradation for p in points) / len(points)
        rows += [{"knob": knob, "degradation": x, "forgetting": forgetting_of(first, p)} for p in points]
    frame = pd.DataFrame(rows)
    label = curve_label(first)
    least = frame["degradation"].min()
    if least > TRADEOFF_MAX_DEGRADATION:
        label += f" (off scale: degradation ≥ {least:.1f})"
    if len({r.seeds.key() for r in replicates}) > 1:
        label += f" ({len(replicates)} seeds)"
    marker = method_marker(first.method, first.method_type)
    dashed = on_other_checkpoint(first)          # a method on another checkpoint than its usual one
    sns.lineplot(data=frame, x="degradation", y="forgetting", estimator="mean", errorbar="sd", sort=False,
                 color=method_color(first.method), marker=marker, markersize=10 if marker == "*" else 5,
                 linestyle="--" if dashed else "-",
                 markeredgewidth=0, label=label if label not in labelled else "_nolegend_", ax=ax,
                 zorder=3 if first.method_type == "training" else 2, err_kws={"alpha": 0.18, "linewidth": 0})
    labelled.add(label)


# --- (b) training curves ---------------------------------------------------------------------

# (metrics key, what the view is, line style) of the repeated-loss lines drawn per kind
REPEATED_VIEWS = {
    "memsinks": (("repeated_loss", "sinks dropped", "-"), ("repeated_loss@own", "own sinks", "--")),
    "gradient-masked": (("repeated_loss", "mem. block dropped", "-"),
                        ("repeated_loss@keep-all", "all kept", "--")),
}
VALIDATION_VIEWS = {"memsinks": "sinks dropped", "gradient-masked": "mem. block dropped"}
KIND_ORDER = ("standard", "standard-no-rep", "gradient-masked", "memsinks")


def _kind_order(kinds) -> list[str]:
    return sorted(kinds, key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), k))


def training_curves_figure(curves: dict[str, list[dict]], title: str | None = None) -> Figure:
    """Validation loss (left) and repeated-sequence loss (right) over training steps, one colour
    per checkpoint kind; `curves[kind]` is its metrics.jsonl rows ({step, val_loss, ...})."""
    with paper_style():
        fig, (val_ax, rep_ax) = subplots(1, 2, width=DOUBLE_COLUMN, height=4.2, sharex=True)
        for kind in _kind_order(curves):
            rows = sorted(curves[kind], key=lambda r: r["step"])
            _line(val_ax, rows, "val_loss", kind, VALIDATION_VIEWS.get(kind, ""), "-")
            for key, view, style in REPEATED_VIEWS.get(kind, (("repeated_loss", "", "-"),)):
                _line(rep_ax, rows, key, kind, view, style)
        val_ax.set_ylabel("validation loss")
        rep_ax.set_ylabel("repeated-sequence loss")
        for ax in (val_ax, rep_ax):
            ax.set_yscale("log")          # a wrecked view (gradient-masked dropout) must not flatten the rest
        for ax in (val_ax, rep_ax):
            ax.set_xlabel("training step")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
        if title:
            fig.suptitle(title)
    return fig


def _line(ax, rows: list[dict], key: str, kind: str, view: str, style) -> None:
    points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    if points:
        ax.plot(*zip(*points), color=method_color(kind), linestyle=style,
                label=f"{kind} ({view})" if view else kind)


# --- (c) sweeps ------------------------------------------------------------------------------

SWEEP_PANELS = (("validation loss", ("val_loss",)),
                ("repeated-sequence loss", ("repeated_loss", "repeated_loss@own")))
SWEEP_STYLES = ("-", "--", ":", "-.")


def sweep_figure(pairs: list[tuple[float, dict]], parameter: str, panels=SWEEP_PANELS,
                 method: str = "memsinks", references: dict[str, float] | None = None) -> Figure:
    """One panel per metric group against a swept hyperparameter (MemSinks p, ID noise d, ...);
    `pairs` are (value, metrics); `references` draws labelled horizontal lines on the first panel
    (e.g. the standard model's validation loss)."""
    pairs = sorted(pairs, key=lambda pair: pair[0])
    with paper_style():
        fig, axes = subplots(1, len(panels), width=SINGLE_COLUMN * len(panels), height=2.6)
        for ax, (ylabel, keys) in zip(_as_list(axes), panels):
            for key, style in zip(keys, SWEEP_STYLES):
                found = [(value, metrics[key]) for value, metrics in pairs if metrics.get(key) is not None]
                if found:
                    ax.plot(*zip(*found), color=method_color(method), linestyle=style, marker="o", label=key)
            ax.set_xlabel(parameter)
            ax.set_ylabel(ylabel)
            _legend(ax)
        for (label, value), style in zip(sorted((references or {}).items()), SWEEP_STYLES[1:]):
            _as_list(axes)[0].axhline(value, color="black", linestyle=style, linewidth=1.0, label=label)
        if references:
            _legend(_as_list(axes)[0])
    return fig


def _legend(ax, **kwargs) -> None:
    """A legend only where something is labelled (an empty one warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _as_list(axes) -> list:
    return list(axes.flat) if hasattr(axes, "flat") else [axes]


# --- (d) learning/forgetting dynamics of one repeated sequence (MemSinks Fig. 7) --------------

def dynamics_figure(traces: dict[str, list[dict]], title: str | None = None) -> Figure:
    """Training loss of one repeated sequence at each of its appearances, per checkpoint kind;
    `traces[kind]` are repeated_trace.jsonl rows ({step, sequence, loss}) of sequence 0."""
    with paper_style():
        fig, ax = subplots(1, 1, width=DOUBLE_COLUMN * 0.6, height=2.6)
        for kind in _kind_order(traces):
            rows = sorted(traces[kind], key=lambda r: r["step"])
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], color=method_color(kind),
                    marker=".", linewidth=1.0, label=kind)
        ax.set_xlabel("training step")
        ax.set_ylabel("training loss of the story")
        ax.set_yscale("log")
        _legend(ax)
        if title:
            ax.set_title(title)
    return fig


# --- (e) privacy and robustness at each row's chosen point ------------------------------------

def roc_points(members, nonmembers) -> tuple[list[float], list[float]]:
    """(false-positive rates, true-positive rates) of "score >= threshold means member", over every
    distinct threshold from the highest score down; ties move both rates in one step."""
    import numpy as np

    members, nonmembers = np.asarray(members, float), np.asarray(nonmembers, float)
    thresholds = np.unique(np.concatenate([members, nonmembers]))[::-1]
    fpr = [0.0] + [float((nonmembers >= t).mean()) for t in thresholds]
    tpr = [0.0] + [float((members >= t).mean()) for t in thresholds]
    return fpr, tpr


def chosen_point(record: ResultRecord):
    """The point a record's robustness was measured at (its best gap closed within the primary
    budget), or None when no point stays within it."""
    robustness = (record.extras or {}).get("robustness")
    if not robustness:
        return None
    return next((p for p in record.points if p.knob == robustness["knob"]), None)


def robustness_figure(rows: list[list[ResultRecord]], title: str | None = None) -> Figure:
    """(a) membership inference: ROC of the headline attack (Min-K%++), forget set against
    never-seen held-out sequences, for the unedited model, the never-seen model and each row at
    its chosen point (first seed drawn; the label gives the mean AUROC over seeds). The diagonal is
    chance; a model that forgot sits on it, one that memorizes bends to the top left.
    (b) relearning: forget-span loss of the held-back half of the forget set after fine-tuning on the other
    half for 0..N steps, mean and one standard deviation over seeds; the memorizing model's loss
    and the never-seen model's relearning curve for reference. A removal that holds stays high."""
    import numpy as np

    from .privacy import HEADLINE_ATTACK

    with paper_style():
        fig, (roc, relearn) = subplots(1, 2, width=DOUBLE_COLUMN, height=3.0)
        roc.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle=":", label="chance")
        candidates = sorted((r for group in rows for r in group if r.before.per_sequence is not None
                             and r.before.per_sequence.mia_repeated),
                            key=lambda r: r.reference.before != "standard")      # the standard model first
        first = candidates[0] if candidates else None
        drawn_reference = False
        for group in rows:
            seeds = [r for r in group if chosen_point(r) is not None and chosen_point(r).per_sequence is not None
                     and chosen_point(r).per_sequence.mia_repeated]
            if not seeds:
                continue
            record, point = seeds[0], chosen_point(seeds[0])
            aurocs = [chosen_point(r).mia_auroc[HEADLINE_ATTACK] for r in seeds if chosen_point(r).mia_auroc]
            label = f"{curve_label(record)} ({np.mean(aurocs):.2f})"
            roc.plot(*roc_points(point.per_sequence.mia_repeated, point.per_sequence.mia_validation),
                     color=method_color(record.method), label=label, drawstyle="steps-post")
            _relearning_line(relearn, seeds, curve_label(record), method_color(record.method))
            if not drawn_reference:
                _relearning_references(relearn, seeds)
                drawn_reference = True
        if first is not None:
            for state, name, color in ((first.before, f"unedited {first.reference.before}", "black"),
                                       (first.never_seen, "never-seen model", METHOD_COLORS["standard-no-rep"])):
                if state is None or state.per_sequence is None or not state.per_sequence.mia_repeated:
                    continue
                auroc = (state.mia_auroc or {}).get(HEADLINE_ATTACK, float("nan"))
                roc.plot(*roc_points(state.per_sequence.mia_repeated, state.per_sequence.mia_validation),
                         color=color, linestyle="--", label=f"{name} ({auroc:.2f})", drawstyle="steps-post")
        roc.set_xlim(0, 1)
        roc.set_ylim(0, 1.01)
        roc.set_xlabel("false-positive rate (held-out)")
        roc.set_ylabel("true-positive rate (forget set)")
        roc.set_title("(a) membership inference, Min-K%++ (AUROC)")
        relearn.set_xlabel("relearning steps on half of the forget set")
        relearn.set_ylabel("forget-span loss on the other half (nats)")
        relearn.set_title("(b) relearning")
        roc.legend(loc="lower right", fontsize=7)
        relearn.legend(loc="upper right", fontsize=7)
        if title:
            fig.suptitle(title)
    return fig


def _span_key(record: ResultRecord, key: str, where: dict) -> str:
    """`key` (a whole-sequence loss) on the record's forget span (robustness.span_key), or the whole
    where the record was made before robustness kept the extraction span's values."""
    from .robustness import span_key

    target = span_key(key, record.forget_span)
    return target if target in where else key


def _relearning_curve(record: ResultRecord, key: str) -> list[tuple[int, float]]:
    robustness = record.extras["robustness"]
    base = robustness["relearning_base"]
    curve = [(0, base[_span_key(record, "after_removal_loss", base)])] if key == "loss" else []
    return curve + sorted((int(steps), entry[_span_key(record, key, entry)])
                          for steps, entry in robustness["relearning"].items() if entry.get(key) is not None)


def _relearning_line(ax, seeds: list[ResultRecord], label: str, color: str, key: str = "loss", **style) -> None:
    import numpy as np

    curves = [dict(_relearning_curve(r, key)) for r in seeds if (r.extras["robustness"].get("relearning"))]
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    if not steps:
        return
    values = np.array([[c[s] for s in steps] for c in curves])
    mean, sd = values.mean(axis=0), values.std(axis=0)
    ax.plot(steps, mean, color=color, marker="o", markersize=3, label=label, **style)
    if len(curves) > 1:
        ax.fill_between(steps, mean - sd, mean + sd, color=color, alpha=0.18, linewidth=0)


def _relearning_references(ax, seeds: list[ResultRecord]) -> None:
    memorizing = [base[_span_key(r, "memorizing_loss", base)] for r in seeds
                  if (base := r.extras["robustness"].get("relearning_base"))]
    if memorizing:
        ax.axhline(sum(memorizing) / len(memorizing), color="black", linestyle="--", linewidth=1.0,
                   label="memorizing model")
    if any("never_seen_loss" in e for r in seeds for e in r.extras["robustness"].get("relearning", {}).values()):
        _relearning_line(ax, seeds, "never-seen model", METHOD_COLORS["standard-no-rep"], key="never_seen_loss",
                         linestyle=":")


# --- (f) the Pareto front: best gap closed within every degradation budget ----------------------

PARETO_BUDGETS = 51     # budgets drawn between 0 and AUC_MAX_DEGRADATION


def pareto_figure(rows: list[list[ResultRecord]], budgets_marked=(0.02, 0.05, 0.1, 0.2), primary: float = 0.05,
                  title: str | None = None) -> Figure:
    """For each leaderboard row (a configuration and its seeds): the largest gap closed (capped at
    1) within a degradation budget x, for x from 0 to the Pareto-AUC width: the front whose
    normalised area is the leaderboard's Pareto AUC, so a reader sees whether a ranking holds
    across budgets or swaps. Line: the mean over seeds of the stored curves; band: the 95%
    bootstrap interval over seeds and sequences (the leaderboard's intervals). Dotted verticals:
    the leaderboard's budgets, the primary one solid."""
    import numpy as np
    import pandas as pd
    import seaborn as sns

    from .intervals import LEVEL, best_within, draws_of, point_value
    from .metrics import AUC_MAX_DEGRADATION

    grid = np.linspace(0.0, AUC_MAX_DEGRADATION, PARETO_BUDGETS)
    statistics = {x: (lambda gap, target, degradation, *_, x=x: best_within(gap, degradation, x)) for x in grid}
    with paper_style():
        fig, ax = subplots(width=DOUBLE_COLUMN, height=3.2)
        for budget in budgets_marked:
            ax.axvline(budget, color="0.5", linewidth=1.0 if budget == primary else 0.6,
                       linestyle="-" if budget == primary else ":", zorder=0)
        for replicates in rows:
            first = replicates[0]
            color = method_color(first.method)
            mean = [point_value(replicates, statistics[x]) for x in grid]
            draws = draws_of(replicates, statistics)
            label = curve_label(first) + (f" ({len(replicates)} seeds)" if len(replicates) > 1 else "")
            ax.step(grid, mean, where="post", color=color, label=label,
                    linestyle="--" if on_other_checkpoint(first) else "-")
            if not all(np.allclose(draws[x], draws[x][0]) for x in grid):
                # the band: seaborn's percentile interval of the bootstrap draws at each budget (the
                # line itself is the mean of the stored curves, drawn above)
                frame = pd.DataFrame({"budget": np.repeat(grid, len(draws[grid[0]])),
                                      "gap": np.concatenate([draws[x] for x in grid])})
                sns.lineplot(data=frame, x="budget", y="gap", estimator="mean", errorbar=("pi", LEVEL * 100),
                             color=color, linewidth=0, legend=False, ax=ax,
                             err_kws={"step": "post", "alpha": 0.15, "linewidth": 0})
        ax.set_xlim(0, AUC_MAX_DEGRADATION)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("degradation budget (validation loss increase, nats)")
        ax.set_ylabel("best memorization gap closed\nwithin the budget")
        if title:
            ax.set_title(title, loc="left")      # centred, a long title is clipped
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# --- (g) collateral damage: the forget set's neighbours against held-out text -------------------

NEIGHBOUR_MAX_DEGRADATION = 0.5   # nats of validation degradation shown


def neighbour_figure(rows: list[list[ResultRecord]], title: str | None = None) -> Figure:
    """For each leaderboard row (a configuration and its seeds), over its knob: the degradation on
    the forget set's neighbours (neighbours.py: text built like each forget sequence but not
    memorized) against the validation degradation, the mean over seeds with a band of one standard
    deviation (seaborn). Above the diagonal a method hurts text like the memorized text more than
    text in general: collateral damage the validation loss hides."""
    import pandas as pd
    import seaborn as sns

    with paper_style():
        fig, ax = subplots(width=DOUBLE_COLUMN, height=3.2)
        ax.plot([0, NEIGHBOUR_MAX_DEGRADATION], [0, NEIGHBOUR_MAX_DEGRADATION], color="0.5", linewidth=0.8,
                linestyle=":", label="neighbours = validation", zorder=0)
        drawn = []
        counts = sorted({replicates[0].forget_count or 10**9 for replicates in rows})   # all of them last
        styles = {count: ("-", "--", ":", "-.")[i % 4] for i, count in enumerate(reversed(counts))}
        for replicates in rows:
            first = replicates[0]
            by_knob: dict = {}
            for record in replicates:
                for point in record.points:
                    if point.neighbour_degradation is not None:
                        by_knob.setdefault(point.knob, []).append(point)
            rows_of = []
            for knob in sorted(by_knob):
                points = by_knob[knob]
                x = sum(p.degradation for p in points) / len(points)
                if x <= NEIGHBOUR_MAX_DEGRADATION:
                    rows_of += [{"degradation": x, "neighbours": p.neighbour_degradation} for p in points]
            if not rows_of:
                continue
            label = curve_label(first) + (f" ({len(replicates)} seeds)" if len(replicates) > 1 else "")
            sns.lineplot(data=pd.DataFrame(rows_of), x="degradation", y="neighbours", estimator="mean", errorbar="sd",
                         sort=True, color=method_color(first.method), marker=method_marker(first.method, first.method_type),
                         linestyle=styles[first.forget_count or 10**9],
                         markeredgewidth=0, label=label, ax=ax, err_kws={"alpha": 0.15, "linewidth": 0})
            drawn.append(label)
        ax.set_xlim(-0.02, NEIGHBOUR_MAX_DEGRADATION)
        ax.set_xlabel("validation degradation (nats)")
        ax.set_ylabel("degradation on the forget set's\nneighbours (nats)")
        if title:
            ax.set_title(title, loc="left")      # centred, a long title is clipped
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# --- (h) localization against ground truth: precision-recall curves ----------------------------

def localization_pr_figure(report: dict, title: str | None = None) -> Figure:
    """Precision against recall of each localizer's ranking of the MLP neurons, with a forget
    sequence's own MemSinks sinks as the positives (localization.py): over all neurons (left) and
    within the sink pool (right), the mean over forget-sequence groups of the interpolated
    precision, with the chance level (the positives' share) dotted; AP (all / pool) in the legend."""
    from .localization import RECALL_GRID

    with paper_style():
        fig, axes = subplots(ncols=2, width=DOUBLE_COLUMN, height=3.3)
        scopes = (("all", "all MLP neurons"), ("pool", "within the sink pool"))
        for ax, (scope, label) in zip(axes, scopes):
            for name, found in report["methods"].items():
                summary = found["summary"]
                if f"pr_{scope}" not in summary:
                    continue
                ax.plot(RECALL_GRID, summary[f"pr_{scope}"], color=method_color(name), label=name,
                        drawstyle="steps-post")
            first = next(iter(report["methods"].values()))["summary"]
            ax.axhline(first[f"chance_{scope}"]["mean"], color="0.5", linestyle=":", linewidth=0.8, label="chance")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("recall of own sinks")
            ax.set_title(label)
        # one legend below both panels (every corner of a panel can hold a curve), with each
        # method's average precision in both scopes
        handles, names = axes[0].get_legend_handles_labels()
        labels = []
        for name in names:
            summary = report["methods"].get(name, {}).get("summary", {})
            aps = [summary[f"ap_{scope}"]["mean"] for scope, _ in scopes if f"ap_{scope}" in summary]
            labels.append(f"{name} (AP {' / '.join(f'{ap:.3f}' for ap in aps)})" if aps else name)
        fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize="small", frameon=False)
        axes[0].set_ylabel("precision")
        if title:
            fig.suptitle(title)
    return fig
