"""Bring your own model and text: the paragraphs a pretrained causal LM memorized, as a setting.

Given a pretrained HF causal LM (a local directory or a hub id) and a file of candidate
paragraphs (.txt one per line, .jsonl `text`, .parquet `text`), each paragraph is cut to a
P-token prefix and a K-token continuation (50 and 50 by default, as Stoehr et al.) and classified
by the model's greedy exact match of the continuation: memorized (EM >= `em_threshold`, K by
default) or not. Roles:

- forget set (`repeated`): the memorized paragraphs;
- control set: a sample of non-memorized paragraphs, scored like the forget set (`em_control`,
  `control_degradation`);
- retain set (`single`): a disjoint sample of non-memorized paragraphs, what methods may use as
  text to keep intact;
- validation (degradation): the held-out text file the user gives (cut to P + K tokens), or
  non-memorized paragraphs used nowhere else.

There is no no-rep model here. The "never memorized" reference level the gap is measured to is
the same model's loss on the control set: non-memorized paragraphs from the same source, so
gap closed = 1 means the forget set is as hard for the model as text it never memorized.

A built setting is cached under `<workdir>/settings/paragraphs-<key>`, keyed by the model's
content (its weight and config files' hashes, or the hub revision), the paragraphs' and held-out
text's content, and this config; nothing is trained.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UserError
from .setting import SequenceSet, Setting, load_setting_tensors, save_setting

FORMAT = 1
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass
class ParagraphsConfig:
    """The paragraphs setting: which model, which text, how it is cut and split."""

    model: str                          # local HF directory or hub id
    paragraphs: str                     # .txt (one per line), .jsonl (`text`), .parquet (`text`)
    heldout: str | None = None          # held-out text for degradation (else unused non-memorized paragraphs)
    revision: str | None = None         # hub revision (branch, tag or commit)
    prefix_len: int = 50                # P
    continuation_len: int = 50          # K
    em_threshold: int = 0               # memorized if greedy EM >= this; 0 means K (the whole continuation)
    n_control: int = 64
    n_retain: int = 64
    n_validation: int = 200             # held-out sequences (from --heldout, or unused paragraphs)
    seed: int = 0                       # which non-memorized paragraphs go to which role
    trust_remote_code: bool = False     # only when the user asks: it runs the model repository's code
    dtype: str = "auto"                 # auto (float32 on CPU, bfloat16 on GPUs that support it) | ...
    batch_size: int = 0                 # 0: chosen from the model size

    def __post_init__(self):
        for name in ("prefix_len", "continuation_len", "n_control", "n_retain", "n_validation"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserError(f"paragraphs.{name}={getattr(self, name)!r} must be a positive integer",
                                f"set paragraphs.{name} to an integer >= 1")
        if not 0 <= self.em_threshold <= self.continuation_len:
            raise UserError(f"paragraphs.em_threshold={self.em_threshold} is outside [0, K={self.continuation_len}]",
                            "set it to the number of continuation tokens that counts as memorized (0: all K)")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown paragraphs.dtype '{self.dtype}'", f"use one of {', '.join(DTYPES)}")
        if self.batch_size < 0:
            raise UserError("paragraphs.batch_size is negative", "use 0 (automatic) or a positive batch size")

    @property
    def threshold(self) -> int:
        return self.em_threshold or self.continuation_len

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """What decides the setting's sequences, paths left out (the content hashes stand for them)."""
        fields = self.to_dict()
        for name in ("model", "paragraphs", "heldout", "trust_remote_code", "dtype", "batch_size"):
            fields.pop(name)
        return fields


PARAGRAPH_FIELDS = {f.name for f in dataclasses.fields(ParagraphsConfig)}


def paragraphs_config(model: str, paragraphs: str, heldout: str | None, overrides: list[str]) -> ParagraphsConfig:
    """From the CLI flags and `--set paragraphs.KEY=VALUE` overrides (the one --set parser)."""
    from .config import parse_override, typed_value
    from .errors import did_you_mean

    values: dict = {"model": model, "paragraphs": paragraphs, "heldout": heldout}
    defaults = {f.name: f.default for f in dataclasses.fields(ParagraphsConfig)}
    for text in overrides:
        section, key, value = parse_override(text, ("paragraphs", "metrics"))
        if section == "metrics":
            continue                                  # config.metrics_config reads those
        if key not in PARAGRAPH_FIELDS or key in ("model", "paragraphs", "heldout"):
            raise UserError(f"unknown key 'paragraphs.{key}'", did_you_mean(key, sorted(PARAGRAPH_FIELDS)))
        values[key] = typed_value(f"paragraphs.{key}", defaults[key], value)
    return ParagraphsConfig(**values)


# --- the model ---------------------------------------------------------------------------------

