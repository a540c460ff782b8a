"""Raw analysis outputs on disk, and the tables and figures redrawn from them alone.

Layout: `results/analyses/<setting>-<preset>/<checkpoint>/<analysis>.json` holds everything an
analysis computed (provenance, summary, table rows). Beside it, `<analysis>.csv`, `.md`, `.pdf`
and `.png` are derived from that JSON by `render_analysis`, which `memsink-bench report` re-runs
without touching a model. Same JSON -> same bytes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..storage import atomic_write_json, atomic_write_text, read_json
from . import load_analysis
from .common import plain

SCHEMA = 1


def checkpoint_slug(label: str) -> str:
    """A checkpoint label (`memsinks:drop`) as a directory name (`memsinks-drop`)."""
    return label.replace(":", "-").replace("/", "_")


def analysis_path(results: Path, setting: str, preset: str, checkpoint_label: str, name: str) -> Path:
    return Path(results) / "analyses" / f"{setting}-{preset}" / checkpoint_slug(checkpoint_label) / f"{name}.json"


def write_analysis(path: Path, name: str, frame: pd.DataFrame, summary: dict, meta: dict) -> None:
    """The raw output: `meta` (setting, preset, checkpoint, hashes, parameters), summary, table."""
    payload = {"schema": SCHEMA, "analysis": name, **meta, "summary": summary,
               "columns": list(frame.columns), "table": frame.to_dict(orient="records")}
    atomic_write_json(path, plain(payload))


def read_analysis(path: Path) -> tuple[dict, pd.DataFrame]:
    payload = read_json(path)
    return payload, pd.DataFrame(payload["table"], columns=payload["columns"])


LOCALIZATION_FILE = "localization.json"    # `memsink-bench localize`'s report (its own layout, not an analysis)


def find_analyses(results: Path) -> list[Path]:
    """Every stored analysis output under `results`, in a fixed order (localization reports,
    which `localize` writes beside them, are not analyses: see find_localizations)."""
    return sorted(p for p in (Path(results) / "analyses").glob("*/*/*.json")
                  if not p.name.startswith(".") and p.name != LOCALIZATION_FILE)


def find_localizations(results: Path) -> list[Path]:
    return sorted((Path(results) / "analyses").glob(f"*/*/{LOCALIZATION_FILE}"))


def summary_items(summary: dict, prefix: str = "", max_list: int = 8) -> list[tuple[str, object]]:
    """Flatten a summary to (dotted key, value) pairs, leaving out long arrays (figure data)."""
    items = []
    for key in sorted(summary):
        value, name = summary[key], f"{prefix}{key}"
        if isinstance(value, dict):
            items += summary_items(value, f"{name}.", max_list)
        elif not isinstance(value, list) or len(value) <= max_list and not any(isinstance(v, list) for v in value):
            items.append((name, value))
    return items


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)


def analysis_markdown(payload: dict, frame: pd.DataFrame) -> str:
    module = load_analysis(payload["analysis"])
    lines = [f"### {module.TITLE}: {payload['setting']} ({payload['preset']} preset), "
             f"checkpoint {payload['checkpoint']['label']}", ""]
    lines += [f"- {key}: {_format(value)}" for key, value in summary_items(payload["summary"])]
    shown = getattr(module, "markdown_table", lambda table: table)(frame)
    lines += ["", shown.to_markdown(index=False, floatfmt=".4g"), ""]
    return "\n".join(lines)


def render_analysis(path: Path) -> list[Path]:
    """Write <analysis>.csv, .md, .pdf and .png beside the stored JSON; returns the paths."""
    from ..plots import save_figure

    path = Path(path)
    payload, frame = read_analysis(path)
    stem = path.with_suffix("")
    atomic_write_text(stem.with_suffix(".csv"), frame.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(stem.with_suffix(".md"), analysis_markdown(payload, frame))
    figure = load_analysis(payload["analysis"]).figure(frame, payload["summary"])
    return [stem.with_suffix(".csv"), stem.with_suffix(".md"), *save_figure(figure, stem)]
