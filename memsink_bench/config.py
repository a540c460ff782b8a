"""Experiment configuration: one dataclass per concern, loaded from `tasks/<setting>.yaml`.

A task YAML has `defaults` (every field) and `presets` (`smoke`, `cpu`, `paper`) that override
some of them. `--set section.field=value` overrides a single field after the preset. Every
field is validated in `__post_init__`, and `ExperimentConfig.to_dict()` round-trips through
`ExperimentConfig.from_dict()`, so a manifest fully describes how a checkpoint was made.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError, did_you_mean

CORPORA = ("synthetic-stories", "classic-prose", "tinystories", "file")
MASK_FUNCTIONS = ("counter", "reference")
FORGET_SPANS = ("sequence", "extraction")
TRACKERS = ("none", "tensorboard", "wandb", "mlflow")   # accelerate trackers (train.log_with)


def _check(condition: bool, problem: str, fix: str) -> None:
    if not condition:
        raise UserError(problem, fix)


def _fraction(name: str, value: float, *, closed_low=True, closed_high=True) -> None:
    low_ok = value >= 0 if closed_low else value > 0
    high_ok = value <= 1 if closed_high else value < 1
    _check(low_ok and high_ok, f"{name}={value} is outside its range",
           f"set {name} to a fraction in {'[' if closed_low else '('}0, 1{']' if closed_high else ')'}")


@dataclass
class DataConfig:
    """How the controlled training data of a setting is built."""

    corpus: str = "synthetic-stories"   # synthetic-stories | classic-prose | tinystories | file
    corpus_path: str | None = None      # .txt (one document a line), .jsonl (`text`), .parquet
    n_repeated: int = 32                # distinct stories repeated many times
    repetitions: int = 32               # times each repeated story appears per epoch
    n_single: int = 2000                # stories seen once per epoch
    n_validation: int = 200             # held-out stories (model degradation is measured here)
    n_control: int = 64                 # single-seen training stories scored as a control set
    seq_len: int = 256                  # tokens per training sequence, BOS and canary included
    vocab_size: int = 2048              # byte-level BPE vocabulary trained on the setting
    canary_length: int = 0              # random tokens appended to each repeated story (0: none)
    canary_tokens: str = "uniform"      # uniform: drawn uniformly from the non-special vocab
    prefix_len: int = 32                # exact match: greedy decoding after this many tokens...
    continuation_len: int = 32          # ...for this many (ts-repetition targets)
    id_noise: float = 0.0               # d: probability that a repetition gets a fresh random ID
    seed: int = 0                       # corpus sampling, canaries, ID noise

    def __post_init__(self):
        _check(self.corpus in CORPORA, f"unknown corpus '{self.corpus}'",
               did_you_mean(self.corpus, CORPORA))
        _check(self.corpus != "file" or bool(self.corpus_path), "corpus 'file' needs a path",
               "set data.corpus_path=PATH (.txt, .jsonl or .parquet)")
        for name in ("n_repeated", "repetitions", "n_single", "n_validation", "seq_len",
                     "vocab_size", "prefix_len", "continuation_len"):
            _check(getattr(self, name) >= 1, f"data.{name}={getattr(self, name)} must be positive",
                   f"set data.{name} to an integer >= 1")
        _check(self.canary_length >= 0, "data.canary_length is negative", "use 0 for no canary")
        _check(0 <= self.n_control <= self.n_single, "data.n_control exceeds data.n_single",
               "set data.n_control between 0 and data.n_single")
        _check(self.canary_tokens == "uniform", f"unknown canary sampling '{self.canary_tokens}'",
               "use data.canary_tokens=uniform")
        _check(self.vocab_size >= 300, f"data.vocab_size={self.vocab_size} is too small for a "
               "byte-level BPE", "set data.vocab_size to at least 300")
        _check(self.prefix_len + self.continuation_len + self.canary_length < self.seq_len,
               "data.prefix_len + data.continuation_len + data.canary_length must be below "
               "data.seq_len", "lower the prefix/continuation/canary lengths or raise data.seq_len")
        _fraction("data.id_noise", self.id_noise)


@dataclass
class ModelConfig:
    """A GPT-2-family causal LM trained from scratch, or `pretrained` (a local dir or hub id)."""

    arch: str = "gpt2"
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    d_mlp: int = 512
    pretrained: str | None = None

    def __post_init__(self):
        _check(self.arch == "gpt2", f"unknown model.arch '{self.arch}'",
               "use model.arch=gpt2, or model.pretrained=PATH for another HF causal LM")
        for name in ("n_layer", "n_embd", "n_head", "d_mlp"):
            _check(getattr(self, name) >= 1, f"model.{name} must be positive",
                   f"set model.{name} to an integer >= 1")
        _check(self.n_embd % self.n_head == 0, "model.n_embd is not divisible by model.n_head",
               "choose n_embd a multiple of n_head")


@dataclass
class TrainConfig:
    """One AdamW loop for every checkpoint kind: warm-up, then cosine decay to lr * min_lr_ratio."""

    epochs: int = 4
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 100           # steps between evaluations (and resumable snapshots)
    seed: int = 0                   # model init and data order
    device: str = "auto"            # auto | cpu | cuda | cuda:N | mps
    threads: int = 0                # torch intra-op threads on CPU (0: torch's default)
    trace_repeated: bool = False    # log every training loss of every repeated sequence (Fig. 7 dynamics)
    log_with: str = "none"          # experiment tracker: none | tensorboard | wandb | mlflow (not in any key)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "eval_every"):
            _check(getattr(self, name) >= 1, f"train.{name} must be positive",
                   f"set train.{name} to an integer >= 1")
        _check(self.lr > 0, "train.lr must be positive", "set train.lr, e.g. 1e-3")
        _check(self.warmup_steps >= 0, "train.warmup_steps is negative", "use 0 or more")
        _fraction("train.min_lr_ratio", self.min_lr_ratio)
        _check(self.grad_clip >= 0, "train.grad_clip is negative", "use 0 to disable clipping")
        _check(self.log_with in TRACKERS, f"unknown tracker train.log_with={self.log_with!r}",
               did_you_mean(self.log_with, TRACKERS))


@dataclass
class MemSinksConfig:
    """Sequence-tied dropout: shared fraction g, sink activation fraction p, ID -> mask function."""

    shared_fraction: float = 0.7    # g: the first g of each MLP's hidden neurons are shared
    sink_fraction: float = 0.3      # p: fraction of the sink pool switched on per sequence ID
    mask_fn: str = "counter"        # counter (exact-density counter hash) | reference (public code)
    salt: int = 0                   # varies the counter hash without changing IDs

    def __post_init__(self):
        _fraction("memsinks.shared_fraction", self.shared_fraction, closed_high=False)
        _fraction("memsinks.sink_fraction", self.sink_fraction, closed_low=False)
        _check(self.mask_fn in MASK_FUNCTIONS, f"unknown memsinks.mask_fn '{self.mask_fn}'",
               did_you_mean(self.mask_fn, MASK_FUNCTIONS))


@dataclass
class GradientMaskConfig:
    """Gradient routing: fraction g of MLP neurons form the generalization block."""

    generalization_fraction: float = 0.7

    def __post_init__(self):
        _fraction("gradient_masked.generalization_fraction", self.generalization_fraction,
                  closed_low=False, closed_high=False)


def _integers(name: str, values, low: int, example: str) -> None:
    _check(isinstance(values, list) and values and all(isinstance(v, int) and not isinstance(v, bool) and v >= low
                                                       for v in values),
           f"{name}={values!r} is not a non-empty list of integers >= {low}", f"set {name} to a list like {example}")


@dataclass
class MetricsConfig:
    """Parameters of the privacy and robustness metrics (not of any checkpoint). A record made with
    the defaults keeps the identity it had before this section existed; a changed value enters the
    record identity and the evaluation cache key (`non_default`)."""

    min_k_fraction: float = 0.2                 # Min-K% and Min-K%++: the lowest-scoring fraction of tokens
    top_k: int = 40                             # sampled extraction: softmax(logits / temperature) over the top-k
    temperature: float = 1.0
    samples: list = field(default_factory=lambda: [1, 10, 100])   # n of the (n, p)-extraction rate
    extraction_p: float = 0.5                   # p of the (n, p)-extraction rate
    relearn_steps: list = field(default_factory=lambda: [1, 5, 20])
    relearn_lr: float = 0.0                     # relearning's constant lr; 0: the training run's peak lr
    quantization_bits: list = field(default_factory=lambda: [8, 4])

    def __post_init__(self):
        _fraction("metrics.min_k_fraction", self.min_k_fraction, closed_low=False)
        _check(isinstance(self.top_k, int) and self.top_k >= 1, f"metrics.top_k={self.top_k!r} must be >= 1",
               "set metrics.top_k to how many most likely tokens sampling keeps, e.g. 40")
        _check(self.temperature > 0, f"metrics.temperature={self.temperature!r} must be positive",
               "set metrics.temperature to a number > 0, e.g. 1.0")
        _fraction("metrics.extraction_p", self.extraction_p, closed_low=False, closed_high=False)
        _integers("metrics.samples", self.samples, 1, "[1, 10, 100]")
        _integers("metrics.relearn_steps", self.relearn_steps, 0, "[1, 5, 20]")
        _check(self.relearn_lr >= 0, f"metrics.relearn_lr={self.relearn_lr!r} is negative",
               "set metrics.relearn_lr to a learning rate > 0, or 0 for the training run's peak rate")
        _integers("metrics.quantization_bits", self.quantization_bits, 2, "[8, 4]")
        _check(max(self.quantization_bits) <= 32, f"metrics.quantization_bits={self.quantization_bits} goes above 32",
               "give integer bit widths from 2 to 32, e.g. [8, 4]")

    def non_default(self) -> dict[str, Any]:
        """The fields that differ from the defaults: what enters keys and identities."""
        return {name: value for name, value in dataclasses.asdict(self).items()
                if value != dataclasses.asdict(MetricsConfig())[name]}


def metrics_in_key(config: dict) -> dict:
    """A config dict as it enters a key: its `metrics` section only with the fields that differ
    from the defaults, and not at all when none do (records made before the section existed and
    records made with the defaults share their identities)."""
    config = dict(config)
    metrics = MetricsConfig(**config.pop("metrics", None) or {}).non_default()
    if metrics:
        config["metrics"] = metrics
    return config


@dataclass
class ScoringConfig:
    """What a run forgets and is ranked on (not part of any checkpoint).

    `forget_span` is the span every method's objective reads (MethodContext.targets) and the
    leaderboard's primary columns score: `sequence`, every token after BOS (the MemSinks paper's
    measure), or `extraction`, the span exact match and the extraction metrics read (the
    continuation after `data.prefix_len` tokens, or the canary). The other span is a secondary
    column. Records made before this section existed forgot and extracted the extraction span, so
    `extraction` keeps a record's identity as it was (`scoring_in_key`)."""

    forget_span: str = "sequence"
    forget_count: int = 0     # forget only the first N repeated sequences (0: all); the rest stay memorized

    def __post_init__(self):
        _check(self.forget_span in FORGET_SPANS, f"unknown scoring.forget_span '{self.forget_span}'",
               did_you_mean(self.forget_span, FORGET_SPANS))
        _check(isinstance(self.forget_count, int) and self.forget_count >= 0,
               f"scoring.forget_count={self.forget_count!r} must be an integer >= 0",
               "set scoring.forget_count to how many repeated sequences to forget, or 0 for all")