def model_identity(config: ParagraphsConfig) -> str:
    """A content hash of a local model directory (config, weights, tokenizer files), or the hub id
    and the commit its revision resolved to."""
    path = Path(config.model)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
            digest.update(file.name.encode())
            with open(file, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        return "sha256:" + digest.hexdigest()
    return f"hub:{config.model}@{config.revision or 'main'}"


def load_model(config: ParagraphsConfig, device):
    """(model, tokenizer) of a causal LM, offline-safe errors; `trust_remote_code` only if asked."""
    from .models import load_pretrained

    path = Path(config.model)
    if path.exists() and not path.is_dir():
        raise UserError(f"--model {path} is a file, not a model directory",
                        "give a directory with config.json, *.safetensors and a tokenizer, or a hub id")
    if path.is_dir() and not (path / "config.json").is_file():
        raise UserError(f"--model {path} is not a Hugging Face model directory (no config.json)",
                        "give a directory written by save_pretrained, or a hub id")
    model, tokenizer = load_pretrained(config.model, revision=config.revision,
                                       trust_remote_code=config.trust_remote_code, dtype=_dtype(config.dtype, device))
    if getattr(model.config, "is_encoder_decoder", False) or not hasattr(model, "get_output_embeddings"):
        raise UserError(f"--model {config.model} is not a causal language model",
                        "give a decoder-only causal LM (GPT-2, GPT-Neo, GPT-NeoX/Pythia, Llama-style)")
    return model.to(device).eval(), tokenizer


def _dtype(name: str, device) -> torch.dtype | None:
    if name == "auto":
        if torch.device(device).type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def auto_batch_size(model, config: ParagraphsConfig) -> int:
    """Sequences per evaluation batch: about 2^27 activation floats per forward, at least 1."""
    if config.batch_size:
        return config.batch_size
    width = getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", 768)
    layers = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", 12)
    tokens = config.prefix_len + config.continuation_len
    return int(max(1, min(64, (1 << 27) // max(1, width * layers * tokens * 4))))


# --- building the setting ----------------------------------------------------------------------

def _file_hash(path: str | None) -> str | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise UserError(f"text file {path} does not exist", "give an existing .txt, .jsonl or .parquet file")
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def setting_key(config: ParagraphsConfig) -> tuple[str, str]:
    """(setting key, paragraphs content hash)."""
    paragraphs_hash = _file_hash(config.paragraphs)
    payload = {"model": model_identity(config), "paragraphs": paragraphs_hash,
               "heldout": _file_hash(config.heldout), "config": config.identity(), "format": FORMAT}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16], paragraphs_hash


def _cut(tokenizer, texts: list[str], length: int) -> list[list[int]]:
    """The first `length` tokens of each text that has that many (shorter ones are left out)."""
    encoded = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    return [ids[:length] for ids in encoded if len(ids) >= length]


def build_paragraph_setting(config: ParagraphsConfig, model, tokenizer, setting_hash: str,
                            paragraphs_hash: str) -> Setting:
    from .corpus.sources import read_document_file
    from .evaluate import sequence_losses

    P, K = config.prefix_len, config.continuation_len
    texts = read_document_file(Path(config.paragraphs))
    sequences = _cut(tokenizer, texts, P + K)
    if not sequences:
        longest = max((len(tokenizer.encode(t, add_special_tokens=False)) for t in texts), default=0)
        raise UserError(f"no paragraph in {config.paragraphs} has P + K = {P + K} tokens (the longest has {longest})",
                        "give longer paragraphs or lower --set paragraphs.prefix_len / paragraphs.continuation_len")
    span = (P, P + K)
    candidates = SequenceSet(sequences, list(range(1, len(sequences) + 1)), [span] * len(sequences))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    matched = sequence_losses(model, candidates, pad, auto_batch_size(model, config)).matched.tolist()
    memorized = [i for i, m in enumerate(matched) if m >= config.threshold]
    if not memorized:
        counts = {m: matched.count(m) for m in sorted(set(matched))}
        raise UserError(f"the model reproduces no paragraph's {K}-token continuation (EM >= {config.threshold}); "
                        f"EM distribution (tokens: paragraphs) {counts}",
                        "give paragraphs the model memorized, or lower --set paragraphs.em_threshold")
    others = [i for i, m in enumerate(matched) if m < config.threshold]
    random.Random(f"paragraph-roles:{config.seed}").shuffle(others)
    n_validation = 0 if config.heldout else config.n_validation
    needed = config.n_control + config.n_retain + n_validation
    if len(others) < needed:
        raise UserError(f"{len(others)} non-memorized paragraphs, but control + retain + validation need {needed}",
                        "give more paragraphs, a --heldout file, or lower paragraphs.n_control / n_retain / n_validation")
    control = candidates.subset(others[:config.n_control])
    retain = candidates.subset(others[config.n_control:config.n_control + config.n_retain])
    if config.heldout:
        held = _cut(tokenizer, read_document_file(Path(config.heldout)), P + K)[:config.n_validation]
        if not held:
            raise UserError(f"no text in --heldout {config.heldout} has {P + K} tokens", "give longer held-out text")
        validation = SequenceSet(held, [0] * len(held), [span] * len(held))
    else:
        validation = candidates.subset(others[config.n_control + config.n_retain:needed])
    return Setting("paragraphs", None, tokenizer, candidates.subset(memorized), retain, validation, control,
                   corpus_name=f"file:{Path(config.paragraphs).name}", corpus_hash=paragraphs_hash,
                   setting_hash=setting_hash)


def get_paragraph_setting(config: ParagraphsConfig, model, tokenizer, workdir: Path) -> Setting:
    """The built setting from the cache when it is there, else classified, built and cached."""
    from .storage import file_lock

    key, paragraphs_hash = setting_key(config)
    directory = Path(workdir) / "settings" / f"paragraphs-{key}"
    if not (directory / "setting.json").is_file():
        with file_lock(Path(workdir) / "locks" / f"setting-{directory.name}.lock"):
            if not (directory / "setting.json").is_file():
                save_setting(build_paragraph_setting(config, model, tokenizer, key, paragraphs_hash), directory,
                             save_tokenizer=False)
    roles = load_setting_tensors(directory)
    return Setting("paragraphs", None, tokenizer, corpus_name=f"file:{Path(config.paragraphs).name}",
                   corpus_hash=paragraphs_hash, setting_hash=key, directory=directory, **roles)


# --- running a method on it ----------------------------------------------------------------------

def model_label(config: ParagraphsConfig) -> str:
    """How the leaderboard names the model: the hub id's last part or the directory's name."""
    return Path(config.model.rstrip("/")).name or config.model


def reference_state(before):
    """The never-memorized level: the same model's losses on non-memorized paragraphs (the control set)."""
    from .record import State

    import dataclasses as dc

    values = before.means()
    values.update(repeated_loss=before.control_loss, repeated_target_loss=before.control_target_loss)
    per_sequence = None
    if before.per_sequence is not None:        # the level as a constant per forget sequence, for bootstraps
        n = len(before.per_sequence.repeated_loss)
        per_sequence = dc.replace(before.per_sequence, repeated_loss=[before.control_loss] * n,
                                  repeated_target_loss=[before.control_target_loss] * n)
    return State(**values, per_sequence=per_sequence)


def run_pretrained(*, method_spec: str, config: ParagraphsConfig, workdir: Path, results: Path,
                   method_overrides: list[str], device, force: bool = False, progress: bool = True, seed: int = 0,
                   loaded=None, metrics=None):
    """Run one post-hoc method on a pretrained model's memorized paragraphs -> (record, path, computed).
    `metrics`: the attacks' parameters (a MetricsConfig; default: its defaults)."""
    import dataclasses
    import time

    from .config import MetricsConfig, metrics_in_key

    from .methods.base import MethodContext
    from .metrics import measure_state
    from .record import CheckpointInfo, Seeds
    from .run import Bases, RunPlan, _reusable, identity_path, plan_method, sweep_record

    entry, method, grid, checkpoint_spec = plan_method(method_spec, None, method_overrides)
    if method.checkpoint_kind is not None:
        raise UserError(f"method '{entry.name}' needs its own training-time '{method.checkpoint_kind}' checkpoint",
                        "on a pretrained model run post-hoc methods (see `memsink-bench ls methods`)")
    key, _ = setting_key(config)
    label = model_label(config)
    metrics = metrics or MetricsConfig()
    recorded = {"paragraphs": config.to_dict(), "metrics": dataclasses.asdict(metrics)}
    path = identity_path(results, "paragraphs", label, entry, method, grid, "pretrained",
                         metrics_in_key({"paragraphs": config.identity(), "model": model_identity(config),
                                         "metrics": recorded["metrics"]}), key, seed)
    plan = RunPlan(entry, entry.load(), method, grid, "pretrained", path)
    reused = _reusable(path, force)
    if reused is not None:
        return reused, path, False
    started = time.perf_counter()
    model, tokenizer = loaded if loaded is not None else load_model(config, device)
    setting = get_paragraph_setting(config, model, tokenizer, workdir)
    batch = auto_batch_size(model, config)
    before = measure_state(model, setting, batch_size=batch, params=metrics)
    bases = Bases(model, before, label, reference_state(before), f"control set of {label}",
                  CheckpointInfo(label, "pretrained", "model", config.model, 0.0),
                  {"model_identity": model_identity(config), "forget_set_size": len(setting.repeated)},
                  unedited=model, params=metrics)
    context = MethodContext(targets=setting.repeated, retain=setting.single, pad_id=_pad_id(tokenizer),
                            device=device, seed=seed, config=config, batch_size=min(16, batch))
    record = sweep_record(plan, bases, setting, context, progress, config=recorded,
                          preset=label, seeds=Seeds(method=seed, train=-1, data=config.seed), started=started)
    record.write(path)
    return record, path, True


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
