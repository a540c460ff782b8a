"""`memsink-bench report`: every table and figure in `results/`, redrawn from stored outputs.

Inputs (never recomputed): result records (`results/records/*/*.json`), analysis outputs
(`results/analyses/<setting>-<preset>/<checkpoint>/<analysis>.json`) and training curves
(`results/analyses/<setting>-<preset>/training-curves.json`, stored by
`memsink-bench plot training-curves`). Outputs:

    results/leaderboard.{md,csv,tex,html}
    results/selection.md          under a protocol (protocol.yaml): every configuration tried, the chosen marked
    results/figures/tradeoff_<setting>-<preset>.{pdf,png}
    results/figures/training-curves_<setting>-<preset>.{pdf,png}
    results/analyses/.../<analysis>.{md,csv,pdf,png}
    results/index.html            every table and figure on one page (relative links)

Everything is sorted and carries no timestamp, so the same inputs give byte-identical files.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from .analyses.store import find_analyses, read_analysis, render_analysis, summary_items
from .kinds import NO_REP, STANDARD
from .kinds.memsinks import MemSinks
from .leaderboard import leaderboard_frame, load_records, render, render_selection, selection_frame
from .protocol import protocol_of
from .record import ResultRecord
from .storage import atomic_write_json, atomic_write_text, read_json

LEADERBOARD_FORMATS = {"md": "md", "csv": "csv", "tex": "latex", "html": "html"}
CURVES_FILE = "training-curves.json"
SELECTION_FILE = "selection.md"           # under a protocol: every configuration its selection seeds tried


# --- leaderboard and tradeoff ----------------------------------------------------------------

def write_leaderboards(records: list[dict], results: Path) -> list[Path]:
    if not records:
        return []
    frame = leaderboard_frame(records)
    written = []
    for suffix, fmt in LEADERBOARD_FORMATS.items():
        path = results / f"leaderboard.{suffix}"
        atomic_write_text(path, render(frame, fmt))
        written.append(path)
    protocol = protocol_of(records)
    selection = selection_frame(records, protocol)
    if not selection.empty:                    # under a protocol: what its selection seeds tried
        path = results / SELECTION_FILE
        atomic_write_text(path, render_selection(selection, protocol))
        written.append(path)
    return written


def records_by_setting(records: list[ResultRecord]) -> dict[tuple[str, str], list[ResultRecord]]:
    grouped: dict[tuple[str, str], list[ResultRecord]] = {}
    for record in records:
        grouped.setdefault((record.setting, record.preset), []).append(record)
    return dict(sorted(grouped.items()))


def tradeoff_stem(results: Path, setting: str, preset: str) -> Path:
    return results / "figures" / f"tradeoff_{setting}-{preset}"


def write_tradeoff(records: list[ResultRecord], results: Path, setting: str, preset: str) -> list[Path]:
    from .plots import save_figure, tradeoff_figure

    # the leaderboard's chosen configuration of each row, with all its seeds
    mine = [r for r in records if r.setting == setting and r.preset == preset]
    chosen = [r for replicates in leaderboard_frame(mine, with_intervals=False)["_records"] for r in replicates] \
        if mine else []
    if not chosen:
        return []
    figure = tradeoff_figure(chosen, title=f"{setting} ({preset} preset)")
    return save_figure(figure, tradeoff_stem(results, setting, preset))


def write_pareto(records: list[ResultRecord], results: Path, setting: str, preset: str) -> list[Path]:
    """The Pareto-front figure of the leaderboard's rows (each chosen configuration, all its seeds)."""
    from .plots import pareto_figure, save_figure

    mine = [r for r in records if r.setting == setting and r.preset == preset]
    if not mine:
        return []
    rows = list(leaderboard_frame(mine, with_intervals=False)["_records"])
    figure = pareto_figure(rows, title=f"{setting} ({preset} preset): gap closed within each degradation budget")
    return save_figure(figure, results / "figures" / f"pareto_{setting}-{preset}")


def write_neighbours(records: list[ResultRecord], results: Path, setting: str, preset: str) -> list[Path]:
    """Degradation on the forget set's neighbours against validation degradation for the
    leaderboard's rows; nothing when no record of the setting measured neighbours."""
    from .plots import neighbour_figure, save_figure

    mine = [r for r in records if r.setting == setting and r.preset == preset
            and any(p.neighbour_degradation is not None for p in r.points)]
    if not mine:
        return []
    rows = list(leaderboard_frame(mine, with_intervals=False)["_records"])
    figure = neighbour_figure(rows, title=f"{setting} ({preset}): neighbours vs validation")
    return save_figure(figure, results / "figures" / f"neighbours_{setting}-{preset}")


