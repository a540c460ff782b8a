"""The result record: one method on one checkpoint of one setting, as a typed, versioned object.

Every producer (`run.run_method`) and consumer (leaderboard, plots, report, the CLI, notebooks)
goes through `ResultRecord`: `ResultRecord.read(path)` reads any schema version this package has
written, `record.write(path)` writes the current one atomically. A renamed field is a type error
here, never a silent KeyError in a plot.

Schema history:
  1: means per point.
  2: adds per-sequence values per state (`PerSequence`: the losses and exact matches of every
     repeated, control and validation sequence), which bootstraps over sequences and the
     per-sequence metrics need. Version-1 records read with `per_sequence = None`.

The record's *identity* (what makes two runs the same run, hence its file name) is a separate,
smaller thing built by `run.plan_run`; it has its own format number (IDENTITY_FORMAT) so that a
new record field does not rename every stored run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
IDENTITY_FORMAT = 1
PER_SEQUENCE_DECIMALS = 4         # losses in nats to 1e-4: far below any difference the tables show


class RecordError(ValueError):
    """A file that is not a readable memsink-bench result record."""


@dataclass
class PerSequence:
    """Per-sequence values of one model state, in the setting's sequence order."""

    repeated_loss: list[float]          # [n_repeated] mean NLL over the whole sequence
    repeated_target_loss: list[float]   # [n_repeated] mean NLL over the target span
    em_repeated: list[int]              # [n_repeated] target tokens greedily reproduced before the first miss
    control_loss: list[float]           # [n_control]
    control_target_loss: list[float]    # [n_control]
    em_control: list[int]               # [n_control]
    val_loss: list[float]               # [n_validation]
    log_p_z: list[float] | None = None          # [n_repeated] log-probability one sample reproduces the target
    mia_repeated: list[float] | None = None     # [n_repeated] headline membership score (higher = member)
    mia_validation: list[float] | None = None   # [NONMEMBERS] the same on never-trained held-out sequences
    neighbour_loss: list[float] | None = None   # [n_repeated] mean NLL of each forget sequence's neighbour

    def compact(self) -> "PerSequence":
        def rounded(values):
            return [round(float(v), PER_SEQUENCE_DECIMALS) for v in values]
        def optional(values):
            return None if values is None else rounded(values)
        return PerSequence(rounded(self.repeated_loss), rounded(self.repeated_target_loss),
                           [int(v) for v in self.em_repeated], rounded(self.control_loss),
                           rounded(self.control_target_loss), [int(v) for v in self.em_control],
                           rounded(self.val_loss), optional(self.log_p_z), optional(self.mia_repeated),
                           optional(self.mia_validation), optional(self.neighbour_loss))


@dataclass
class State:
    """The per-state metrics of one model (means over each sequence set)."""

    repeated_loss: float
    repeated_target_loss: float
    val_loss: float
    control_loss: float
    control_target_loss: float
    em_repeated: float
    em_repeated_full: float
    em_control: float
    em_control_full: float
    per_sequence: PerSequence | None = None
    mia_auroc: dict[str, float] | None = None    # attack -> AUROC of forget vs never-seen held-out sequences
    extraction: dict[str, float] | None = None   # rate@n for n samples (p = 0.5), mean_p_z
    neighbour_loss: float | None = None          # mean NLL of the forget set's neighbours (neighbours.py)
    other_repeated_loss: float | None = None     # forgetting a subset: mean NLL of the repeated sequences kept

    def means(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(State)
                if f.name not in ("per_sequence", "mia_auroc", "extraction")}


@dataclass
class Point(State):
    """One point of a method's knob sweep, scored against the base state and the no-rep reference."""

    knob: float | int = 0
    forgetting: float = 0.0               # repeated loss after - before
    forgetting_target: float = 0.0        # the same on the target span
    degradation: float = 0.0              # validation loss after - before
    control_degradation: float = 0.0      # control-set loss after - before
    gap_closed: float | None = None       # forgetting / (no-rep repeated loss - before)
    gap_closed_target: float | None = None
    privleak: float | None = None         # MUSE's PrivLeak against the never-seen model (closer to 0 is better)
    neighbour_degradation: float | None = None   # neighbours' loss after - before (lower better)
    other_forgetting: float | None = None        # forgetting a subset: the kept repeated sequences' loss after - before


@dataclass
class CheckpointInfo:
    label: str                 # KIND or KIND:VIEW
    kind: str
    view: str
    path: str
    train_seconds: float


