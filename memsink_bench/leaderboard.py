"""Leaderboard tables from result records: one row per method x checkpoint x setting.

Rows are ranked by the largest memorization gap closed within 0.05 nats of model degradation.
Records that differ only in their seeds (training seed, method seed) are replicates of one
configuration: a row shows their mean, the standard deviation of the ranking metric and the
number of seeds. Where a row has several configurations (a hyperparameter grid), the one with the
best mean is shown and the number of configurations noted; seeds are never picked from. Records of different corpora never share a table: each table is for one
(setting, preset, corpus hash), and mixing is an error unless the user picks one.
"""

from __future__ import annotations

import pandas as pd

from .errors import UserError
from .metrics import DIRECTIONS, best_point, gap_key
from .record import ResultRecord, load_records  # noqa: F401  (load_records: the leaderboard's reader)

COLUMNS = [
    # (column title, record getter, metric for the arrow, format)
    ("gap closed @0.05", lambda r: r.summary[gap_key(0.05)], gap_key(0.05), "{:.3f}"),
    ("gap closed @0.1", lambda r: r.summary[gap_key(0.1)], gap_key(0.1), "{:.3f}"),
    ("AUC", lambda r: r.summary["auc"], "auc", "{:.3f}"),
    ("target gap @0.05", lambda r: r.summary[gap_key(0.05, target=True)], gap_key(0.05, target=True), "{:.3f}"),
    ("max forgetting", lambda r: max(p.forgetting for p in r.points), "forgetting", "{:.3f}"),
    ("EM rep. before", lambda r: r.before.em_repeated, None, "{:.1f}"),
    ("EM rep. @0.05", lambda r: _em_within(r, 0.05), "em_repeated", "{:.1f}"),
    ("method s", lambda r: r.timings.method_seconds, "method_seconds", "{:.1f}"),
]


def _em_within(record: ResultRecord, budget: float) -> float:
    """Exact match on repeated sequences at the point closing the most gap within the budget."""
    chosen = best_point(record.points, "gap_closed", budget)
    return record.before.em_repeated if chosen is None else chosen.em_repeated


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


def leaderboard_frame(records: list[ResultRecord], setting: str | None = None,
                      preset: str | None = None) -> pd.DataFrame:
    rows = []
    for record in distinct_replicates(records):
        if setting and record.setting != setting or preset and record.preset != preset:
            continue
        row = {"setting": record.setting, "preset": record.preset, "corpus": record.corpus,
               "corpus_hash": record.corpus_hash[:12], "method": record.method,
               "checkpoint": record.checkpoint.label}
        for title, getter, _, _ in COLUMNS:
            row[title] = getter(record)
        row["_configuration"] = record.configuration()
        rows.append(row)
    if not rows:
        raise UserError("no result records match", "run `memsink-bench run --method ... --setting ...` first")
    frame = pd.DataFrame(rows)
    corpora = frame.groupby(["setting", "preset"])["corpus_hash"].nunique()
    if (corpora > 1).any():
        mixed = corpora[corpora > 1].index[0]
        raise UserError(f"records for {mixed[0]} ({mixed[1]}) come from {corpora.max()} different corpora",
                        "move records of other corpora out of the results directory; results must not mix")
    key = ["setting", "preset", "method", "checkpoint"]
    metrics = [title for title, _, _, _ in COLUMNS]
    frame[metrics] = frame[metrics].astype(float)
    replicates = frame.groupby([*key, "corpus", "corpus_hash", "_configuration"], sort=False)
    table = replicates[metrics].mean()
    table.insert(1, SD_COLUMN, replicates[RANK_BY].std(ddof=1))
    table["seeds"] = replicates.size()
    table = table.reset_index()
    table["configs"] = table.groupby(key)["_configuration"].transform("size")
    # the best mean; ties go to the larger AUC, then to the configuration's text (never to file order)
    table = (table.sort_values([RANK_BY, "AUC", "_configuration"], ascending=[False, False, True], kind="stable")
             .drop_duplicates(key))
    return (table.drop(columns="_configuration")
            .sort_values(["setting", "preset", RANK_BY, "AUC"], ascending=[True, True, False, False], kind="stable")
            .reset_index(drop=True))


RANK_BY = "gap closed @0.05"
SD_COLUMN = "sd @0.05"


def _arrow(metric: str | None) -> str:
    if metric is None:
        return ""
    return " ↑" if DIRECTIONS.get(metric, True) else " ↓"


def render(frame: pd.DataFrame, fmt: str) -> str:
    shown = frame.copy()
    renames = {title: title + _arrow(metric) for title, _, metric, _ in COLUMNS}
    for title, _, _, spec in [*COLUMNS, (SD_COLUMN, None, None, "{:.3f}")]:
        shown[title] = shown[title].map(lambda v, s=spec: s.format(v) if v is not None and not pd.isna(v) else "-")
    shown = shown.rename(columns=renames).drop(columns=["corpus_hash"])
    if fmt == "csv":
        return shown.to_csv(index=False)
    if fmt == "latex":
        return shown.to_latex(index=False, escape=True)
    if fmt == "html":
        return shown.to_html(index=False, border=0, classes="leaderboard")
    if fmt == "md":
        parts = []
        for (setting, preset), group in shown.groupby(["setting", "preset"], sort=True):
            corpus = group["corpus"].iloc[0]
            parts.append(f"### {setting} ({preset} preset, corpus {corpus})\n")
            parts.append(group.drop(columns=["setting", "preset", "corpus"]).to_markdown(index=False))
            parts.append("")
        return "\n".join(parts) + "\n"
    raise UserError(f"unknown format '{fmt}'", "use md, csv, latex or html")
