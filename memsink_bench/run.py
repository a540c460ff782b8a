"""`memsink-bench run`: one method on one checkpoint of one setting -> one result record.

`plan_run` decides what a run is (method, hyperparameters, knob grid, checkpoint) and where its
record goes, without computing anything. `run_method` is a short loop: it resolves the
checkpoints, evaluates the base state once (cached), walks the method's sweep of model states
(each method type yields its own, see methods/base.py), scores every state, and writes a
`ResultRecord`.
"""

from __future__ import annotations

import copy
import inspect
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from .checkpoints import (NOT_IN_KEY, evaluate_cached, get_checkpoint, git_commit, package_versions,
                          resolve_target, viewed_model)
from .config import (METHOD_SECTIONS, ExperimentConfig, MetricsConfig, TrainConfig, data_dir, identity_config,
                     parse_override, typed_value)
from .errors import UserError, did_you_mean
from .kinds import NEVER_SEEN, NO_REP, STANDARD
from .methods.base import MethodContext
from .methods.registry import Entry, registry
from .metrics import AUC_MAX_DEGRADATION, directions, measure_state, point_metrics, point_order, summarize_curve
from .progress import progress
from .record import (IDENTITY_FORMAT, CheckpointInfo, Reference, ResultRecord, Seeds, State, Timings, forget_key,
                     record_path, span_of)
from .setting import Setting, forget_set, forget_view, retain_set, setting_fingerprint
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


def plan_method(method_spec: str, checkpoint_spec: str | None, method_overrides: list[str]):
    """(entry, method instance, knob grid, checkpoint spec) of a run, nothing computed."""
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
    return entry, method, grid, checkpoint_spec or STANDARD


def identity_path(results: Path, setting: str, preset: str, entry: Entry, method, grid: list, checkpoint_spec: str,
                  config: dict, setting_hash: str, seed: int) -> Path:
    """The record path: the digest of everything that defines the run (never speed or memory knobs)."""
    identity = {"method": entry.name, "source": entry.source, "hyper": method.hyperparameters(), "grid": grid,
                "checkpoint": checkpoint_spec, "config": config, "seed": seed, "setting_hash": setting_hash,
                "schema": IDENTITY_FORMAT, "eval": EVAL_VERSION, "training": TRAINING_REVISION}
    return record_path(results, setting, preset, entry.name, checkpoint_spec, identity)


def plan_run(method_spec: str, config: ExperimentConfig, results: Path, checkpoint_spec: str | None = None,
             method_overrides: list[str] = (), seed: int = 0) -> RunPlan:
    """Resolve the method, its hyperparameters and knob grid, and the record path its identity gives."""
    entry, method, grid, checkpoint_spec = plan_method(method_spec, checkpoint_spec, method_overrides)
    fields = config.to_dict()
    for name in NOT_IN_KEY:
        fields["train"].pop(name, None)
    fields["data"].pop("corpus_path", None)       # the content hash stands for it
    fields = identity_config(fields)              # default metric parameters, an extraction forget span: as before
    path = identity_path(results, config.setting, config.preset, entry, method, grid, checkpoint_spec,
                         fields, setting_fingerprint(config.setting, config.data)[0], seed)
    return RunPlan(entry, entry.load(), method, grid, checkpoint_spec, path)


@dataclass
class Bases:
    """What a run's sweep starts from and what it is measured against."""

    model: object              # the model handed to the method (a view folded in, or as trained)
    before: State              # forgetting and degradation are measured from this state
    before_label: str
    reference: State           # the "never memorized" level the gap closed is measured to
    reference_label: str
    checkpoint: CheckpointInfo
    extras: dict
    never_seen: State | None = None   # a model that never saw the forget set (PrivLeak's reference)
    never_seen_model: object = None   # ... and the model itself (relearning's reference)
    unedited: object = None           # the memorizing model forgetting is measured from (robustness)
    relearn_lr: float = 5e-5          # the training run's peak learning rate (pretrained: a fine-tuning rate)
    params: MetricsConfig = field(default_factory=MetricsConfig)   # the attacks' and robustness' parameters
    train: TrainConfig | None = None  # the training run's optimizer and batch settings (relearning uses them)