@dataclass
class Reference:
    before: str                # the label of the state forgetting is measured from
    no_rep: str                # the no-rep checkpoint directory the gap is measured to


@dataclass
class Seeds:
    method: int
    train: int
    data: int

    def key(self) -> tuple[int, int, int]:
        return (self.train, self.method, self.data)


@dataclass
class Timings:
    method_seconds: float
    eval_seconds: float
    total_seconds: float
    robustness_seconds: float = 0.0      # quantization and relearning at the chosen point (schema 2)


@dataclass
class ResultRecord:
    created: str
    method: str
    method_type: str               # localizer | editor | training
    method_source: str             # built-in, a plugin's entry point, or a file
    hyperparameters: dict[str, Any]
    knob: str                      # r (drop ratio), steps, t (removal strength), ...
    grid: list
    setting: str
    preset: str
    setting_hash: str
    corpus: str
    corpus_hash: str
    checkpoint: CheckpointInfo
    reference: Reference
    seeds: Seeds
    config: dict[str, Any]
    versions: dict[str, str]
    git_commit: str
    before: State
    no_rep: State
    points: list[Point]
    summary: dict[str, float]      # metric name (metrics.summarize_curve) -> value
    extras: dict[str, Any]
    timings: Timings
    directions: dict[str, str]     # metric name -> "higher" | "lower" (which is better)
    resources: dict[str, Any] = field(default_factory=dict)  # speed/memory knobs (schema 2; never identity)
    never_seen: State | None = None        # the never-seen reference model's state (PrivLeak's reference)
    schema: int = SCHEMA
    path: Path | None = field(default=None, compare=False)    # where it was read from (not stored)

    # --- reading and writing ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        raw.pop("path")
        for state in (raw["before"], raw["no_rep"], *raw["points"], *([raw["never_seen"]] if raw["never_seen"] else [])):
            for name in ("per_sequence", "mia_auroc", "extraction", "privleak", "neighbour_loss",
                         "neighbour_degradation", "other_repeated_loss", "other_forgetting"):
                if name in state and state[name] is None:
                    state.pop(name)
            for name in ("log_p_z", "mia_repeated", "mia_validation", "neighbour_loss"):
                if state.get("per_sequence") and state["per_sequence"].get(name) is None:
                    state["per_sequence"].pop(name)
        if raw["never_seen"] is None:
            raw.pop("never_seen")
        return raw

    def write(self, path: Path) -> None:
        """Atomically, under the record's lock (a hidden file: never read as a result)."""
        from .storage import atomic_write_json, file_lock

        path = Path(path)
        with file_lock(path.with_name(f".{path.name}.lock")):
            atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, raw: Any, path: Path | None = None) -> "ResultRecord":
        if not isinstance(raw, dict) or raw.get("schema") not in READABLE_SCHEMAS or not raw.get("points"):
            raise RecordError(f"not a memsink-bench result record (schema {list(READABLE_SCHEMAS)} with points)")
        try:
            values = {f.name: raw[f.name] for f in dataclasses.fields(cls)
                      if f.name not in ("path", "resources", "never_seen")}
            values["resources"] = raw.get("resources", {})
            values["never_seen"] = _state(State, raw["never_seen"]) if raw.get("never_seen") else None
            values.update(
                checkpoint=CheckpointInfo(**raw["checkpoint"]), reference=Reference(**raw["reference"]),
                seeds=Seeds(**raw["seeds"]), timings=Timings(**raw["timings"]),
                before=_state(State, raw["before"]), no_rep=_state(State, raw["no_rep"]),
                points=[_state(Point, p) for p in raw["points"]])
            return cls(**values, path=path)
        except (KeyError, TypeError) as error:
            raise RecordError(f"a result record with a missing or unknown field ({error})") from None

    @classmethod
    def read(cls, path: Path) -> "ResultRecord":
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RecordError(f"not valid JSON ({type(error).__name__})") from None
        return cls.from_dict(raw, Path(path))

    # --- what consumers ask ------------------------------------------------------------------

    @property
    def forget_span(self) -> str:
        """The span the run's method forgot and its primary columns score (`scoring.forget_span`;
        a record made before that section existed forgot the extraction span)."""
        return span_of(self.config)

    @property
    def forget_count(self) -> int:
        """How many repeated sequences the run forgot (`scoring.forget_count`; 0: all of them)."""
        return int(((self.config or {}).get("scoring") or {}).get("forget_count", 0) or 0)

    @property
    def forget_key(self) -> str:
        """The point field of the gap closed on the forget span."""
        return forget_key(self.forget_span)

    def configuration(self) -> str:
        """Everything that defines the run except its seeds (training, method and data seed) and
        the knobs that never change a result (device, threads, tracker): replicates share this key."""
        from .checkpoints import NOT_IN_KEY

        from .config import identity_config

        config = identity_config(json.loads(json.dumps(self.config)))
        config.get("train", {}).pop("seed", None)
        config.get("data", {}).pop("seed", None)        # a seed too: replicates may each draw their own forget set
        for name in NOT_IN_KEY:
            config.get("train", {}).pop(name, None)
        return json.dumps({"hyperparameters": self.hyperparameters, "grid": self.grid, "config": config,
                           "source": self.method_source}, sort_keys=True)


