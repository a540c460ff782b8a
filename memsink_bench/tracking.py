"""Optional experiment tracking through accelerate's trackers: TensorBoard, W&B or MLflow.

`--set train.log_with=tensorboard|wandb|mlflow` (default `none`). Like `train.threads`, the tracker
is in no checkpoint key and no record identity: tracking observes a run and never changes it, so
a checkpoint trained with a tracker is the one trained without.

- Training logs every evaluation (the line it writes to metrics.jsonl: train and validation loss,
  repeated-sequence loss under each view, learning rate) at its step, and the config as hyperparameters.
- A method run inside a sweep logs each tradeoff point of its record (forgetting, degradation, gap
  closed, exact match, the knob) at the point's index in the knob grid, then the curve's summary.

Where: TensorBoard writes to `<workdir>/runs/<setting>/<checkpoint or record>/tracking/`, so
`tensorboard --logdir <workdir>/runs` shows every run. W&B and MLflow keep their own configuration
(`WANDB_MODE=offline`, `WANDB_DIR`, `MLFLOW_TRACKING_URI`, ...); their project / experiment is
"memsink-bench" and each run is named after its checkpoint or record.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

from .config import TRACKERS
from .errors import UserError

PROJECT = "memsink-bench"
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check_available(log_with: str) -> None:
    """A tracker whose package is missing is a one-line error naming the extra to install."""
    if log_with not in TRACKERS:
        raise UserError(f"unknown tracker '{log_with}'", f"choose one of: {', '.join(TRACKERS)}")
    if log_with != "none" and importlib.util.find_spec(PACKAGES[log_with]) is None:
        raise UserError(f"train.log_with={log_with} needs the '{PACKAGES[log_with]}' package",
                        f"pip install 'memsink-bench[{log_with}]'")


def trackers(log_with: str, directory: Path, run_name: str) -> list | None:
    """accelerate tracker objects for `Accelerator(log_with=...)` (None: no tracking).

    TensorBoard writes its event files to `directory`. Only the main process of a multi-process
    launch tracks (W&B would otherwise open one run per process).
    """
    if log_with == "none" or int(os.environ.get("RANK", 0)) != 0:
        return None
    check_available(log_with)
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    directory = Path(directory)
    if log_with == "tensorboard":
        return [LOGGER_TYPE_TO_CLASS["tensorboard"](directory.name, directory.parent)]
    if log_with == "wandb":
        return [LOGGER_TYPE_TO_CLASS["wandb"](PROJECT, name=run_name)]
    return [LOGGER_TYPE_TO_CLASS["mlflow"](PROJECT, run_name=run_name)]


def start(accelerator, config: dict) -> None:
    """Open the accelerator's trackers with `config` (nested) as flat hyperparameters."""
    if accelerator.log_with:
        accelerator.init_trackers(PROJECT, config=flat(config))


def finish(accelerator) -> None:
    """Close the trackers (not `end_training`, which would also end a multi-process group)."""
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers = []


def scalars(values: dict, prefix: str = "") -> dict:
    """The finite numbers of a metrics dict, as trackers take them."""
    return {f"{prefix}{key}": float(value) for key, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}


def flat(config: dict, prefix: str = "") -> dict:
    """A nested config as `section.key` -> bool/int/float/str (TensorBoard hparams take nothing else)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value)
    return out


def log_record(path: Path, log_with: str, directory: Path) -> None:
    """Send a method run's record to a tracker: one step per tradeoff point, then the summary."""
    import dataclasses

    from .record import ResultRecord

    record = ResultRecord.read(path)
    for tracker in trackers(log_with, directory, Path(path).stem) or []:
        tracker.start()
        tracker.store_init_configuration(flat({
            "method": record.method, "checkpoint": record.checkpoint.label, "setting": record.setting,
            "preset": record.preset, "seeds": dataclasses.asdict(record.seeds),
            "hyperparameters": record.hyperparameters}))
        for index, point in enumerate(record.points):
            values = {f.name: getattr(point, f.name) for f in dataclasses.fields(point) if f.name != "per_sequence"}
            tracker.log(scalars(values, "point/"), step=index)
        tracker.log(scalars(record.summary, "summary/"), step=len(record.points))
        tracker.finish()