def write_robustness(records: list[ResultRecord], results: Path, setting: str, preset: str) -> list[Path]:
    """The membership-inference ROC and relearning figure of the leaderboard's rows at their chosen
    points; nothing when no record of the setting carries robustness results (schema 1 records)."""
    from .plots import robustness_figure, save_figure

    mine = [r for r in records if r.setting == setting and r.preset == preset and (r.extras or {}).get("robustness")]
    if not mine:
        return []
    rows = list(leaderboard_frame(mine, with_intervals=False)["_records"])
    figure = robustness_figure(rows, title=f"{setting} ({preset} preset): privacy and robustness at the chosen point")
    return save_figure(figure, results / "figures" / f"robustness_{setting}-{preset}")


# --- training curves -------------------------------------------------------------------------

def curves_path(results: Path, setting: str, preset: str) -> Path:
    return results / "analyses" / f"{setting}-{preset}" / CURVES_FILE


def training_curves_from_checkpoints(workdir: Path, config) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """({kind: metrics.jsonl rows}, {kind: checkpoint dir}) of the kinds already trained for
    this setting and config; kinds not trained yet are left out (nothing is trained here)."""
    from .checkpoints import checkpoint_dir
    from .kinds import KINDS

    curves, sources = {}, {}
    for kind in KINDS:
        directory = checkpoint_dir(workdir, kind, config)
        metrics = directory / "metrics.jsonl"
        if metrics.is_file():
            curves[kind] = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
            sources[kind] = str(directory)
    return curves, sources


def save_training_curves(results: Path, setting: str, preset: str, curves: dict, sources: dict) -> Path:
    path = curves_path(results, setting, preset)
    atomic_write_json(path, {"schema": 1, "setting": setting, "preset": preset, "curves": curves,
                             "checkpoints": sources})
    return path


def render_training_curves(path: Path, results: Path) -> list[Path]:
    from .plots import save_figure, training_curves_figure

    stored = read_json(path)
    figure = training_curves_figure(stored["curves"], title=f"{stored['setting']} ({stored['preset']} preset)")
    return save_figure(figure, results / "figures" / f"training-curves_{stored['setting']}-{stored['preset']}")


# --- MemSinks sweeps (sink fraction p, ID noise d) --------------------------------------------

SWEEP_PREFIX = "sweep-"


def sweep_from_checkpoints(workdir: Path, config, parameter: str, values: list[float]) -> dict:
    """Final metrics of the MemSinks checkpoints of `config` with `parameter` set to each value
    (only those already trained), plus the standard and no-rep references of `config` itself."""
    import copy

    from .checkpoints import checkpoint_dir
    from .config import SECTIONS

    section, key = parameter.split(".", 1)
    pairs, sources = [], {}
    for value in values:
        varied = copy.deepcopy(config)
        values_of = vars(getattr(varied, section))
        values_of[key] = value
        setattr(varied, section, SECTIONS[section](**values_of))
        manifest = checkpoint_dir(workdir, MemSinks.name, varied) / "manifest.json"
        if manifest.is_file():
            pairs.append([value, read_json(manifest)["final_metrics"]])
            sources[str(value)] = str(manifest.parent)
    references = {}
    for kind in (STANDARD, NO_REP):
        manifest = checkpoint_dir(workdir, kind, config) / "manifest.json"
        if manifest.is_file():
            final = read_json(manifest)["final_metrics"]
            references[f"{kind} val loss"] = final["val_loss"]
            references[f"{kind} repeated loss"] = final["repeated_loss"]
    return {"schema": 1, "setting": config.setting, "preset": config.preset, "parameter": parameter,
            "pairs": pairs, "references": references, "checkpoints": sources}


def sweep_path(results: Path, setting: str, preset: str, parameter: str) -> Path:
    return results / "analyses" / f"{setting}-{preset}" / f"{SWEEP_PREFIX}{parameter}.json"


def render_sweep(path: Path, results: Path) -> list[Path]:
    """Sweep figure: validation loss (sinks dropped) and repeated loss (dropped / own sinks)."""
    from .plots import save_figure, sweep_figure

    stored = read_json(path)
    figure = sweep_figure([tuple(pair) for pair in stored["pairs"]], stored["parameter"],
                          references={k: v for k, v in stored["references"].items() if "val" in k})
    stem = results / "figures" / f"sweep-{stored['parameter']}_{stored['setting']}-{stored['preset']}"
    return save_figure(figure, stem)


# --- learning/forgetting dynamics --------------------------------------------------------------

DYNAMICS_FILE = "dynamics.json"