def span_of(config: dict | None) -> str:
    """The forget span a run's config dict declares (`scoring.forget_span`; a config made before
    that section existed: the extraction span, what those runs forgot)."""
    return ((config or {}).get("scoring") or {}).get("forget_span", "extraction")


def forget_key(span: str) -> str:
    """The point field holding the gap closed on a span: the whole sequence or the extraction span."""
    return "gap_closed" if span == "sequence" else "gap_closed_target"


def _state(cls, raw: dict):
    values = dict(raw)
    per_sequence = values.pop("per_sequence", None)
    return cls(**values, per_sequence=PerSequence(**per_sequence) if per_sequence is not None else None)


# --- where records live ----------------------------------------------------------------------

def record_path(results: Path, setting: str, preset: str, method_name: str, checkpoint_label: str,
                identity: dict) -> Path:
    """results/records/<setting>-<preset>/<method>__<checkpoint>__<identity digest>.json"""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
    safe_label = checkpoint_label.replace(":", "-").replace("/", "_")
    safe_method = "".join(c if c.isalnum() or c in "-_" else "_" for c in method_name)
    return Path(results) / "records" / f"{setting}-{preset}" / f"{safe_method}__{safe_label}__{digest}.json"


def record_files(results: Path) -> list[Path]:
    return sorted((Path(results) / "records").glob("*/*.json"))


def load_records(results: Path) -> list[ResultRecord]:
    """Every readable record under `results/records/`; each file that cannot be read is named on
    stderr, and if none can be read the error names them all (a torn file is never a silent skip)."""
    import sys

    from .errors import UserError

    records, unreadable = [], []
    for path in record_files(results):
        try:
            records.append(ResultRecord.read(path))
        except RecordError as error:
            unreadable.append((path, str(error)))
    if unreadable and not records:
        names = ", ".join(str(path) for path, _ in unreadable)
        raise UserError(f"no readable result record under {Path(results) / 'records'}; unreadable: {names}",
                        "recompute those runs with `memsink-bench run ... --force` (or move the files away)")
    for path, reason in unreadable:
        print(f"memsink-bench: warning: skipped {path}: {reason}", file=sys.stderr)
    return records


def records_frame(records: list[ResultRecord]):
    """A tidy pandas DataFrame: one row per point, with the run's method, configuration, seeds and
    checkpoint as columns (per-sequence values are left in the records)."""
    import pandas as pd

    rows = []
    for record in records:
        run = {"setting": record.setting, "preset": record.preset, "corpus": record.corpus,
               "corpus_hash": record.corpus_hash, "method": record.method, "method_type": record.method_type,
               "checkpoint": record.checkpoint.label, "kind": record.checkpoint.kind, "view": record.checkpoint.view,
               "train_seed": record.seeds.train, "method_seed": record.seeds.method, "data_seed": record.seeds.data,
               "hyperparameters": json.dumps(record.hyperparameters, sort_keys=True),
               "configuration": record.configuration(), "knob_name": record.knob,
               "before_repeated_loss": record.before.repeated_loss, "before_val_loss": record.before.val_loss,
               "no_rep_repeated_loss": record.no_rep.repeated_loss, "path": str(record.path or "")}
        for point in record.points:
            rows.append({**run, **{k: v for k, v in dataclasses.asdict(point).items() if k != "per_sequence"}})
    return pd.DataFrame(rows)


def load_results(results: Path):
    """The records of a results directory as a tidy DataFrame (one row per point), for notebooks:
    `memsink_bench.record.load_results("results")`."""
    return records_frame(load_records(Path(results)))
