"""Checkpoint directories: weights (safetensors), tokenizer, manifest, optimizer state, metrics.

A checkpoint is cached under `<workdir>/checkpoints/<setting>/<kind>-<key>` where the key hashes
everything that determines its weights, so later commands reuse it. It is trained in
`<workdir>/runs/<same name>` (snapshots for --resume, metrics.jsonl) and renamed into place
only when complete. Loading validates the manifest against the setting it is used with.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import json
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .config import ExperimentConfig
from .errors import UserError
from .kinds import KINDS, check_kind, get_kind
from .setting import Setting, setting_fingerprint
from .train import TRACE_FILE, TRAINING_REVISION
from .storage import atomic_directory, file_lock

MANIFEST = "manifest.json"
REQUIRED_FILES = (MANIFEST, "config.json", "model.safetensors")
CHECKPOINT_FORMAT = 1


NOT_IN_KEY = ("device", "threads", "trace_repeated", "log_with")   # train fields that do not change the weights


def checkpoint_key(kind: str, config: ExperimentConfig, setting_hash: str) -> str:
    """Hash of what determines the weights: setting, model, training and the kind's own knobs."""
    train = {k: v for k, v in vars(config.train).items() if k not in NOT_IN_KEY}
    payload = {"kind": kind, "setting_hash": setting_hash, "model": vars(config.model), "train": train,
               "format": CHECKPOINT_FORMAT, "training_revision": TRAINING_REVISION}
    payload.update(get_kind(kind).key_fields(config))
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_name(kind: str, config: ExperimentConfig) -> str:
    """`<kind>-<key>`; the setting's key follows its documents, which are hashed without building it."""
    return f"{kind}-{checkpoint_key(kind, config, setting_fingerprint(config.setting, config.data)[0])}"


def checkpoint_dir(workdir: Path, kind: str, config: ExperimentConfig) -> Path:
    return Path(workdir) / "checkpoints" / config.setting / checkpoint_name(kind, config)


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": platform.python_version(), "memsink-bench": __version__}
    for name in ("torch", "transformers", "tokenizers", "accelerate", "transformer-lens", "captum"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "absent"
    return versions


# the files that decide what a run computes; edits elsewhere (results, docs) do not make a run "-dirty"
CODE_PATHS = ("memsink_bench", "tasks", "baselines", "pyproject.toml")


def git_commit() -> str:
    """HEAD of the source tree, with "-dirty" if the code in CODE_PATHS has uncommitted changes."""
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class Checkpoint:
    directory: Path
    manifest: dict
    model: torch.nn.Module
    tokenizer: object

    @property
    def kind(self) -> str:
        return self.manifest["kind"]


def save_checkpoint(directory: Path, model, tokenizer, optimizer_state: dict, manifest: dict,
                    metrics_path: Path | None) -> None:
    with atomic_directory(directory) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        torch.save(optimizer_state, tmp / "optimizer.pt")
        for log in ("metrics.jsonl", TRACE_FILE):
            source = metrics_path.parent / log if metrics_path is not None else None
            if source is not None and source.exists():
                (tmp / log).write_text(source.read_text())
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def load_checkpoint(directory: Path, setting: Setting | None = None, device="cpu", *, cached: bool = False) -> Checkpoint:
    """Load and validate a checkpoint directory; a foreign or damaged one is a UserError.

    `cached`: the directory is memsink-bench's own cache entry (`checkpoint_dir`), so a damaged one
    may be deleted and retrained. A directory the user named is never advised for deletion.
    """
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"checkpoint {directory} does not exist", "train it with `memsink-bench train` first")
    if not (directory / MANIFEST).is_file():
        raise UserError(f"{directory} is not a memsink-bench checkpoint (it has no {MANIFEST})",
                        "give a directory written by `memsink-bench train`, or a kind such as --checkpoint standard")
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise _damaged(directory, f"its {MANIFEST} is not valid JSON", cached) from None
    if not isinstance(manifest, dict) or manifest.get("format") != CHECKPOINT_FORMAT or "kind" not in manifest:
        raise UserError(f"{directory} is not a memsink-bench checkpoint (format "
                        f"{manifest.get('format') if isinstance(manifest, dict) else None})",
                        "give a directory written by `memsink-bench train`")
    if manifest["kind"] not in KINDS:                 # it picks the views and the record label
        raise UserError(f"{directory} has a manifest of unknown kind {manifest['kind']!r}",
                        "give a directory written by `memsink-bench train`")
    for name in REQUIRED_FILES:
        if not (directory / name).is_file():
            raise _damaged(directory, f"it lacks {name}", cached)
    if setting is not None:
        check_belongs(manifest, setting, directory)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(directory), use_safetensors=True,
                                                     attn_implementation="sdpa")
    except Exception as error:  # safetensors raises its own error types on a truncated file
        raise _damaged(directory, f"its weights are unreadable ({type(error).__name__})", cached) from None
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    except Exception:
        raise _damaged(directory, "its tokenizer is unreadable", cached) from None
    if setting is not None and tokenizer.get_vocab() != setting.tokenizer.get_vocab():
        raise UserError(f"checkpoint {directory} has a different tokenizer than setting '{setting.name}'",
                        "use a checkpoint trained on this setting")
    model.to(device).eval()
    return Checkpoint(directory, manifest, model, tokenizer)


