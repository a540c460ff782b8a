"""`memsink-bench run`: one method on one checkpoint of one setting -> one result record.

`plan_run` decides what a run is (method, hyperparameters, knob grid, checkpoint) and where its
record goes, without computing anything. `run_method` is a short loop: it resolves the
checkpoints, evaluates the base state once (cached), walks the method's sweep of model states
(each method type yields its own, see methods/base.py), scores every state, and writes a
`ResultRecord`.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from .checkpoints import (NOT_IN_KEY, evaluate_cached, get_checkpoint, git_commit, package_versions,
                          resolve_target, viewed_model)
from .config import METHOD_SECTIONS, ExperimentConfig, data_dir, parse_override, typed_value
from .errors import UserError, did_you_mean
from .kinds import NO_REP, STANDARD
from .methods.base import MethodContext
from .methods.registry import Entry, registry
from .metrics import DIRECTIONS, measure_state, point_metrics, summarize_curve
from .progress import progress
from .record import IDENTITY_FORMAT, CheckpointInfo, Reference, ResultRecord, Seeds, Timings, record_path
from .setting import Setting, setting_fingerprint
from .train import TRAINING_REVISION

EVAL_VERSION = 1      # the evaluation protocol; part of every record's identity


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
        sweep = dict(cls.default_sweep)
    names = cls.hyperparameter_names()
    for text in overrides:
        section, key, parsed = parse_override(text, METHOD_SECTIONS)
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
    try:
        method = cls(**hyper)
    except TypeError as error:
        raise UserError(f"bad hyperparameters for '{entry.name}': {error}", "check baselines/ or --set method.*") from None
    except Exception as error:
        _plugin_failed(entry, error)
    grid = method.knob_grid(sweep)
    own = method.checkpoint_kind
    if own is not None:
        if checkpoint_spec not in (None, own):
            raise UserError(f"method '{entry.name}' runs only on its own '{own}' checkpoint",
                            f"drop --checkpoint or pass --checkpoint {own}")
        checkpoint_spec = own
    checkpoint_spec = checkpoint_spec or STANDARD
    identity = {"method": entry.name, "source": entry.source, "hyper": method.hyperparameters(), "grid": grid,
                "checkpoint": checkpoint_spec, "config": config.to_dict(), "seed": seed,
                "setting_hash": setting_fingerprint(config.setting, config.data)[0],
                "schema": IDENTITY_FORMAT, "eval": EVAL_VERSION, "training": TRAINING_REVISION}
    for field in NOT_IN_KEY:
        identity["config"]["train"].pop(field, None)
    identity["config"]["data"].pop("corpus_path", None)       # the content hash stands for it
    path = record_path(results, config.setting, config.preset, entry.name, checkpoint_spec, identity)
    return RunPlan(entry, cls, method, grid, checkpoint_spec, path)


def run_method(*, method_spec: str, config: ExperimentConfig, setting: Setting, workdir: Path, results: Path,
               checkpoint_spec: str | None, method_overrides: list[str], force: bool = False,
               progress: bool = True, seed: int = 0) -> tuple[ResultRecord, Path, bool]:
    """Run one method and write its record; returns (record, path, computed)."""
    from .models import select_device

    device = select_device(config.train.device)
    plan = plan_run(method_spec, config, results, checkpoint_spec, method_overrides, seed)
    if plan.path.is_file() and not force:
        try:
            return ResultRecord.read(plan.path), plan.path, False
        except ValueError as error:
            print(f"memsink-bench: record {plan.path} is unreadable ({error}); recomputing it", file=sys.stderr)
    started = time.perf_counter()
    method, entry = plan.method, plan.entry
    target = resolve_target(plan.checkpoint_spec, workdir, setting, config, progress, device)
    norep = get_checkpoint(workdir, setting, NO_REP, config, progress=progress, device=device)
    norep_state = evaluate_cached(workdir, setting, norep, "model", norep.model)
    context = MethodContext(targets=setting.repeated, retain=setting.control, pad_id=setting.tokenizer.pad_token_id,
                            device=device, seed=seed, config=config)
    extras: dict = {}
    if method.scored_against() is None:
        before_label, model = target.label, viewed_model(target, config)
        before = evaluate_cached(workdir, setting, target.checkpoint, target.view, model)
    else:           # a training-time kind: scored against the kind it replaces, its own view recorded
        before_label, model = method.scored_against(), target.checkpoint.model
        reference = get_checkpoint(workdir, setting, before_label, config, progress=progress, device=device)
        before = evaluate_cached(workdir, setting, reference, "model", reference.model)
        extras["checkpoint_default_view"] = evaluate_cached(workdir, setting, target.checkpoint, "default",
                                                            viewed_model(target, config)).means()

    method_seconds, eval_seconds, points = 0.0, 0.0, []
    bar = _progress(len(plan.grid), f"{entry.name} on {target.label}", progress)
    states = iter(_call(entry, method.sweep_states, model, context, plan.grid))
    while True:
        clock = time.perf_counter()
        item = _call(entry, next, states, None)           # the method does its work here
        method_seconds += time.perf_counter() - clock
        if item is None:
            break
        knob, state_model, scale = item
        clock = time.perf_counter()
        after = measure_state(state_model, setting, None if scale is None else (lambda ids, s=scale: s))
        _check_finite(after.means(), entry.name, knob)
        points.append(point_metrics(knob, after, before, norep_state))
        eval_seconds += time.perf_counter() - clock
        bar.update(1)
    bar.close()
    extras.update(_call(entry, method.record_extras, model, context))
    record = ResultRecord(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        method=entry.name, method_type=method.method_type, method_source=entry.source,
        hyperparameters=method.hyperparameters(), resources=method.resources(), knob=method.knob, grid=plan.grid,
        setting=setting.name, preset=config.preset, setting_hash=setting.setting_hash,
        corpus=setting.corpus_name, corpus_hash=setting.corpus_hash,
        checkpoint=CheckpointInfo(target.label, target.checkpoint.kind, target.view, str(target.checkpoint.directory),
                                  target.checkpoint.manifest["train_seconds"]),
        reference=Reference(before_label, str(norep.directory)),
        seeds=Seeds(method=seed, train=config.train.seed, data=config.data.seed),
        config=config.to_dict(), versions=package_versions(), git_commit=git_commit(),
        before=before, no_rep=norep_state, points=points, summary=summarize_curve(points), extras=extras,
        timings=Timings(round(method_seconds, 3), round(eval_seconds, 3), round(time.perf_counter() - started, 3)),
        directions={k: ("higher" if v else "lower") for k, v in DIRECTIONS.items()})
    record.write(plan.path)
    return record, plan.path, True


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
