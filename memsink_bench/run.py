"""`memsink-bench run`: one method on one checkpoint of one setting -> one result record.

Flow: resolve the checkpoint (train or reuse), fold its view into the weights, evaluate the base
state once (cached), run the method (a localizer scores neurons once and the harness drops the
top r per layer over the r grid; an editor walks its knob grid; a training-time kind switches its
neurons off), score every point against the base and the no-rep reference, summarize, and write
the record atomically.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

from .checkpoints import NOT_IN_KEY, Checkpoint, get_checkpoint, git_commit, load_checkpoint, package_versions
from .config import ExperimentConfig, data_dir, parse_value, typed_value
from .errors import UserError, did_you_mean
from .interventions import drop_neurons_scale
from .kinds import KINDS, views
from .methods.base import MethodContext, ModelEditor, NeuronLocalizer
from .methods.registry import Entry, registry
from .methods.training_time import MemSinksDrop, TrainingTimeMethod
from .metrics import DIRECTIONS, evaluate_state, point_metrics, summarize_curve
from .models import mlp_layout, mlp_shape, weight_layout
from .train import TRAINING_REVISION
from .progress import progress
from .setting import Setting, setting_fingerprint
from .storage import atomic_write_json, file_lock

RECORD_SCHEMA = 1
EVAL_VERSION = 1


# --- method configuration --------------------------------------------------------------------

def baseline_file(name: str) -> Path | None:
    path = data_dir("baselines") / f"{name}.yaml"
    return path if path.is_file() else None


def method_settings(entry: Entry, overrides: list[str]) -> tuple[dict, dict]:
    """(constructor hyperparameters, sweep) from baselines/<name>.yaml, then `method.`/`sweep.` overrides."""
    cls = entry.load()
    hyper, sweep = {}, {}
    path = baseline_file(entry.name) if entry.source == "built-in" else None
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            raise UserError(f"malformed YAML in {path}", "fix the YAML syntax") from None
        hyper, sweep = dict(raw.get("hyperparameters") or {}), dict(raw.get("sweep") or {})
    if not sweep:
        sweep = dict(getattr(cls, "default_sweep", None) or default_sweep(cls))
    names = cls.hyperparameter_names()
    for text in overrides:
        dotted, _, value = text.partition("=")
        section, _, key = dotted.partition(".")
        parsed = parse_value(value)
        if section == "method":
            if key not in names:
                raise UserError(f"method '{entry.name}' has no hyperparameter '{key}'", did_you_mean(key, names))
            default = inspect.signature(cls.__init__).parameters[key].default
            if isinstance(default, (bool, int, float, str)):
                parsed = typed_value(f"method.{key}", default, parsed)   # e.g. method.salt=abc: not an int
            hyper[key] = parsed
        else:
            if key not in sweep:
                raise UserError(f"unknown sweep key '{key}' for method '{entry.name}'", did_you_mean(key, sweep))
            sweep[key] = parsed
    return hyper, sweep


def default_sweep(cls) -> dict:
    if issubclass(cls, NeuronLocalizer):
        return {"ratios": [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]}
    if issubclass(cls, ModelEditor):
        return {"steps": [1, 2, 5, 10, 20]}
    return {}


def validate_sweep(cls, sweep: dict) -> list:
    if issubclass(cls, NeuronLocalizer):
        ratios = sweep.get("ratios")
        if not isinstance(ratios, list) or not ratios or any(
                not isinstance(r, (int, float)) or not 0 < r < 1 for r in ratios):
            raise UserError(f"sweep.ratios={ratios} must be a list of fractions in (0, 1)",
                            "e.g. --set sweep.ratios=[0.01,0.05,0.1]")
        return sorted(float(r) for r in ratios)
    if issubclass(cls, ModelEditor):
        steps = sweep.get("steps")
        if not isinstance(steps, list) or not steps or any(not isinstance(s, int) or s < 1 for s in steps):
            raise UserError(f"sweep.steps={steps} must be a list of positive integers", "e.g. --set sweep.steps=[1,5,10]")
        return sorted(steps)
    return []


# --- checkpoints and views -------------------------------------------------------------------

@dataclass
class Target:
    """A checkpoint and the view of it the method works on."""

    checkpoint: Checkpoint
    view: str
    label: str


def resolve_checkpoint(spec: str, workdir: Path, setting: Setting, config: ExperimentConfig, progress: bool,
                       device) -> Target:
    """`KIND[:VIEW]` (trained or reused) or a checkpoint directory PATH."""
    kind, _, view = spec.partition(":")
    if kind in KINDS:
        checkpoint = get_checkpoint(workdir, setting, kind, config, progress=progress, device=device)
    elif Path(spec).is_dir():
        checkpoint, view = load_checkpoint(Path(spec), setting, device), ""
        kind = checkpoint.kind
    else:
        raise UserError(f"unknown checkpoint '{spec}'", did_you_mean(kind, KINDS) + " or a checkpoint directory")
    available = views(kind, config, mlp_shape(checkpoint.model)[1])
    view = view or "default"
    if view not in available:
        raise UserError(f"checkpoint kind '{kind}' has no view '{view}'", did_you_mean(view, available))
    label = kind if view == "default" else f"{kind}:{view}"
    return Target(checkpoint, view, label)


def fold_scale(model, scale: torch.Tensor) -> None:
    """Fold a per-layer neuron scale [1 or layers, 1, 1, d_mlp] into the down-projection weights,
    so a checkpoint view becomes a plain model any method can take."""
    with torch.no_grad():
        for index, layer in enumerate(mlp_layout(model)):
            row = scale[index if scale.shape[0] > 1 else 0].reshape(-1).to(layer.down.weight.dtype)
            if weight_layout(layer.down) == "conv1d":
                layer.down.weight.mul_(row[:, None])
            else:
                layer.down.weight.mul_(row[None, :])


def viewed_model(target: Target, config: ExperimentConfig):
    """A copy of the checkpoint's model with its view folded in (views are per-neuron constants)."""
    model = copy.deepcopy(target.checkpoint.model)
    view = views(target.checkpoint.kind, config, mlp_shape(model)[1])[target.view]
    if view.scale_for is not None:
        scale = view.scale_for(torch.tensor([1, 2]))      # two IDs: a per-sequence view varies with them
        if scale.shape[1] != 1:
            raise UserError(f"view '{target.view}' depends on the sequence and cannot be edited",
                            "choose a fixed view such as 'mean' or 'drop'")
        fold_scale(model, scale)
    return model