def _damaged(directory: Path, problem: str, cached: bool) -> UserError:
    if cached:      # our own cache entry: safe to remove, the next run retrains it
        return UserError(f"cached checkpoint {directory} is damaged: {problem}",
                         f"delete {directory} (memsink-bench's cache entry) and run again to retrain it")
    return UserError(f"checkpoint {directory} is damaged: {problem}",
                     "copy it again from where it was trained, or train one with `memsink-bench train`")


def check_belongs(manifest: dict, setting: Setting, directory: Path) -> None:
    if manifest.get("setting") != setting.name or manifest.get("setting_hash") != setting.setting_hash:
        raise UserError(f"checkpoint {directory} was trained on setting '{manifest.get('setting')}' "
                        f"({manifest.get('setting_hash')}), not '{setting.name}' ({setting.setting_hash})",
                        "pass a checkpoint of this setting and preset")
    if manifest.get("corpus_hash") != setting.corpus_hash:
        raise UserError(f"checkpoint {directory} was trained on a different corpus "
                        f"({manifest.get('corpus')} {manifest.get('corpus_hash', '')[:12]})",
                        "results from different corpora must not mix: retrain on this corpus")


def get_checkpoint(workdir: Path, setting: Setting, kind: str, config: ExperimentConfig, *,
                   resume: bool = False, progress: bool = True, device="cpu") -> Checkpoint:
    """The cached checkpoint, or train it (once across processes: a file lock guards training)."""
    from .train import train

    check_kind(kind)
    directory = checkpoint_dir(workdir, kind, config)
    if (directory / MANIFEST).is_file():
        return load_checkpoint(directory, setting, device, cached=True)
    rank, world = _launch_rank()
    lock = workdir / "locks" / f"{setting.name}-{directory.name}.lock"
    message = f"waiting: another process is training {kind} on {setting.name} ({directory.name})"
    # under `accelerate launch` the ranks train together: a lock would deadlock them
    with (contextlib.nullcontext() if world > 1 else file_lock(lock, message)):
        if (directory / MANIFEST).is_file():
            return load_checkpoint(directory, setting, device, cached=True)
        run_dir = workdir / "runs" / setting.name / directory.name
        result = train(setting, kind, config, run_dir, resume=resume, progress=progress)
        if rank != 0:
            torch.distributed.barrier()                        # wait for rank 0 to save
            return load_checkpoint(directory, setting, device, cached=True)
        manifest = {
            "format": CHECKPOINT_FORMAT, "training_revision": TRAINING_REVISION, "kind": kind,
            "setting": setting.name, "preset": config.preset,
            "setting_hash": setting.setting_hash, "corpus": setting.corpus_name,
            "corpus_hash": setting.corpus_hash, "checkpoint_key": directory.name.rsplit("-", 1)[-1],
            "config": config.to_dict(), "seeds": {"train": config.train.seed, "data": config.data.seed},
            "versions": package_versions(), "git_commit": git_commit(),
            "train_seconds": round(result.seconds, 2), "steps": result.steps, "processes": result.processes,
            "final_metrics": result.final, "setting_summary": setting.describe(),
        }
        save_checkpoint(directory, result.model, setting.tokenizer, result.optimizer_state, manifest,
                        run_dir / "metrics.jsonl")
        shutil.rmtree(run_dir / "snapshot", ignore_errors=True)    # the checkpoint supersedes it
        if world > 1:
            torch.distributed.barrier()
    return load_checkpoint(directory, setting, device, cached=True)


