"""One training loop for every checkpoint kind (standard, no-rep, gradient-masked, MemSinks).

AdamW, linear warm-up then cosine decay to lr * min_lr_ratio, periodic evaluation of validation
and repeated-sequence loss logged as JSONL, a resumable snapshot at every evaluation. The data
order is a pure function of (seed, epoch), so a resumed run replays exactly the batches an
uninterrupted run would see, and its final weights are bit-identical on CPU.

Written with `accelerate`: `accelerate launch -m memsink_bench.cli train ...` shards every
batch across processes (rows rank::world) and all-reduces gradients.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .kinds import get_kind
from .config import ExperimentConfig
from .errors import UserError
from .evaluate import collate, sequence_losses
from .interventions import GradientRouter, ProjectionScaler
from .models import build_model, mlp_shape, select_device
from .progress import progress
from .setting import Setting
from .storage import atomic_directory

FRESH_ID_LOW, FRESH_ID_HIGH = 1 << 24, 1 << 31
# Bumped whenever the training numerics change (even by rounding), so that checkpoints and
# records made by an earlier loop are never reused as if this one had made them.
# 2: fused GELU and AdamW kernels, unembedding at labelled positions only, batch rows grouped
#    by role, gradient routing as per-group matmuls.
TRAINING_REVISION = 2
TRACE_FILE = "repeated_trace.jsonl"


@dataclass
class Example:
    role: str          # "repeated" | "single"
    index: int         # index into setting.<role>
    seq_id: int        # sequence ID the MemSinks mask is drawn from (noisy for some repetitions)


def epoch_examples(setting: Setting, kind: str, config: ExperimentConfig, epoch: int) -> list[Example]:
    """The shuffled examples of one epoch; ID noise d gives some repetitions a fresh random ID."""
    repetitions = get_kind(kind).repetitions(config)
    rng = random.Random(f"order:{config.train.seed}:{epoch}")
    noise_rng = random.Random(f"id-noise:{config.data.seed}:{epoch}")
    examples = [Example("single", i, setting.single.ids[i]) for i in range(len(setting.single))]
    for i in range(len(setting.repeated)):
        for _ in range(repetitions):
            seq_id = setting.repeated.ids[i]
            if config.data.id_noise and noise_rng.random() < config.data.id_noise:
                seq_id = noise_rng.randrange(FRESH_ID_LOW, FRESH_ID_HIGH)
            examples.append(Example("repeated", i, seq_id))
    rng.shuffle(examples)
    return examples


def steps_per_epoch(setting: Setting, kind: str, config: ExperimentConfig) -> int:
    n = len(setting.single) + len(setting.repeated) * get_kind(kind).repetitions(config)
    return math.ceil(n / config.train.batch_size)


def learning_rate(step: int, total: int, config: ExperimentConfig) -> float:
    train = config.train
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    progress = (step - train.warmup_steps) / max(1, total - train.warmup_steps)
    floor = train.lr * train.min_lr_ratio
    return floor + 0.5 * (train.lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")


def make_optimizer(model, config: ExperimentConfig, device: torch.device | None = None) -> torch.optim.AdamW:
    """Weight decay on matrices (and embeddings), none on biases and LayerNorm gains.

    The fused AdamW kernel (one pass over each parameter instead of a dozen elementwise ops) is
    used when the parameters will live on CPU or CUDA (`device`, else where they are now); other
    devices get PyTorch's default implementation.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    fused = all((device or p.device).type in FUSED_OPTIMIZER_DEVICES and p.is_floating_point()
                for p in decay + no_decay)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.train.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=config.train.lr, betas=(config.train.beta1, config.train.beta2), fused=fused or None)


class BatchPlan:
    """Maps a global step to its batch of examples, one epoch's order cached at a time."""

    def __init__(self, setting: Setting, kind: str, config: ExperimentConfig):
        self.setting, self.kind, self.config = setting, kind, config
        self.per_epoch = steps_per_epoch(setting, kind, config)
        self.total = self.per_epoch * config.train.epochs
        self._epoch, self._examples = -1, []

    def examples(self, step: int) -> list[Example]:
        epoch, within = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._examples = epoch, epoch_examples(self.setting, self.kind, self.config, epoch)
        size = self.config.train.batch_size
        # a batch is a set: putting its single-seen examples before its repeated ones changes no
        # loss or gradient, and gives gradient routing contiguous rows per group (views, no copies)
        return sorted(self._examples[within * size:(within + 1) * size], key=lambda e: e.role == "repeated")