def checkpoint_bases(plan: RunPlan, config: ExperimentConfig, setting: Setting, workdir: Path, progress: bool,
                     device, scored: Setting | None = None) -> Bases:
    """A task setting's checkpoints: the target view, the no-rep reference, and for a training-time
    kind the kind it replaces (its own default view recorded beside). Checkpoints come from
    `setting`; their states are measured on `scored` (a forget_view of it, default: itself)."""
    full, setting = setting, scored if scored is not None else setting
    target = resolve_target(plan.checkpoint_spec, workdir, full, config, progress, device)
    norep = get_checkpoint(workdir, full, NO_REP, config, progress=progress, device=device)
    params = config.metrics
    reference = evaluate_cached(workdir, setting, norep, "model", norep.model, params=params)
    unseen = get_checkpoint(workdir, full, NEVER_SEEN, config, progress=progress, device=device)
    never_seen = evaluate_cached(workdir, setting, unseen, "model", unseen.model, params=params)
    info = CheckpointInfo(target.label, target.checkpoint.kind, target.view, str(target.checkpoint.directory),
                          target.checkpoint.manifest["train_seconds"])
    replaced = plan.method.scored_against()
    if replaced is None:
        model = viewed_model(target, config)
        before = evaluate_cached(workdir, setting, target.checkpoint, target.view, model, params=params)
        return Bases(model, before, target.label, reference, str(norep.directory), info, {}, never_seen,
                     unseen.model, model, config.train.lr, params, config.train)
    standard = get_checkpoint(workdir, full, replaced, config, progress=progress, device=device)
    own_view = evaluate_cached(workdir, setting, target.checkpoint, "default", viewed_model(target, config),
                               params=params)
    before = evaluate_cached(workdir, setting, standard, "model", standard.model, params=params)
    return Bases(target.checkpoint.model, before, replaced, reference, str(norep.directory), info,
                 {"checkpoint_default_view": own_view.means()}, never_seen, unseen.model, standard.model,
                 config.train.lr, params, config.train)


def run_method(*, method_spec: str, config: ExperimentConfig, setting: Setting, workdir: Path, results: Path,
               checkpoint_spec: str | None, method_overrides: list[str], force: bool = False,
               progress: bool = True, seed: int = 0) -> tuple[ResultRecord, Path, bool]:
    """Run one method on a task setting and write its record; returns (record, path, computed)."""
    from .models import select_device

    device = select_device(config.train.device)
    plan = plan_run(method_spec, config, results, checkpoint_spec, method_overrides, seed)
    reused = _reusable(plan.path, force)
    if reused is not None:
        return reused, plan.path, False
    started = time.perf_counter()
    scored = forget_view(setting, config.scoring.forget_count)     # the setting itself unless forgetting a subset
    bases = checkpoint_bases(plan, config, setting, workdir, progress, device, scored=scored)
    context = MethodContext(targets=forget_set(scored, config.scoring.forget_span), retain=retain_set(setting),
                            pad_id=setting.tokenizer.pad_token_id, device=device, seed=seed, config=config,
                            extraction_targets=scored.repeated)
    record = sweep_record(plan, bases, scored, context, progress, config=config.to_dict(), preset=config.preset,
                          seeds=Seeds(method=seed, train=config.train.seed, data=config.data.seed), started=started)
    record.write(plan.path)
    return record, plan.path, True


def _reusable(path: Path, force: bool) -> ResultRecord | None:
    if not path.is_file() or force:
        return None
    try:
        return ResultRecord.read(path)
    except ValueError as error:
        print(f"memsink-bench: record {path} is unreadable ({error}); recomputing it", file=sys.stderr)
        return None