def _launch_rank() -> tuple[int, int]:
    """(rank, world size) when started by `accelerate launch` / torchrun, else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def list_checkpoints(workdir: Path) -> list[dict]:
    rows = []
    for manifest_path in sorted((workdir / "checkpoints").glob(f"*/[!.]*/{MANIFEST}")):   # not .tmp-* leftovers
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        rows.append({"setting": manifest.get("setting"), "preset": manifest.get("preset"),
                     "kind": manifest.get("kind"), "val_loss": manifest.get("final_metrics", {}).get("val_loss"),
                     "train_seconds": manifest.get("train_seconds"), "path": str(manifest_path.parent)})
    return rows


# --- what a command works on: a checkpoint and one of its views ------------------------------

@dataclass
class Target:
    """A checkpoint and the view of it a method or analysis works on."""

    checkpoint: Checkpoint
    view: str
    label: str            # KIND, or KIND:VIEW for a view other than the default

    def view_spec(self, config: ExperimentConfig):
        from .models import mlp_shape

        return get_kind(self.checkpoint.kind).views(config, mlp_shape(self.checkpoint.model)[1])[self.view]


def resolve_target(spec: str, workdir: Path, setting: Setting, config: ExperimentConfig, progress: bool,
                   device) -> Target:
    """`KIND[:VIEW]` (trained or reused) or a checkpoint directory PATH."""
    from .errors import did_you_mean
    from .models import mlp_shape

    kind, _, view = spec.partition(":")
    if kind in KINDS:
        checkpoint = get_checkpoint(workdir, setting, kind, config, progress=progress, device=device)
    elif Path(spec).is_dir():
        checkpoint, view = load_checkpoint(Path(spec), setting, device), ""
        kind = checkpoint.kind
    else:
        raise UserError(f"unknown checkpoint '{spec}'", did_you_mean(kind, KINDS) + " or a checkpoint directory")
    available = get_kind(kind).views(config, mlp_shape(checkpoint.model)[1])
    view = view or "default"
    if view not in available:
        raise UserError(f"checkpoint kind '{kind}' has no view '{view}'", did_you_mean(view, available))
    return Target(checkpoint, view, kind if view == "default" else f"{kind}:{view}")


def fold_scale(model, scale: torch.Tensor) -> None:
    """Fold a per-layer neuron scale [1 or layers, 1, 1, d_mlp] into the down-projection weights,
    so a checkpoint view becomes a plain model any method can take."""
    from .models import mlp_layout, weight_layout

    with torch.no_grad():
        for index, layer in enumerate(mlp_layout(model)):
            row = scale[index if scale.shape[0] > 1 else 0].reshape(-1).to(layer.down.weight.dtype)
            if weight_layout(layer.down) == "conv1d":
                layer.down.weight.mul_(row[:, None])
            else:
                layer.down.weight.mul_(row[None, :])


def viewed_model(target: Target, config: ExperimentConfig):
    """A copy of the checkpoint's model with its view folded in (views are per-neuron constants)."""
    import copy

    model = copy.deepcopy(target.checkpoint.model)
    view = target.view_spec(config)
    if view.scale_for is not None:
        scale = view.scale_for(torch.tensor([1, 2]))      # two IDs: a per-sequence view varies with them
        if scale.shape[1] != 1:
            raise UserError(f"view '{target.view}' depends on the sequence and cannot be edited",
                            "choose a fixed view such as 'mean' or 'drop'")
        fold_scale(model, scale)
    return model


EVAL_CACHE_FORMAT = 4     # 2: per-sequence values kept beside the means; 3: membership inference, extraction;
                          # 4: the forget set's neighbours


def evaluate_cached(workdir: Path, setting: Setting, checkpoint: Checkpoint, view: str, model, scale_for=None,
                    params=None):
    """The `State` of an unedited checkpoint view, evaluated once and cached beside the checkpoints
    (one entry per set of non-default metric parameters `params`, a MetricsConfig)."""
    from .metrics import measure_state
    from .record import State, _state
    from .storage import atomic_write_json

    changed = params.non_default() if params is not None else {}
    suffix = "-m" + hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8] if changed else ""
    if getattr(setting, "forget_count", 0):                 # a forget_view: its own forget set
        suffix += f"-f{setting.forget_count}"
    name = f"{checkpoint.directory.name}-{view}-e{EVAL_CACHE_FORMAT}{suffix}.json"
    path = Path(workdir) / "evals" / setting.name / name
    if path.is_file():
        try:
            return _state(State, json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError):
            pass                                      # a torn cache entry is simply recomputed
    state = measure_state(model, setting, scale_for, params=params)
    import dataclasses
    atomic_write_json(path, dataclasses.asdict(state))
    return state