def make_batch(setting: Setting, examples: list[Example], pad_id: int):
    sets = {"repeated": setting.repeated, "single": setting.single}
    tokens = [sets[e.role].tokens[e.index] for e in examples]
    spans = [sets[e.role].spans[e.index] for e in examples]
    batch = collate(tokens, [e.seq_id for e in examples], spans, pad_id)
    is_repeated = torch.tensor([e.role == "repeated" for e in examples])
    return batch, is_repeated


def evaluate_during_training(model, setting: Setting, kind: str, config: ExperimentConfig,
                             d_mlp: int, pad_id: int) -> dict[str, float]:
    """Validation loss (deployable view) and repeated-sequence loss under every view of the kind."""
    views = get_kind(kind).views(config, d_mlp)
    main = views[get_kind(kind).validation_view]
    metrics = {"val_loss": sequence_losses(model, setting.validation, pad_id, scale_for=main.scale_for)
               .summary()["loss"]}
    for name, view in views.items():
        if name == "default":
            continue
        report = sequence_losses(model, setting.repeated, pad_id, scale_for=view.scale_for).summary()
        suffix = "" if view is main else f"@{name}"
        metrics[f"repeated_loss{suffix}"] = report["loss"]
        metrics[f"repeated_target_loss{suffix}"] = report["target_loss"]
    metrics.update(get_kind(kind).training_diagnostics(model, setting, config, d_mlp, pad_id))
    return metrics


class LabelledLoss(torch.nn.Module):
    """The training forward pass: the LM's hidden states, then the unembedding and cross-entropy
    at labelled positions only.

    Padding carries no label, so its logits never enter the loss; not computing them skips the
    largest matmul and the softmax for every pad position (23% of the cpu preset's tokens), and
    the loss and its gradients are the same. One module, so DDP's gradient synchronisation sees
    the whole forward pass. Returns the per-token NLL of the labelled positions and their mask.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.model.base_model(input_ids=input_ids).last_hidden_state
        labelled = labels != -100
        logits = self.model.get_output_embeddings()(hidden[labelled])
        return torch.nn.functional.cross_entropy(logits.float(), labels[labelled], reduction="none"), labelled


def _trace_repeated(trace: "MetricsLog", step: int, nll: torch.Tensor, labelled: torch.Tensor, is_repeated,
                    examples) -> None:
    """The training loss (under the sequence's own mask, as the update sees it) of each repeated
    sequence in this batch: the learning/forgetting dynamics of MemSinks Fig. 7."""
    with torch.no_grad():
        rows = labelled.nonzero()[:, 0]
        per_row = torch.zeros(labelled.shape[0], device=nll.device).index_add_(0, rows, nll.float())
        per_row = per_row / labelled.sum(1)
    for row in is_repeated.nonzero().flatten().tolist():
        trace.write({"step": step + 1, "sequence": examples[row].index, "loss": float(per_row[row])})


class MetricsLog:
    """JSONL metrics in the run directory; on resume, lines after the snapshot step are dropped."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        lines = []
        if resume_step is not None and path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break                          # a torn last line from a crash
                if record["step"] <= resume_step:
                    lines.append(line)
        path.write_text("".join(line + "\n" for line in lines))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text().splitlines()]


def save_snapshot(run_dir: Path, model, optimizer, step: int) -> None:
    from safetensors.torch import save_model

    with atomic_directory(run_dir / "snapshot") as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()},
                   tmp / "optimizer.pt")
        (tmp / "step.json").write_text(json.dumps({"step": step}))


def load_snapshot(run_dir: Path, model, optimizer) -> int | None:
    from safetensors.torch import load_model

    snapshot = run_dir / "snapshot"
    if not (snapshot / "step.json").is_file():
        # a crash between the two renames of a snapshot save leaves the previous one as .old-snapshot-*
        previous = sorted(run_dir.glob(".old-snapshot-*/step.json"),
                          key=lambda path: json.loads(path.read_text())["step"])
        if not previous:
            return None
        snapshot = previous[-1].parent
    try:
        load_model(model, str(snapshot / "model.safetensors"))
        state = torch.load(snapshot / "optimizer.pt", weights_only=True)   # never unpickles code
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        return json.loads((snapshot / "step.json").read_text())["step"]
    except Exception as error:  # safetensors / the weights-only unpickler / a foreign state dict
        raise UserError(f"the training snapshot {snapshot} is unreadable ({type(error).__name__})",
                        "run without --resume to start this checkpoint over") from None