def sweep_record(plan: RunPlan, bases: Bases, setting: Setting, context: MethodContext, progress: bool, *,
                 config: dict, preset: str, seeds: Seeds, started: float) -> ResultRecord:
    """Walk the method's sweep of states, score each against the bases, and build the record."""
    method, entry = plan.method, plan.entry
    method_seconds, eval_seconds, robustness_seconds, points, chosen, stopped = 0.0, 0.0, 0.0, [], None, None
    bar = _progress(len(plan.grid), f"{entry.name} on {bases.checkpoint.label}", progress)
    states = iter(_call(entry, method.sweep_states, bases.model, context, plan.grid))
    while True:
        clock = time.perf_counter()
        item = _call(entry, next, states, None)           # the method does its work here
        method_seconds += time.perf_counter() - clock
        if item is None:
            break
        knob, state_model, scale = item
        clock = time.perf_counter()
        after = measure_state(state_model, setting, None if scale is None else (lambda ids, s=scale: s),
                              params=bases.params)
        _check_finite(after.means(), entry.name, knob)
        points.append(point_metrics(knob, after, bases.before, bases.reference, bases.never_seen))
        if _better_within(points[-1], chosen[0] if chosen else None, forget_key(span_of(config))):
            # the point robustness is measured at; an editor walking its steps incrementally
            # (co-unlearn, co-edit, sparse-ft) yields one model it goes on training, so keep a copy
            kept = state_model if state_model is bases.model else copy.deepcopy(state_model)
            chosen = (points[-1], kept, scale)
        eval_seconds += time.perf_counter() - clock
        bar.update(1)
        if method.stops_past_budgets and points[-1].degradation >= AUC_MAX_DEGRADATION:
            stopped = {"knob": knob, "degradation": points[-1].degradation, "beyond": AUC_MAX_DEGRADATION}
            _call(entry, getattr(states, "close", lambda: None))   # no later point counts in a budget or the AUC
            break
    bar.close()
    extras = {**bases.extras, **_call(entry, method.record_extras, bases.model, context)}
    if stopped:
        extras["sweep_stopped"] = stopped
    if chosen is not None and bases.unedited is not None:
        from .robustness import robustness_at

        clock = time.perf_counter()
        relearn_lr = bases.params.relearn_lr or bases.relearn_lr     # metrics.relearn_lr, else the training peak
        extras["robustness"] = {"knob": chosen[0].knob, "relearn_lr": relearn_lr, **robustness_at(
            chosen[1], chosen[2], bases.unedited, bases.never_seen_model, setting, relearn_lr, context.seed,
            bases.params, bases.train)}
        robustness_seconds = time.perf_counter() - clock
    return ResultRecord(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        method=entry.name, method_type=method.method_type, method_source=entry.source,
        hyperparameters=method.hyperparameters(), resources=method.resources(), knob=method.knob, grid=plan.grid,
        setting=setting.name, preset=preset, setting_hash=setting.setting_hash,
        corpus=setting.corpus_name, corpus_hash=setting.corpus_hash, checkpoint=bases.checkpoint,
        reference=Reference(bases.before_label, bases.reference_label), seeds=seeds, config=config,
        versions=package_versions(), git_commit=git_commit(), before=bases.before, no_rep=bases.reference,
        points=points, summary=summarize_curve(points), extras=extras,
        timings=Timings(round(method_seconds, 3), round(eval_seconds, 3), round(time.perf_counter() - started, 3),
                        round(robustness_seconds, 3)),
        never_seen=bases.never_seen,
        directions=directions(bases.params))


def _better_within(point, best, key: str = "gap_closed", budget: float = 0.05) -> bool:
    """Is `point` the new best gap closed on the forget span (`key`, capped at 1; ties to the
    smaller degradation) within the primary budget (the protocol's chosen point, as best_point)?"""
    if getattr(point, key) is None or point.degradation > budget:
        return False
    return best is None or point_order(point, key) > point_order(best, key)


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


OPTIONAL_MEANS = ("neighbour_loss", "other_repeated_loss")   # not measured in every setting


def _check_finite(metrics: dict, name: str, knob) -> None:
    bad = [k for k, v in metrics.items() if (v is None and k not in OPTIONAL_MEANS)
           or (isinstance(v, float) and not math.isfinite(v))]
    if bad:
        raise UserError(f"method '{name}' produced a model with non-finite {bad[0]} at knob {knob}",
                        "check the method's edit for NaN/inf weights")


def _progress(total: int, description: str, enabled: bool):
    return progress(total, description, "point", enabled=enabled)