def dynamics_from_checkpoints(workdir: Path, config) -> dict:
    """Training-loss traces of repeated sequence 0 from the standard and MemSinks checkpoints of
    `config` (trained with train.trace_repeated=true); kinds without a trace are left out."""
    from .checkpoints import checkpoint_dir
    from .train import TRACE_FILE

    traces, sources = {}, {}
    for kind in (STANDARD, MemSinks.name):
        directory = checkpoint_dir(workdir, kind, config)
        if (directory / TRACE_FILE).is_file():
            rows = [json.loads(line) for line in (directory / TRACE_FILE).read_text().splitlines() if line.strip()]
            traces[kind] = [r for r in rows if r["sequence"] == 0]
            sources[kind] = str(directory)
    return {"schema": 1, "setting": config.setting, "preset": config.preset, "traces": traces,
            "checkpoints": sources, "data": vars(config.data)}


def render_dynamics(path: Path, results: Path) -> list[Path]:
    from .plots import dynamics_figure, save_figure

    stored = read_json(path)
    title = f"{stored['setting']}: one story, {stored['data']['repetitions']} times an epoch"
    figure = dynamics_figure(stored["traces"], title=title)
    return save_figure(figure, results / "figures" / f"dynamics_{stored['setting']}-{stored['preset']}")


# --- the whole report ------------------------------------------------------------------------

def _scaling(results: Path, records: list[ResultRecord]) -> list[Path]:
    """The scaling table and figure per setting: this directory's records, and those of any
    results directory inside it (e.g. results/scaling/prose/) for a corpus this directory has no
    records of, one line per corpus. A corpus is read from one directory only: two directories
    made under different rules (results/ and results/protocol/, say) are never pooled."""
    from .scaling import write_scaling

    def by_corpus(found: list[ResultRecord]) -> dict[str, list[ResultRecord]]:
        grouped: dict[str, list[ResultRecord]] = {}
        for record in found:
            grouped.setdefault(record.corpus, []).append(record)
        return grouped

    sources = by_corpus(records)
    for directory in sorted(p.parent for p in results.glob("*/records") if p.is_dir()):
        for corpus, found in by_corpus(load_records(directory)).items():
            sources.setdefault(corpus, found)
    written = []
    for setting in sorted({r.setting for rs in sources.values() for r in rs}):
        written += write_scaling(results, setting, sources)
    return written


def build_report(results_dir: Path) -> list[Path]:
    """Rebuild every table and figure under `results_dir` from stored outputs; returns the paths."""
    results = Path(results_dir)
    records = load_records(results)
    written = write_leaderboards(records, results)
    for setting, preset in records_by_setting(records):
        written += write_tradeoff(records, results, setting, preset)
        written += write_pareto(records, results, setting, preset)
        written += write_neighbours(records, results, setting, preset)
        written += write_robustness(records, results, setting, preset)
    written += _scaling(results, records)
    for path in sorted((results / "analyses").glob(f"*/{CURVES_FILE}")):
        written += render_training_curves(path, results)
    for path in sorted((results / "analyses").glob(f"*/{SWEEP_PREFIX}*.json")):
        written += render_sweep(path, results)
    for path in sorted((results / "analyses").glob(f"*/{DYNAMICS_FILE}")):
        written += render_dynamics(path, results)
    for path in find_analyses(results):
        written += render_analysis(path)
    index = results / "index.html"
    atomic_write_text(index, index_html(results, records))
    return written + [index]