@dataclass
class TrainResult:
    model: torch.nn.Module
    optimizer_state: dict
    metrics: list[dict]
    final: dict[str, float]
    seconds: float
    steps: int
    processes: int = 1


def train(setting: Setting, kind: str, config: ExperimentConfig, run_dir: Path, *, resume: bool = False,
          stop_after: int | None = None, progress: bool = True) -> TrainResult:
    """Train one checkpoint kind on a built setting; snapshots and metrics go to `run_dir`.

    `stop_after` ends the run after that many steps (used to test interruption and resume).
    """
    from accelerate import Accelerator

    from . import tracking

    device = select_device(config.train.device)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    accelerator = Accelerator(cpu=device.type == "cpu", log_with=tracking.trackers(
        config.train.log_with, run_dir / "tracking", f"{setting.name}/{run_dir.name}"))
    run_dir.mkdir(parents=True, exist_ok=True)
    tracking.start(accelerator, config.to_dict())
    pad_id = setting.tokenizer.pad_token_id
    model = build_model(config.model, setting.vocab_size, config.data.seq_len, config.train.seed)
    _, d_mlp = mlp_shape(model)
    optimizer = make_optimizer(model, config, device)
    start_step = (load_snapshot(run_dir, model, optimizer) if resume else None)
    main_process = accelerator.is_main_process
    log = MetricsLog(run_dir / "metrics.jsonl", start_step) if main_process else None
    trace = MetricsLog(run_dir / TRACE_FILE, start_step) if main_process and config.train.trace_repeated else None
    forward, optimizer = accelerator.prepare(LabelledLoss(model), optimizer)
    inner = accelerator.unwrap_model(forward).model
    kind_spec = get_kind(kind)
    scaler, router = ProjectionScaler(inner), GradientRouter(inner) if kind_spec.routes_gradients else None
    plan = BatchPlan(setting, kind, config)
    rank, world = accelerator.process_index, accelerator.num_processes
    step = start_step or 0
    began = time.perf_counter()
    bar = _progress(plan.total, step, kind, enabled=progress and main_process)
    forward.train()
    try:
        while step < plan.total and (stop_after is None or step < stop_after):
            whole = plan.examples(step)
            examples = whole[rank::world] or whole
            batch, is_repeated = make_batch(setting, examples, pad_id)
            batch, is_repeated = batch.to(accelerator.device), is_repeated.to(accelerator.device)
            scaler.scale = kind_spec.training_scale(config, d_mlp, batch.ids)
            if router is not None:
                router.allowed = kind_spec.routing_mask(config, d_mlp, is_repeated)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, plan.total, config)
            nll, labelled = forward(batch.input_ids, batch.labels)
            loss = nll.mean()
            if trace is not None and is_repeated.any():
                _trace_repeated(trace, step, nll.detach(), labelled, is_repeated, examples)
            accelerator.backward(loss)
            if config.train.grad_clip:
                accelerator.clip_grad_norm_(forward.parameters(), config.train.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            if step % config.train.eval_every == 0 or step == plan.total:
                scaler.scale = None
                if router is not None:
                    router.allowed = None
                record = {"step": step, "epoch": step / plan.per_epoch, "train_loss": float(loss.detach()),
                          "lr": optimizer.param_groups[0]["lr"],
                          **evaluate_during_training(inner, setting, kind, config, d_mlp, pad_id)}
                bar.set_postfix(val=f"{record['val_loss']:.3f}", rep=f"{record['repeated_loss']:.3f}")
                if main_process:
                    log.write(record)
                    accelerator.log(tracking.scalars(record), step=step)
                    if step < plan.total:
                        save_snapshot(run_dir, inner, optimizer, step)
                forward.train()
    finally:
        bar.close()
        if router is not None:                  # patches come off in reverse order
            router.remove()
        scaler.remove()
        tracking.finish(accelerator)
    records = log.records() if main_process else []
    final = records[-1] if records and records[-1]["step"] == plan.total else {}
    return TrainResult(inner, optimizer.state_dict(), records, final,
                       time.perf_counter() - began, step, world)


def _progress(total: int, initial: int, kind: str, enabled: bool):
    return progress(total, f"train {kind}", "step", enabled=enabled, initial=initial)