def base_evaluation(workdir: Path, setting: Setting, checkpoint: Checkpoint, view: str, model) -> dict:
    """Evaluate an unedited state once and cache it beside the checkpoints."""
    key = f"{checkpoint.directory.name}-{view}-v{EVAL_VERSION}"
    path = workdir / "evals" / setting.name / f"{key}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass
    metrics = evaluate_state(model, setting)
    atomic_write_json(path, metrics)
    return metrics


# --- the run ---------------------------------------------------------------------------------

def check_scores(scores, shape: tuple[int, int], name: str) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor):
        raise UserError(f"method '{name}' returned {type(scores).__name__}, not a tensor",
                        f"return a float tensor of shape [layers, d_mlp] = {list(shape)}")
    if tuple(scores.shape) != tuple(shape):
        raise UserError(f"method '{name}' returned scores of shape {list(scores.shape)}",
                        f"return shape [layers, d_mlp] = {list(shape)}")
    if not torch.isfinite(scores).all():
        raise UserError(f"method '{name}' returned NaN or infinite scores", "return finite scores")
    return scores.detach().float().cpu()


def top_r_drop(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Boolean [layers, d_mlp]: the top round(r * d_mlp) (at least 1) neurons of each layer."""
    k = max(1, int(round(ratio * scores.shape[1])))
    drop = torch.zeros_like(scores, dtype=torch.bool)
    return drop.scatter_(1, scores.topk(k, dim=1).indices, True)


def record_path(results: Path, config: ExperimentConfig, method_name: str, checkpoint_label: str,
                identity: dict) -> Path:
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
    safe_label = checkpoint_label.replace(":", "-").replace("/", "_")
    safe_method = "".join(c if c.isalnum() or c in "-_" else "_" for c in method_name)
    return results / "records" / f"{config.setting}-{config.preset}" / f"{safe_method}__{safe_label}__{digest}.json"


@dataclass
class RunPlan:
    """What `run_method` would compute and where its record goes, decided without running anything."""

    entry: Entry
    cls: type
    method: object
    grid: list
    checkpoint_spec: str
    path: Path


def plan_run(method_spec: str, config: ExperimentConfig, results: Path, checkpoint_spec: str | None = None,
             method_overrides: list[str] = (), seed: int = 0) -> RunPlan:
    """Resolve the method, its hyperparameters and knob grid, and the record path its identity gives."""
    entry = registry().get(method_spec)
    cls = entry.load()
    hyper, sweep = method_settings(entry, list(method_overrides))
    grid = validate_sweep(cls, sweep)
    try:
        method = cls(**hyper)
    except TypeError as error:
        raise UserError(f"bad hyperparameters for '{entry.name}': {error}", "check baselines/ or --set method.*") from None
    except Exception as error:
        _plugin_failed(entry, error)
    if issubclass(cls, TrainingTimeMethod):
        if checkpoint_spec not in (None, cls.checkpoint_kind):
            raise UserError(f"method '{entry.name}' runs only on its own '{cls.checkpoint_kind}' checkpoint",
                            f"drop --checkpoint or pass --checkpoint {cls.checkpoint_kind}")
        checkpoint_spec = cls.checkpoint_kind
        grid = list(method.drop_grid)
    checkpoint_spec = checkpoint_spec or "standard"
    identity = {"method": entry.name, "source": entry.source, "hyper": method.hyperparameters(), "grid": grid,
                "checkpoint": checkpoint_spec, "config": config.to_dict(), "seed": seed,
                "setting_hash": setting_fingerprint(config.setting, config.data)[0],
                "schema": RECORD_SCHEMA, "eval": EVAL_VERSION, "training": TRAINING_REVISION}
    for field in NOT_IN_KEY:
        identity["config"]["train"].pop(field, None)
    identity["config"]["data"].pop("corpus_path", None)       # the content hash stands for it
    path = record_path(results, config, entry.name, checkpoint_spec, identity)
    return RunPlan(entry, cls, method, grid, checkpoint_spec, path)


def run_method(*, method_spec: str, config: ExperimentConfig, setting: Setting, workdir: Path, results: Path,
               checkpoint_spec: str | None, method_overrides: list[str], force: bool = False,
               progress: bool = True, seed: int = 0) -> tuple[dict, Path, bool]:
    """Run one method and write its record; returns (record, path, computed)."""
    from .models import select_device

    device = select_device(config.train.device)
    plan = plan_run(method_spec, config, results, checkpoint_spec, method_overrides, seed)
    entry, cls, method, grid, checkpoint_spec, path = (plan.entry, plan.cls, plan.method, plan.grid,
                                                        plan.checkpoint_spec, plan.path)
    training_time = issubclass(cls, TrainingTimeMethod)
    if path.is_file() and not force:
        try:
            return json.loads(path.read_text()), path, False
        except json.JSONDecodeError:
            print(f"memsink-bench: record {path} is unreadable; recomputing it", file=sys.stderr)

    started = time.perf_counter()
    target = resolve_checkpoint(checkpoint_spec, workdir, setting, config, progress, device)
    norep = get_checkpoint(workdir, setting, "standard-no-rep", config, progress=progress, device=device)
    norep_metrics = base_evaluation(workdir, setting, norep, "model", norep.model)
    context = MethodContext(targets=setting.repeated, retain=setting.control, pad_id=setting.tokenizer.pad_token_id,
                            device=device, seed=seed)
    d_mlp = mlp_shape(target.checkpoint.model)[1]
    extras: dict = {}
    if training_time:
        standard = get_checkpoint(workdir, setting, "standard", config, progress=progress, device=device)
        before = base_evaluation(workdir, setting, standard, "model", standard.model)
        model = target.checkpoint.model
        extras["checkpoint_default_view"] = base_evaluation(workdir, setting, target.checkpoint, "default",
                                                            viewed_model(target, config))
        if isinstance(method, MemSinksDrop):
            from .evaluate import sequence_losses
            own = sequence_losses(model, setting.repeated, context.pad_id,
                                  scale_for=MemSinksDrop.own_sinks_dropped(config, d_mlp)).summary()
            extras["own_sinks_dropped_repeated_loss"] = own["loss"]
            extras["own_sinks_dropped_repeated_target_loss"] = own["target_loss"]
        reference_label = "standard"
        method_started = time.perf_counter()
        states = ((t, model, method.scale(config, d_mlp, t).to(device)) for t in grid)
    else:
        model = viewed_model(target, config)
        before = base_evaluation(workdir, setting, target.checkpoint, target.view, model)
        method_started = time.perf_counter()
        if issubclass(cls, NeuronLocalizer):
            scores = check_scores(_call(entry, method.score, model, context), mlp_shape(model), entry.name)
            extras["scores_top_per_layer"] = scores.topk(min(5, scores.shape[1]), dim=1).indices.tolist()
            if isinstance(getattr(method, "steps_taken", None), int):      # optimising localizers
                extras["steps_taken"] = method.steps_taken
            states = ((r, model, drop_neurons_scale(top_r_drop(scores, r)).to(device)) for r in grid)
        else:
            states = ((knob, edited, None) for knob, edited in method.edit_sweep(model, context, grid))
        reference_label = target.label

    # localizers score eagerly above; editors do their work inside the iterator
    method_seconds, eval_seconds, points = time.perf_counter() - method_started, 0.0, []
    bar = _progress(len(grid), f"{entry.name} on {target.label}", progress)
    iterator = iter(states)
    while True:
        clock = time.perf_counter()
        item = _call(entry, next, iterator, None)         # an editor does its work here
        method_seconds += time.perf_counter() - clock
        if item is None:
            break
        knob, state_model, scale = item
        if not isinstance(state_model, torch.nn.Module):
            raise UserError(f"method '{entry.name}' returned {type(state_model).__name__} at knob {knob}, not a model",
                            "return an edited copy of the model from edit()")
        clock = time.perf_counter()
        after = evaluate_state(state_model, setting, None if scale is None else (lambda ids, s=scale: s))
        _check_finite(after, entry.name, knob)
        points.append({"knob": knob, **point_metrics(after, before, norep_metrics)})
        eval_seconds += time.perf_counter() - clock
        bar.update(1)
    bar.close()
    record = {
        "schema": RECORD_SCHEMA, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "method": entry.name, "method_type": cls.method_type, "method_source": entry.source,
        "hyperparameters": method.hyperparameters(), "knob": "r" if issubclass(cls, NeuronLocalizer) else cls.knob,
        "grid": grid, "setting": setting.name, "preset": config.preset, "setting_hash": setting.setting_hash,
        "corpus": setting.corpus_name, "corpus_hash": setting.corpus_hash,
        "checkpoint": {"label": target.label, "kind": target.checkpoint.kind, "view": target.view,
                       "path": str(target.checkpoint.directory), "train_seconds": target.checkpoint.manifest["train_seconds"]},
        "reference": {"before": reference_label, "no_rep": str(norep.directory)},
        "seeds": {"method": seed, "train": config.train.seed, "data": config.data.seed},
        "config": config.to_dict(), "versions": package_versions(), "git_commit": git_commit(),
        "before": before, "no_rep": norep_metrics, "points": points, "summary": summarize_curve(points),
        "extras": extras,
        "timings": {"method_seconds": round(method_seconds, 3), "eval_seconds": round(eval_seconds, 3),
                    "total_seconds": round(time.perf_counter() - started, 3)},
        "directions": {k: ("higher" if v else "lower") for k, v in DIRECTIONS.items()},
    }
    with file_lock(path.with_name(f".{path.name}.lock")):     # hidden: never read as a result
        atomic_write_json(path, record)
    return record, path, True


def _call(entry: Entry, function, *args):
    """Call into a method: a plugin's exception is the user's to fix (one line), a built-in's is a bug."""
    try:
        return function(*args)
    except UserError:
        raise
    except Exception as error:
        _plugin_failed(entry, error)


def _plugin_failed(entry: Entry, error: Exception):
    if entry.source == "built-in":
        raise error
    raise UserError(f"method '{entry.name}' ({entry.source}) raised {type(error).__name__}: {str(error)[:300]}",
                    "fix the plugin (call it from Python to see the traceback)") from None


def _check_finite(metrics: dict, name: str, knob) -> None:
    bad = [k for k, v in metrics.items() if v is None or (isinstance(v, float) and not math.isfinite(v))]
    if bad:
        raise UserError(f"method '{name}' produced a model with non-finite {bad[0]} at knob {knob}",
                        "check the method's edit for NaN/inf weights")


def _progress(total: int, description: str, enabled: bool):
    return progress(total, description, "point", enabled=enabled)