LEGACY_SCORING = {"forget_span": "extraction", "forget_count": 0}   # what records made before `scoring` did


def scoring_in_key(config: dict) -> dict:
    """A config dict as it enters a key: its `scoring` section with the fields that differ from
    what every record made before the section existed did (forget the extraction span of every
    repeated sequence), and not at all when none do."""
    config = dict(config)
    scoring = config.pop("scoring", None) or {}
    changed = {k: v for k, v in scoring.items() if v != LEGACY_SCORING.get(k)}
    if changed:
        config["scoring"] = changed
    return config


def identity_config(config: dict) -> dict:
    """The config sections as they enter a record's identity (metrics and scoring: see above)."""
    return scoring_in_key(metrics_in_key(config))


SECTIONS = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "memsinks": MemSinksConfig,
    "gradient_masked": GradientMaskConfig,
    "metrics": MetricsConfig,
    "scoring": ScoringConfig,
}


@dataclass
class ExperimentConfig:
    """Everything that determines a setting and the checkpoints trained on it."""

    setting: str
    preset: str
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    memsinks: MemSinksConfig = field(default_factory=MemSinksConfig)
    gradient_masked: GradientMaskConfig = field(default_factory=GradientMaskConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ExperimentConfig":
        sections = {name: _build_section(name, raw.get(name, {})) for name in SECTIONS}
        return cls(setting=raw["setting"], preset=raw["preset"], **sections)


def _build_section(name: str, values: dict[str, Any]):
    section_cls = SECTIONS[name]
    known = {f.name: f for f in dataclasses.fields(section_cls)}
    if not isinstance(values, dict):
        raise UserError(f"section '{name}' must be a mapping", "write it as `key: value` lines")
    for key in values:
        if key not in known:
            raise UserError(f"unknown key '{name}.{key}'",
                            did_you_mean(key, known).replace("'", f"'{name}.", 1))
    return section_cls(**{key: typed_value(f"{name}.{key}", _default(known[key]), value)
                          for key, value in values.items()})


def _default(spec: dataclasses.Field):
    return spec.default_factory() if spec.default is dataclasses.MISSING else spec.default


def typed_value(name: str, default, value):
    """`value` checked against the type of the field's default (a string like '1e-3' is a number)."""
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, list):
        ok, kind = isinstance(value, list), f"a list like {default}"
    elif isinstance(default, str) or default is None:
        ok, kind = value is None and default is None or isinstance(value, str), "a string"
    else:
        ok, kind = True, ""
    if not ok:
        raise UserError(f"{name}={value!r} has the wrong type", f"set {name} to {kind} (default: {default!r})")
    return value


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _check_name(what: str, name, where) -> None:
    """Setting and preset names become directory names: no path separators or `..`."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or ".." in name:
        raise UserError(f"{what} name {name!r} in {where} is not a plain name",
                        "use only letters, digits, '-', '_' and '.' (no '/' or '..')")


# --- task files ------------------------------------------------------------------------------

def data_dir(name: str) -> Path:
    """A top-level data folder (`tasks`, `baselines`): inside the package when installed as a
    wheel (pyproject maps it there), beside the package in a source tree or editable install."""
    for candidate in (Path(__file__).parent / name, Path(__file__).parent.parent / name):
        if candidate.is_dir():
            return candidate
    raise UserError(f"the '{name}' folder is missing from this installation",
                    "reinstall memsink-bench (pip install .)")


def tasks_dir() -> Path:
    return data_dir("tasks")


def available_settings() -> list[str]:
    return sorted(p.stem for p in tasks_dir().glob("*.yaml"))


def read_task(setting: str) -> dict[str, Any]:
    path = Path(setting)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"task file {path} does not exist", "give an existing YAML path")
    else:
        path = tasks_dir() / f"{setting}.yaml"
        if not path.is_file():
            raise UserError(f"unknown setting '{setting}'", did_you_mean(setting, available_settings()))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"malformed YAML in {path}{where}", "fix the YAML syntax") from None
    if not isinstance(raw, dict) or "presets" not in raw or "name" not in raw:
        raise UserError(f"task file {path} lacks `name` or `presets`",
                        "see tasks/ts-repetition.yaml for the expected layout")
    _check_name("setting", raw["name"], path)
    for key in ("presets", "defaults"):
        if not isinstance(raw.get(key) or {}, dict):
            raise UserError(f"`{key}` in task file {path} is not a mapping",
                            f"write `{key}` as a mapping of names to `key: value` sections")
    return raw


def parse_value(text: str):
    """YAML scalar/list parsing, plus numbers YAML 1.1 leaves as strings (`1e-3`)."""
    if text == "":
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, list):
        return [parse_value(v) if isinstance(v, str) else v for v in value]
    return value


METHOD_SECTIONS = ("method", "sweep")   # a method's hyperparameters and knob grid (baselines/<name>.yaml)
PARAGRAPHS_SECTION = "paragraphs"       # a pretrained model's paragraphs setting (memsink_bench.paragraphs)


def parse_override(text: str, sections=None) -> tuple[str, str, Any]:
    """`section.key=value` -> (section, key, YAML-parsed value): the one parser of every `--set`.

    `sections`: the sections allowed here (default: the config sections and the method's)."""
    allowed = tuple(sections) if sections is not None else (*SECTIONS, *METHOD_SECTIONS, PARAGRAPHS_SECTION)
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise UserError(f"malformed --set '{text}'", "write --set section.key=value, e.g. train.lr=1e-3")
    dotted, value = text.split("=", 1)
    section, key = dotted.split(".", 1)
    if section not in allowed:
        raise UserError(f"unknown --set section '{section}'", did_you_mean(section, allowed))
    return section, key, parse_value(value)


def metrics_config(overrides: list[str] | tuple = ()) -> MetricsConfig:
    """The metrics section from `--set metrics.KEY=VALUE` overrides (other sections ignored): for
    runs that have no task file, such as a pretrained model's paragraphs setting."""
    values = {}
    for text in overrides:
        section, key, value = parse_override(text)
        if section == "metrics":
            values[key] = value
    return _build_section("metrics", values)


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(config overrides, method overrides): `method.*` / `sweep.*` go to the method."""
    method = [text for text in overrides if parse_override(text)[0] in METHOD_SECTIONS]
    return [text for text in overrides if text not in method], method


def load_config(setting: str, preset: str = "cpu", overrides: list[str] | tuple = ()) -> ExperimentConfig:
    """Resolve defaults <- preset <- `--set` overrides into a validated ExperimentConfig."""
    raw = read_task(setting)
    presets = raw["presets"] or {}
    if preset not in presets:
        raise UserError(f"unknown preset '{preset}' for setting '{raw['name']}'",
                        did_you_mean(preset, presets))
    _check_name("preset", preset, f"task '{raw['name']}'")
    if not isinstance(presets[preset] or {}, dict):
        raise UserError(f"preset '{preset}' in task '{raw['name']}' is not a mapping",
                        "write it as a mapping of sections to `key: value` lines")
    merged = copy.deepcopy(raw.get("defaults") or {})
    for where, sections in (("defaults", merged), (f"preset '{preset}'", presets[preset] or {})):
        for section, values in sections.items():
            if not isinstance(values or {}, dict):
                raise UserError(f"section '{section}' of {where} in task '{raw['name']}' is not a mapping",
                                "write it as a mapping of `key: value` lines")
    for section, values in (presets[preset] or {}).items():
        merged.setdefault(section, {}).update(values or {})
    for text in overrides:
        section, key, value = parse_override(text, SECTIONS)
        merged.setdefault(section, {})[key] = value
    unknown = set(merged) - set(SECTIONS)
    if unknown:
        name = sorted(unknown)[0]
        raise UserError(f"unknown section '{name}' in task '{raw['name']}'", did_you_mean(name, SECTIONS))
    try:
        return ExperimentConfig.from_dict({"setting": raw["name"], "preset": preset, **merged})
    except TypeError as error:
        raise UserError(f"bad value in task '{raw['name']}': {error}", "check the field types") from None