# --- index.html ------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>memsink-bench results</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;font-size:0.85em}}td,th{{border-bottom:1px solid #ddd;padding:2px 8px;text-align:right}}
img{{max-width:100%;margin:0.5em 0}}h2{{border-bottom:2px solid #333}}</style></head>
<body><h1>memsink-bench results</h1>
{body}
</body></html>
"""


def _figure(results: Path, png: Path, caption: str) -> str:
    relative = png.relative_to(results).as_posix()
    pdf = png.with_suffix(".pdf").relative_to(results).as_posix()
    return (f'<figure><img src="{html.escape(relative)}" alt="{html.escape(caption)}">'
            f'<figcaption>{html.escape(caption)} (<a href="{html.escape(pdf)}">PDF</a>)</figcaption></figure>')


def _summary_table(summary: dict) -> str:
    rows = [{"quantity": key, "value": value if not isinstance(value, float) else f"{value:.4g}"}
            for key, value in summary_items(summary)]
    return pd.DataFrame(rows, columns=["quantity", "value"]).to_html(index=False, border=0)


def _leaderboard_section(records: list[dict]) -> list[str]:
    if not records:
        return ["<h2>Leaderboard</h2><p>No result records yet: run <code>memsink-bench run</code>.</p>"]
    protocol = protocol_of(records)
    selection = (f' Configurations chosen on {html.escape(protocol.label())}: every one tried is in '
                 f'<a href="{SELECTION_FILE}">{SELECTION_FILE}</a>.') if protocol is not None else ""
    return ["<h2>Leaderboard</h2>", render(leaderboard_frame(records), "html"),
            ('<p>Also as <a href="leaderboard.md">Markdown</a>, <a href="leaderboard.csv">CSV</a>, '
             f'<a href="leaderboard.tex">LaTeX</a>.{selection}</p>')]


def _setting_figures(results: Path, records: list[dict]) -> list[str]:
    parts = []
    stored = [read_json(p) for p in sorted((results / "analyses").glob(f"*/{CURVES_FILE}"))]
    stored += [read_json(p) for p in sorted((results / "analyses").glob(f"*/{SWEEP_PREFIX}*.json"))]
    stored += [read_json(p) for p in sorted((results / "analyses").glob(f"*/{DYNAMICS_FILE}"))]
    pairs = set(records_by_setting(records)) | {(s["setting"], s["preset"]) for s in stored}
    for setting, preset in sorted(pairs):
        parts.append(f"<h2>{html.escape(setting)} ({html.escape(preset)} preset)</h2>")
        for stem, caption in ((tradeoff_stem(results, setting, preset), "forgetting vs degradation"),
                              (results / "figures" / f"pareto_{setting}-{preset}",
                               "best gap closed within each degradation budget"),
                              (results / "figures" / f"robustness_{setting}-{preset}",
                               "membership inference and relearning at the chosen point"),
                              (results / "figures" / f"neighbours_{setting}-{preset}",
                               "degradation on the forget set's neighbours vs validation"),
                              (results / "figures" / f"training-curves_{setting}-{preset}", "training curves")):
            if stem.with_suffix(".png").is_file():
                parts.append(_figure(results, stem.with_suffix(".png"), f"{setting} {preset}: {caption}"))
        dynamics = results / "figures" / f"dynamics_{setting}-{preset}.png"
        if dynamics.is_file():
            parts.append(_figure(results, dynamics, f"{setting} {preset}: learning/forgetting of one repeated story"))
        for png in sorted((results / "figures").glob(f"sweep-*_{setting}-{preset}.png")):
            parameter = png.stem[len("sweep-"):-len(f"_{setting}-{preset}")]
            parts.append(_figure(results, png, f"{setting} {preset}: MemSinks sweep over {parameter}"))
    for png in sorted((results / "figures").glob("scaling_*.png")):
        parts.append(f"<h2>{html.escape(png.stem[len('scaling_'):])}: model size</h2>")
        parts.append(_figure(results, png, f"{png.stem[len('scaling_'):]}: gap closed against model size"))
    return parts


def _analysis_sections(results: Path) -> list[str]:
    from .analyses import load_analysis

    parts = ["<h2>Analyses</h2>"] if find_analyses(results) else []
    for path in find_analyses(results):
        payload, _ = read_analysis(path)
        title = (f"{load_analysis(payload['analysis']).TITLE}: {payload['setting']} ({payload['preset']}), "
                 f"checkpoint {payload['checkpoint']['label']}")
        table = path.with_suffix(".md").relative_to(results).as_posix()
        parts += [f"<h3>{html.escape(title)}</h3>", _summary_table(payload["summary"]),
                  f'<p>Full table: <a href="{html.escape(table)}">Markdown</a>, '
                  f'<a href="{html.escape(path.with_suffix(".csv").relative_to(results).as_posix())}">CSV</a>.</p>',
                  _figure(results, path.with_suffix(".png"), title)]
    return parts


def _localization_sections(results: Path) -> list[str]:
    """Each `memsink-bench localize` table and its PR figure."""
    from .analyses.store import find_localizations
    from .localization import COLUMNS, table

    parts = []
    for path in find_localizations(results):
        report = read_json(path)
        rows, note = table(report)
        frame = pd.DataFrame(rows, columns=COLUMNS)
        title = f"Localization against own sinks: {report['setting']} ({report['preset']})"
        parts += [f"<h3>{html.escape(title)}</h3>", frame.to_html(index=False, border=0), f"<p>{html.escape(note)}</p>"]
        png = results / "figures" / f"localization-pr_{report['setting']}-{report['preset']}.png"
        if png.is_file():
            parts.append(_figure(results, png, f"{title}: precision-recall"))
    return (["<h2>Localization</h2>"] + parts) if parts else []


def index_html(results: Path, records: list[dict]) -> str:
    body = (_leaderboard_section(records) + _setting_figures(results, records) + _localization_sections(results)
            + _analysis_sections(results))
    return PAGE.format(body="\n".join(body))
