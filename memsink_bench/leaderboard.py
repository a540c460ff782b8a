"""Leaderboard tables from result records: one row per method x checkpoint x setting.

Every gap column scores the record's forget span (`scoring.forget_span`: the whole sequence on
ts-repetition, the canary on ts-canary), the span its method was asked to forget; the other span
(the continuation after the prefix, or the whole sequence) is the secondary `other span` column.
Rows forgetting different spans never share a group.

The primary column is the largest memorization gap closed (capped at 1) within 0.05 nats of model
degradation: the budget at which a deployed model is still "the same model" (validation loss up
by about 5% of the cpu preset's 0.9 nats), and the MemSinks paper's own operating regime. The
same statistic at 0.02, 0.1 and 0.2 nats and the normalised area under the Pareto front (budgets
0-0.5 nats) show whether a ranking survives the budget; a row whose rank among the rows of its
group changes across the four budgets is marked `↕`, and a row whose curve stops before 0.2 nats
while its gap closed is still rising (its last step added more than 0.005 and more than a tenth
of its value) is marked `⊣` (its higher budgets may understate it). Every
gap number is a mean over seeds with a 95% bootstrap interval over seeds and forget sequences
(`intervals.py`); the columns read at each seed's chosen point (exact match, degradations,
PrivLeak, extraction, robustness) have a bootstrap interval over seeds.

Besides the gap to the no-rep model (the dedup level), two other reference levels: `gap to val`,
the MemSinks paper's gap to the model's own validation loss (ts-repetition only: for a canary it
means nothing), and `gap to never-seen`, to the loss of the model trained without the forget
sequences (exact unlearning's level; for a canary, the level it is measured to instead).

Rows fall into groups whose before-states differ, so they are only compared within a group:
post-hoc methods on a checkpoint (measured from that checkpoint), and training-time methods
(measured from the standard checkpoint they replace). Within a group, each post-hoc row is
compared with its random control on the same checkpoint (random-neurons for localizers,
random-sparse-ft for editors), paired by training seed; a row that cannot be told apart from its
control is marked `≈ control`. Every row is also compared with the top row of its group (`vs
top`, paired the same way; `tied` when the interval of the difference contains 0), and each
training-time row with the top post-hoc row on the checkpoint it replaces (`vs post-hoc top`):
both are measured from that checkpoint at each seed, so this one comparison crosses the groups.

Records that differ only in their seeds are replicates of one configuration; a run repeated with
the same seeds counts once. Where a row has several configurations (a hyperparameter grid), the
one with the best mean is shown and the number of configurations noted; seeds are never picked
from. Records of different corpora never share a table: each table is for one (setting, preset,
corpus hash), and mixing is an error unless the user picks one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import UserError
from .intervals import best_within, intervals, paired_difference, pareto_auc, point_value, seed_interval
from .metrics import AUC_MAX_DEGRADATION, CLOSER_TO_ZERO, DIRECTIONS, best_point, capped
from .protocol import REPORTED, Protocol, protocol_of, seed_of
from .record import ResultRecord, load_records  # noqa: F401  (load_records: the leaderboard's reader)

BUDGETS_SHOWN = (0.02, 0.05, 0.1, 0.2)
PRIMARY_BUDGET = 0.05
RANK_BY = "gap closed @0.05"
SD_COLUMN = "sd @0.05"
CONTROLS = {"localizer": "random-neurons", "editor": "random-sparse-ft"}
# a curve whose last step adds less gap closed than this much, or than this share of where it is,
# has flattened out
SATURATED, SATURATED_SHARE = 0.005, 0.1


def _gap_statistic(budget: float, target: bool = False):
    return lambda gap, target_gap, degradation, *_: best_within(target_gap if target else gap, degradation, budget)


def _level_statistic(budget: float, level: str):
    """The gap closed to another reference level within the budget: `paper` (the MemSinks paper's,
    to the model's own validation loss; none for canaries and paragraphs) or `never` (to the
    never-seen model's loss on the forget span; none without a never-seen model). NaN where the
    record has no such level."""
    def statistic(gap, other, degradation, paper, never):
        curve = paper if level == "paper" else never
        if np.isnan(curve).all():
            return np.full(curve.shape[0], np.nan)
        return best_within(curve, degradation, budget)
    return statistic


STATISTICS = {
    **{f"gap closed @{b}": _gap_statistic(b) for b in BUDGETS_SHOWN},
    "Pareto AUC": lambda gap, target, degradation, *_: pareto_auc(gap, degradation, AUC_MAX_DEGRADATION),
    "other span gap @0.05": _gap_statistic(PRIMARY_BUDGET, target=True),
    "gap to val @0.05": _level_statistic(PRIMARY_BUDGET, "paper"),
    "gap to never-seen @0.05": _level_statistic(PRIMARY_BUDGET, "never"),
}
# (column, metric whose direction gives the arrow, format) of the numeric columns, in display order
COLUMNS = [*[(f"gap closed @{b}", "gap_closed", "{:.3f}") for b in BUDGETS_SHOWN],
           ("Pareto AUC", "auc", "{:.3f}"),
           ("other span gap @0.05", "gap_closed_target", "{:.3f}"),
           ("gap to val @0.05", "gap_closed", "{:.3f}"),
           ("gap to never-seen @0.05", "gap_closed", "{:.3f}"),
           ("EM rep. before", None, "{:.1f}"),
           ("EM rep. @0.05", "em_repeated", "{:.1f}"),
           ("val degr. @0.05", "degradation", "{:.3f}"),
           ("neighbour degr. @0.05", "neighbour_degradation", "{:.3f}"),
           ("kept rep. forgetting @0.05", "other_forgetting", "{:.3f}"),
           ("PrivLeak @0.05", "privleak", "{:+.2f}"),
           ("extracted@100 @0.05", "extraction_rate@100", "{:.2f}"),
           ("recovered @5 relearn steps", "robustness.relearning.recovered_share", "{:.2f}"),
           ("forgetting @4 bits", "robustness.quantization.forgetting", "{:.3f}"),
           ("method s", "method_seconds", "{:.1f}"),
           ("train s", None, "{:.0f}")]


def _em_within(record: ResultRecord, budget: float) -> float:
    """Exact match on repeated sequences at the point closing the most gap within the budget."""
    chosen = best_point(record.points, record.forget_key, budget)
    return record.before.em_repeated if chosen is None else chosen.em_repeated


def _per_seed(replicates: list[ResultRecord], value) -> list[float] | None:
    """`value(record)` for every seed; None when any seed has none (a record made before the
    metric existed, or a value that is not defined there)."""
    values = [value(record) for record in replicates]
    return None if any(v is None for v in values) else values


def _at_chosen(value):
    """A record's `value(point)` at its point closing the most gap within the primary budget."""
    def of(record: ResultRecord):
        chosen = best_point(record.points, record.forget_key, PRIMARY_BUDGET)
        return value(chosen) if chosen is not None else None
    return of


def _robustness(record: ResultRecord, *path: str):
    """A nested value of the record's robustness at its chosen point, or None."""
    value = (record.extras or {}).get("robustness")
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _on_span(record: ResultRecord, entry: dict | None, key: str) -> float | None:
    """`entry`'s `key` on the record's forget span (None for a record made before robustness kept
    the extraction span's values)."""
    from .robustness import span_key

    return None if entry is None else entry.get(span_key(key, record.forget_span))


def _quantized(bits: str):
    """A record's forget-span forgetting after quantizing to `bits`."""
    return lambda record: _on_span(record, _robustness(record, "quantization", bits), "forgetting")


def _recovered(steps: str):
    """A record's share of the removal relearning undid after `steps` steps on the forget span, from
    the stored losses; None when its removal moved the held-back half's loss by less than
    MIN_REMOVAL nats (its share would be noise divided by almost nothing) or it has no relearning."""
    from .robustness import MIN_REMOVAL, recovered_share

    def of(record: ResultRecord):
        base, point = _robustness(record, "relearning_base"), _robustness(record, "relearning", steps)
        losses = (_on_span(record, base, "memorizing_loss"), _on_span(record, base, "after_removal_loss"),
                  _on_span(record, point, "loss"))
        return None if None in losses else recovered_share(*losses, MIN_REMOVAL)
    return of


def _short_curve(record: ResultRecord) -> bool:
    """Does the record's curve stop before the largest budget while its gap closed is still
    rising (neither reaching BUDGETS_SHOWN[-1] nats of degradation nor flattening out)?"""
    points = sorted(record.points, key=lambda p: p.knob)
    if record.method_type == "training" or len(points) < 2 or max(p.degradation for p in points) >= BUDGETS_SHOWN[-1]:
        return False                    # a training-time curve ends at full removal: it cannot go on
    last, previous = (capped(getattr(p, record.forget_key) or 0.0) for p in points[-2:][::-1])
    return last - previous > max(SATURATED, SATURATED_SHARE * abs(last))


def corpus_family(record: ResultRecord) -> str:
    """What must not mix in one table: the documents' content hash, except for the generated
    synthetic stories, whose documents are a fresh draw for every data seed (replicates with their
    own data seeds share the generator, not the documents)."""
    return record.corpus if record.corpus == "synthetic-stories" else record.corpus_hash[:12]


def span_label(record: ResultRecord) -> str:
    """The forget span in words: sequence, canary (ts-canary's extraction span) or continuation."""
    if record.forget_span == "sequence":
        return "sequence"
    return "canary" if ((record.config or {}).get("data") or {}).get("canary_length") else "continuation"


def group_of(record: ResultRecord, post_hoc_on: str | None = None) -> str:
    """Rows are compared only within a group: they share a before-state, a forget span and a
    forget set (all repeated sequences, or the first N of them). `post_hoc_on`: the post-hoc group
    on that checkpoint with the record's span and forget set instead."""
    what = f"forgetting the {span_label(record)}"
    if record.forget_count:
        what += f" of {record.forget_count} sequence{'s' if record.forget_count > 1 else ''}"
    if post_hoc_on is None and record.method_type == "training":
        return f"training-time, vs {record.reference.before}, {what}"
    return f"post-hoc on {post_hoc_on or record.checkpoint.label}, {what}"


def needs_of(method: str) -> str:
    """What the method needs (its class's `needs`), for methods this installation can load."""
    from .methods.registry import registry

    try:
        return registry().get(method).load().needs
    except Exception:           # a plugin that is not installed here
        return "-"


def distinct_replicates(records: list[ResultRecord]) -> list[ResultRecord]:
    """One record per (configuration, seeds): a run repeated with the same seeds (a copy, a rerun
    with --force elsewhere) is one replicate, the newest kept, so it cannot shrink a deviation."""
    newest: dict[tuple, ResultRecord] = {}
    for record in records:
        key = (record.setting, record.preset, record.method, record.checkpoint.label, record.configuration(),
               record.seeds.key())
        if key not in newest or record.created > newest[key].created:
            newest[key] = record
    return list(newest.values())


def _replicate_groups(records, setting, preset) -> dict[tuple, list[ResultRecord]]:
    groups: dict[tuple, list[ResultRecord]] = {}
    for record in distinct_replicates(records):
        if setting and record.setting != setting or preset and record.preset != preset:
            continue
        key = (record.setting, record.preset, record.corpus, corpus_family(record), group_of(record),
               record.method, record.checkpoint.label, record.configuration())
        groups.setdefault(key, []).append(record)
    return groups


def _configurations_by_row(groups: dict[tuple, list[ResultRecord]]) -> dict[tuple, dict[str, list[ResultRecord]]]:
    """_replicate_groups' groups regrouped by leaderboard row (setting, preset, group, method,
    checkpoint): each row's configurations and their replicates."""
    rows: dict[tuple, dict[str, list[ResultRecord]]] = {}
    for (setting, preset, _, _, group, method, checkpoint, configuration), replicates in groups.items():
        rows.setdefault((setting, preset, group, method, checkpoint), {})[configuration] = replicates
    return rows


def _row(key: tuple, replicates: list[ResultRecord], with_intervals: bool = True) -> dict:
    setting, preset, corpus, corpus_hash, group, method, checkpoint, configuration = key
    row = {"setting": setting, "preset": preset, "corpus": corpus, "corpus_hash": corpus_hash, "group": group,
           "method": method, "checkpoint": checkpoint, "_configuration": configuration, "_records": replicates}
    for name, statistic in STATISTICS.items():
        row[name] = point_value(replicates, statistic)
    per_seed = pd.Series([point_value([r], STATISTICS[RANK_BY]) for r in replicates])
    row[SD_COLUMN] = per_seed.std(ddof=1) if len(replicates) > 1 else float("nan")
    row["EM rep. before"] = sum(r.before.em_repeated for r in replicates) / len(replicates)
    per_seed_columns = {
        "EM rep. @0.05": lambda r: _em_within(r, PRIMARY_BUDGET),
        "val degr. @0.05": _at_chosen(lambda p: p.degradation),
        "neighbour degr. @0.05": _at_chosen(lambda p: p.neighbour_degradation),
        "kept rep. forgetting @0.05": _at_chosen(lambda p: p.other_forgetting),
        "PrivLeak @0.05": _at_chosen(lambda p: p.privleak),
        "extracted@100 @0.05": _at_chosen(lambda p: (p.extraction or {}).get("rate@100")),
        "recovered @5 relearn steps": _recovered("5"),
        "forgetting @4 bits": _quantized("4"),
    }
    row["_seed_bands"] = {}
    for name, value in per_seed_columns.items():
        values = _per_seed(replicates, value)
        row[name] = float("nan") if values is None else float(np.mean(values))
        row["_seed_bands"][name] = None if values is None or not with_intervals else seed_interval(values)
    row["_short"] = any(_short_curve(r) for r in replicates)
    row["method s"] = sum(r.timings.method_seconds for r in replicates) / len(replicates)
    training = replicates[0].method_type == "training"
    row["train s"] = sum(r.checkpoint.train_seconds for r in replicates) / len(replicates) if training else float("nan")
    row["seeds"] = len({r.seeds.key() for r in replicates})
    return row


def leaderboard_frame(records: list[ResultRecord], setting: str | None = None, preset: str | None = None,
                      with_intervals: bool = True, protocol: Protocol | None = None) -> pd.DataFrame:
    """One row per (setting, preset, group, method, checkpoint): its chosen configuration's seeds.
    `protocol` (default: the records' results directory's `protocol.yaml`, if any) chooses each
    row's configuration on selection seeds and reports it on the others (protocol.py)."""
    protocol = protocol if protocol is not None else protocol_of(records)
    selection = [r for r in records if protocol is not None and protocol.selects(r)]
    reported = [r for r in records if protocol is None or not protocol.selects(r)]
    groups = _replicate_groups(reported, setting, preset)
    if not groups:
        raise UserError("no result records match", "run `memsink-bench run --method ... --setting ...` first")
    frame = pd.DataFrame([_row(key, replicates, with_intervals) for key, replicates in groups.items()])
    selection_groups = _replicate_groups(selection, setting, preset)
    frame = _choice_columns(frame, selection_groups, protocol)
    corpora = frame.groupby(["setting", "preset"])["corpus_hash"].nunique()
    if (corpora > 1).any():
        mixed = corpora[corpora > 1].index[0]
        raise UserError(f"records for {mixed[0]} ({mixed[1]}) come from {corpora.max()} different corpora",
                        "move records of other corpora out of the results directory; results must not mix")
    key = ["setting", "preset", "group", "method", "checkpoint"]
    frame["configs"] = frame.groupby(key)["_configuration"].transform("size")
    tried = _configurations_by_row(selection_groups)   # under a protocol: what its selection seeds tried
    if tried:
        frame["configs"] = [max(count, len(tried.get(tuple(row), {}))) for count, row in
                            zip(frame["configs"], frame[key].itertuples(index=False, name=None))]
    # the best selection score (protocol) or mean; ties go to the larger AUC, then to the
    # configuration's text (never to file order)
    frame = (frame.sort_values(["_choose", "_choose_auc", "_configuration"], ascending=[False, False, True],
                               kind="stable").drop_duplicates(key))
    frame = frame.sort_values(["setting", "preset", "group", RANK_BY, "Pareto AUC"],
                              ascending=[True, True, True, False, False], kind="stable").reset_index(drop=True)
    frame["flags"] = [f"{flag} ⊣".strip() if short else flag for flag, short in zip(_swap_flags(frame), frame["_short"])]
    frame["needs"] = [needs_of(m) for m in frame["method"]]
    frame["vs control"], frame["_control_close"] = zip(*[_versus_control(frame, i) for i in range(len(frame))])
    frame["vs top"] = [_versus_top(frame, i) for i in range(len(frame))]
    frame["vs post-hoc top"] = [_versus_post_hoc(frame, i) for i in range(len(frame))]
    frame.loc[frame["_control_close"], "flags"] = [f"{f} ≈ control".strip() for f in frame.loc[frame["_control_close"], "flags"]]
    if with_intervals:
        frame["_intervals"] = [intervals(r, STATISTICS) for r in frame["_records"]]
    else:
        frame["_intervals"] = [{} for _ in range(len(frame))]
    return frame.drop(columns=["_configuration", "_control_close", "_choose", "_choose_auc", "_short"])


def _choice_columns(frame: pd.DataFrame, selection: dict[tuple, list[ResultRecord]],
                    protocol: Protocol | None) -> pd.DataFrame:
    """`_choose`/`_choose_auc`: what picks a row's configuration (its selection-seed score under a
    protocol, else its reported mean), and `selected on` saying which. Within a row, once any
    configuration has selection runs, a configuration without them cannot be chosen."""
    columns = ["setting", "preset", "corpus", "corpus_hash", "group", "method", "checkpoint", "_configuration"]
    keys = list(frame[columns].itertuples(index=False, name=None))
    criterion = STATISTICS[protocol.criterion] if protocol is not None else None
    scores = [(point_value(selection[k], criterion), point_value(selection[k], STATISTICS["Pareto AUC"]))
              if criterion is not None and k in selection else None for k in keys]
    frame["_choose"] = [s[0] if s else v for s, v in zip(scores, frame[RANK_BY])]
    frame["_choose_auc"] = [s[1] if s else v for s, v in zip(scores, frame["Pareto AUC"])]
    frame["selected on"] = [protocol.label() if s else REPORTED for s in scores]
    row_key = ["setting", "preset", "group", "method", "checkpoint"]
    has_selection = frame.groupby(row_key)["selected on"].transform(lambda v: (v != REPORTED).any())
    frame.loc[has_selection & (frame["selected on"] == REPORTED), "_choose"] = float("-inf")
    return frame


def _swap_flags(frame: pd.DataFrame) -> list[str]:
    """`↕` on every row whose rank within its group differs between the budgets shown."""
    flags = [""] * len(frame)
    for _, rows in frame.groupby(["setting", "preset", "group"]).groups.items():
        rows = list(rows)
        ranks = [frame.loc[rows, f"gap closed @{b}"].rank(ascending=False, method="min") for b in BUDGETS_SHOWN]
        for index in rows:
            if len({rank[index] for rank in ranks}) > 1:
                flags[frame.index.get_loc(index)] = "↕"
    return flags


def _primary_by_seed(row) -> dict[int, float]:
    return {seed_of(r): point_value([r], STATISTICS[RANK_BY]) for r in row["_records"]}


def _group_rows(frame: pd.DataFrame, row, group: str | None = None) -> pd.DataFrame:
    """The rows of `row`'s table and group (the rows it may be compared with), or of another group."""
    return frame[(frame["setting"] == row["setting"]) & (frame["preset"] == row["preset"])
                 & (frame["group"] == (group or row["group"]))]


def _tied(band) -> str:
    return " tied" if band is not None and band[0] <= 0 <= band[1] else ""


def _paired(row, other) -> tuple[str, tuple[float, float] | None, int]:
    """(text, 95% interval, common seeds) of `row`'s primary column minus `other`'s, paired by
    training seed; the text says so when the two rows share no seed."""
    difference, band, common = paired_difference(_primary_by_seed(row), _primary_by_seed(other))
    if common == 0:
        return "no common seeds", None, 0
    return f"{difference:+.3f}" + (f" [{band[0]:+.3f}, {band[1]:+.3f}]" if band else f" ({common} seed)"), band, common


def _versus_control(frame: pd.DataFrame, position: int) -> tuple[str, bool]:
    """(primary-column difference to the random control with its interval, cannot be told apart?)."""
    row = frame.iloc[position]
    records = row["_records"]
    control = CONTROLS.get(records[0].method_type)
    if control is None or row["method"] == control:
        return "-", False
    same = _group_rows(frame, row)
    same = same[same["method"] == control]
    if same.empty:
        return "no control run", False
    text, band, common = _paired(row, same.iloc[0])
    if common == 0:
        return text, False
    return text, band is None or band[0] <= 0 <= band[1]


def _versus_top(frame: pd.DataFrame, position: int) -> str:
    """The primary-column difference to the top row of the group, paired by training seed, with its
    interval; `tied` when that interval contains 0 (the two cannot be told apart)."""
    row = frame.iloc[position]
    same = _group_rows(frame, row)
    top = same.iloc[0]                 # the frame is sorted by the primary column within each group
    if top.name == frame.index[position]:
        return "top" if len(same) > 1 else "-"
    text, band, _ = _paired(row, top)
    return text + _tied(band)


def _versus_post_hoc(frame: pd.DataFrame, position: int) -> str:
    """For a training-time row, the primary-column difference to the top post-hoc row on the
    checkpoint it replaces, paired by training seed, naming that row's method: both are measured
    from the same checkpoint of each seed, so this is the comparison the groups otherwise keep
    apart. `tied` when the interval contains 0; `-` for post-hoc rows."""
    row = frame.iloc[position]
    record = row["_records"][0]
    if record.method_type != "training":
        return "-"
    same = _group_rows(frame, row, group_of(record, post_hoc_on=record.reference.before))
    if same.empty:
        return "no post-hoc run"
    top = same.iloc[0]                 # sorted by the primary column within each group
    text, band, _ = _paired(row, top)
    return f"{text} vs {top['method']}{_tied(band)}"


def _arrow(metric: str | None) -> str:
    if metric is None:
        return ""
    if metric in CLOSER_TO_ZERO:
        return " →0"
    return " ↑" if DIRECTIONS.get(metric, True) else " ↓"


def render(frame: pd.DataFrame, fmt: str) -> str:
    shown = frame.copy()
    for name, _, spec in [*COLUMNS, (SD_COLUMN, None, "{:.3f}")]:
        def cell(value, bands, name=name, spec=spec):
            if value is None or pd.isna(value):
                return "-"
            band = bands.get(name)
            return spec.format(value) + (f" [{spec.format(band[0])}, {spec.format(band[1])}]" if band else "")
        shown[name] = [cell(v, {**s, **b}) for v, b, s in zip(shown[name], shown["_intervals"], shown["_seed_bands"])]
    order = ["setting", "preset", "corpus", "group", "method", "checkpoint", *[c for c, _, _ in COLUMNS],
             SD_COLUMN, "seeds", "configs", "selected on", "vs control", "vs top", "vs post-hoc top", "needs", "flags"]
    shown = shown[order].rename(columns={name: name + _arrow(metric) for name, metric, _ in COLUMNS})
    if fmt == "csv":
        return shown.to_csv(index=False)
    if fmt == "latex":
        return shown.to_latex(index=False, escape=True)
    if fmt == "html":
        return shown.to_html(index=False, border=0, classes="leaderboard")
    if fmt == "md":
        parts = []
        for (setting, preset), table in shown.groupby(["setting", "preset"], sort=True):
            corpus = table["corpus"].iloc[0]
            parts.append(f"### {setting} ({preset} preset, corpus {corpus})\n")
            for group, rows in table.groupby("group", sort=True):
                parts.append(f"#### {group}\n")
                parts.append(rows.drop(columns=["setting", "preset", "corpus", "group"]).to_markdown(index=False))
                parts.append("")
        return "\n".join(parts) + "\n"
    raise UserError(f"unknown format '{fmt}'", "use md, csv, latex or html")


# --- the selection stage of a protocol ----------------------------------------------------------

def _knobs(record: ResultRecord) -> dict[str, object]:
    """What a configuration is, flattened (`method.lr`, `memsinks.sink_fraction`, ...), without seeds."""
    from .checkpoints import NOT_IN_KEY
    from .tracking import flat as flatten

    flat = flatten({"method": record.hyperparameters, **record.config})
    drop = {"train.seed", "data.seed", *(f"train.{name}" for name in NOT_IN_KEY)}
    return {key: value for key, value in flat.items() if key not in drop}


def configuration_labels(configurations: dict[str, ResultRecord]) -> dict[str, str]:
    """A short label per configuration of one row: the fields in which its configurations differ."""
    knobs = {key: _knobs(record) for key, record in configurations.items()}
    fields = sorted({field for values in knobs.values() for field in values})
    differing = [f for f in fields if len({repr(values.get(f)) for values in knobs.values()}) > 1]
    return {key: ", ".join(f"{f}={values.get(f)}" for f in differing) or "(one configuration)"
            for key, values in knobs.items()}


def selection_frame(records: list[ResultRecord], protocol: Protocol | None = None) -> pd.DataFrame:
    """Every configuration the selection seeds tried, one row each: its criterion per seed and as
    the mean that chose (protocol.choose, as the sweep and the leaderboard choose), its Pareto AUC,
    and whether it was chosen. Empty without a protocol or selection runs."""
    from .protocol import choose

    protocol = protocol if protocol is not None else protocol_of(records)
    if protocol is None:
        return pd.DataFrame()
    rows_of = _configurations_by_row(_replicate_groups([r for r in records if protocol.selects(r)], None, None))
    criterion = STATISTICS[protocol.criterion]
    rows = []
    for (setting, preset, group, method, checkpoint), candidates in sorted(rows_of.items()):
        chosen = choose(candidates, protocol.criterion)
        labels = configuration_labels({key: replicates[0] for key, replicates in candidates.items()})
        for key, replicates in candidates.items():
            per_seed = sorted((seed_of(r), point_value([r], criterion)) for r in replicates)
            rows.append({"setting": setting, "preset": preset, "group": group, "method": method,
                         "checkpoint": checkpoint, "configuration": labels[key], "_configuration": key,
                         "seeds": ", ".join(str(s) for s, _ in per_seed),
                         protocol.criterion: point_value(replicates, criterion),
                         "per seed": ", ".join(f"{v:.3f}" for _, v in per_seed),
                         "Pareto AUC": point_value(replicates, STATISTICS["Pareto AUC"]),
                         "chosen": key == chosen})
    return pd.DataFrame(rows)


def render_selection(frame: pd.DataFrame, protocol: Protocol) -> str:
    """selection.md: per setting and preset, every row's tried configurations, the chosen one marked."""
    lines = [f"# The selection stage: configurations chosen on {protocol.label()}\n",
             (f"Each configuration's `{protocol.criterion}` on every selection seed and its mean, which chose "
              "(ties: the larger Pareto AUC); the leaderboard reports only the chosen configuration (✓), on "
              "the other seeds.\n")]
    for (setting, preset), table in frame.groupby(["setting", "preset"], sort=True):
        lines.append(f"## {setting} ({preset} preset)\n")
        shown = table.assign(chosen=table["chosen"].map({True: "✓", False: ""}))
        shown = shown.sort_values(["group", "method", "checkpoint", protocol.criterion],
                                  ascending=[True, True, True, False], kind="stable")
        for column in (protocol.criterion, "Pareto AUC"):
            shown[column] = shown[column].map(lambda v: "-" if pd.isna(v) else f"{v:.3f}")
        shown = shown.drop(columns=["setting", "preset", "_configuration"])
        lines.append(shown.to_markdown(index=False, disable_numparse=True))
        lines.append("")
    return "\n".join(lines) + "\n"
