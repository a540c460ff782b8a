"""The setting builder: documents -> repeated / single / validation / control sequences.

A built setting is what every checkpoint kind of that setting trains and is scored on, so it is
built once, hashed, and cached on disk (tokenizer.json, sequences.safetensors, setting.json).
All kinds share its tokenizer: losses of standard and standard-no-rep are in the same units.

Sequence layout: [BOS] + story tokens (truncated) [+ canary tokens]. Sequence IDs: repeated
stories get IDs 1..N, single stories N+1..N+M (ID 0 is avoided: the reference hash switches
every sink on for it). A sequence's *target span* is what exact match and the target-token loss
look at: the canary in ts-canary, otherwise `continuation_len` tokens after `prefix_len`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import DataConfig
from .errors import UserError
from .storage import atomic_directory, file_lock, read_json

BOS = "<|endoftext|>"
SETTING_FORMAT = 1


@dataclass
class SequenceSet:
    """Token sequences of one role, each with its sequence ID and target span [start, end)."""

    tokens: list[list[int]]
    ids: list[int]
    spans: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, indices) -> "SequenceSet":
        return SequenceSet([self.tokens[i] for i in indices], [self.ids[i] for i in indices],
                           [self.spans[i] for i in indices])


@dataclass
class Setting:
    name: str
    data: DataConfig | None       # None for a setting built from a pretrained model's paragraphs
    tokenizer: object             # transformers.PreTrainedTokenizerFast
    repeated: SequenceSet         # N distinct repeated sequences (canaries appended in ts-canary)
    single: SequenceSet           # M sequences seen once per epoch
    validation: SequenceSet       # held-out stories
    control: SequenceSet          # single-seen training sequences scored like the repeated ones
    corpus_name: str
    corpus_hash: str
    setting_hash: str
    directory: Path | None = None
    forget_count: int = 0                        # > 0: `repeated` is the first N of them (forget_view)
    other_repeated: SequenceSet | None = None    # ... and these, the rest, stay memorized

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def describe(self) -> dict:
        return {"setting": self.name, "corpus": self.corpus_name, "corpus_hash": self.corpus_hash,
                "setting_hash": self.setting_hash, "repeated": len(self.repeated),
                "repetitions": self.data.repetitions if self.data is not None else None, "single": len(self.single),
                "validation": len(self.validation), "control": len(self.control),
                "vocab_size": self.vocab_size}


def forget_view(setting: Setting, count: int) -> Setting:
    """The setting as a run that forgets only the first `count` repeated sequences scores it: its
    `repeated` role is those (every forget metric reads them) and `other_repeated` the rest, which
    stay memorized (their loss is measured as collateral). Training never reads a view: checkpoints
    are trained on the full setting. count 0 (or all of them) is the setting itself."""
    import dataclasses

    total = len(setting.repeated)
    if count == 0 or count == total:
        return setting
    if count > total:
        raise UserError(f"scoring.forget_count={count} exceeds the {total} repeated sequences",
                        f"set scoring.forget_count between 1 and {total} (0: all)")
    return dataclasses.replace(setting, repeated=setting.repeated.subset(range(count)), forget_count=count,
                               other_repeated=setting.repeated.subset(range(count, total)))


def forget_set(setting: Setting, span: str = "extraction") -> SequenceSet:
    """The repeated sequences as methods are asked to forget them (`MethodContext.targets`): with
    `span="sequence"` every token after BOS is a target (span [1, len), exactly the tokens of the
    whole-sequence loss); with `"extraction"` each keeps its extraction span (continuation or canary)."""
    repeated = setting.repeated
    if span == "extraction":
        return repeated
    if span != "sequence":
        raise ValueError(f"unknown forget span {span!r}")
    return SequenceSet(repeated.tokens, repeated.ids, [(1, len(tokens)) for tokens in repeated.tokens])


def retain_set(setting: Setting) -> SequenceSet:
    """The non-memorized training sequences editors may fit to (their KL anchor): as many as the
    control set, drawn (seeded by the data seed) from the single-seen sequences outside it, so the
    control set that scores an edit (`em_control`, control degradation) is never text the edit was
    fit to. A pretrained model's paragraphs setting keeps its own disjoint retain paragraphs."""
    if setting.data is None:
        return setting.single
    control = set(setting.control.ids)
    outside = [k for k, sequence_id in enumerate(setting.single.ids) if sequence_id not in control]
    size = min(len(setting.control), len(outside))
    return setting.single.subset(random.Random(f"retain:{setting.data.seed}").sample(outside, size))


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE trained on the setting's training text, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=BOS,
                                   pad_token=BOS, unk_token=None)


def setting_key(name: str, data: DataConfig, corpus_hash: str) -> str:
    """Hash of everything that determines a built setting: the documents' content and the data config.

    Keyed by content, not by name: a changed story generator or a replaced corpus file gives a new
    key, and the same documents at another path give the same one (so `corpus_path` is left out).
    """
    fields = {k: v for k, v in vars(data).items() if k != "corpus_path"}
    payload = json.dumps({"name": name, "data": fields, "corpus_hash": corpus_hash, "format": SETTING_FORMAT},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def corpus_documents(data: DataConfig) -> list[str]:
    """The documents a setting is built from (cheap: generated, or read from the corpus)."""
    return load_documents_for(data, data.n_repeated + data.n_single + data.n_validation)


def content_hash(documents: list[str]) -> str:
    return hashlib.sha256("\n".join(documents).encode()).hexdigest()


def setting_fingerprint(name: str, data: DataConfig) -> tuple[str, str]:
    """(setting key, corpus hash) of the setting these documents and this config build.

    Remembered within a process for as long as the corpus file (or directory) is unchanged.
    """
    return _fingerprint(name, json.dumps(vars(data), sort_keys=True), _corpus_stamp(data.corpus_path))


def _corpus_stamp(corpus_path: str | None) -> tuple:
    if not corpus_path:
        return ()
    path = Path(corpus_path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists())


@functools.lru_cache(maxsize=64)
def _fingerprint(name: str, data_json: str, _stamp: tuple) -> tuple[str, str]:
    data = DataConfig(**json.loads(data_json))
    corpus_hash = content_hash(corpus_documents(data))
    return setting_key(name, data, corpus_hash), corpus_hash


def build_setting(name: str, data: DataConfig, documents: list[str] | None = None) -> Setting:
    """Sample roles from the corpus, train the tokenizer, tokenize, append canaries."""
    documents = corpus_documents(data) if documents is None else documents
    corpus_hash = content_hash(documents)
    rng = random.Random(f"roles:{data.seed}")
    order = list(range(len(documents)))
    rng.shuffle(order)
    validation_docs = [documents[i] for i in order[:data.n_validation]]
    rest = [documents[i] for i in order[data.n_validation:]]

    tokenizer = train_tokenizer(rest, data.vocab_size)
    bos = tokenizer.convert_tokens_to_ids(BOS)
    story_room = data.seq_len - 1 - data.canary_length
    min_tokens = data.prefix_len + data.continuation_len

    def encode(text: str, room: int) -> list[int]:
        return [bos] + tokenizer.encode(text, add_special_tokens=False)[:room]

    encoded_rest = [encode(t, data.seq_len - 1) for t in rest]
    long_enough = [i for i, seq in enumerate(encoded_rest) if len(seq) - 1 >= min_tokens]
    if len(long_enough) < data.n_repeated:
        raise UserError(f"only {len(long_enough)} stories have {min_tokens} tokens for repeated targets",
                        "lower data.prefix_len / data.continuation_len or use longer documents")
    repeated_idx = long_enough[:data.n_repeated]
    chosen = set(repeated_idx)
    single_idx = [i for i in range(len(rest)) if i not in chosen][:data.n_single]
    if len(single_idx) < data.n_single:
        raise UserError(f"the corpus yields only {len(single_idx)} single stories, not {data.n_single}",
                        "lower data.n_single or give a larger corpus")

    canary_rng = torch.Generator().manual_seed(data.seed + 7919)
    repeated_tokens, repeated_spans = [], []
    for i in repeated_idx:
        seq = encode(rest[i], story_room)
        if data.canary_length:
            canary = torch.randint(1, len(tokenizer), (data.canary_length,), generator=canary_rng).tolist()
            repeated_spans.append((len(seq), len(seq) + data.canary_length))
            seq = seq + canary
        else:
            repeated_spans.append((1 + data.prefix_len, 1 + data.prefix_len + data.continuation_len))
        repeated_tokens.append(seq)
    n_rep = data.n_repeated
    continuation_span = (1 + data.prefix_len, 1 + data.prefix_len + data.continuation_len)
    repeated = SequenceSet(repeated_tokens, list(range(1, n_rep + 1)), repeated_spans)
    single = SequenceSet([encoded_rest[i] for i in single_idx],
                         list(range(n_rep + 1, n_rep + 1 + len(single_idx))),
                         [continuation_span] * len(single_idx))
    validation_tokens = [encode(t, data.seq_len - 1) for t in validation_docs]
    validation = SequenceSet(validation_tokens, [0] * len(validation_tokens),
                             [continuation_span] * len(validation_tokens))
    control_candidates = [k for k, seq in enumerate(single.tokens) if len(seq) - 1 >= min_tokens]
    control = single.subset(random.Random(f"control:{data.seed}").sample(
        control_candidates, min(data.n_control, len(control_candidates))))
    return Setting(name, data, tokenizer, repeated, single, validation, control,
                   corpus_name=corpus_label(data), corpus_hash=corpus_hash,
                   setting_hash=setting_key(name, data, corpus_hash))


def corpus_label(data: DataConfig) -> str:
    if data.corpus == "file":
        return f"file:{Path(data.corpus_path).name}"
    if data.corpus in ("tinystories", "classic-prose") and data.corpus_path:
        return f"{data.corpus}:{Path(data.corpus_path).name}"
    return data.corpus


def load_documents_for(data: DataConfig, n_needed: int) -> list[str]:
    """Every usable document of the corpus (the synthetic generator makes exactly `n_needed`)."""
    from .corpus.sources import load_documents

    return load_documents(data.corpus, n_needed, data.seed, data.corpus_path)


# --- cache on disk ---------------------------------------------------------------------------

def _pack(sequences: SequenceSet, prefix: str) -> dict[str, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in sequences.tokens], dtype=torch.int64)
    flat = torch.tensor([t for s in sequences.tokens for t in s], dtype=torch.int64)
    return {f"{prefix}.tokens": flat, f"{prefix}.lengths": lengths,
            f"{prefix}.ids": torch.tensor(sequences.ids, dtype=torch.int64),
            f"{prefix}.spans": torch.tensor(sequences.spans, dtype=torch.int64).reshape(-1, 2)}


def _unpack(tensors: dict[str, torch.Tensor], prefix: str) -> SequenceSet:
    flat = tensors[f"{prefix}.tokens"].tolist()
    tokens, start = [], 0
    for length in tensors[f"{prefix}.lengths"].tolist():
        tokens.append(flat[start:start + length])
        start += length
    spans = [tuple(s) for s in tensors[f"{prefix}.spans"].tolist()]
    return SequenceSet(tokens, tensors[f"{prefix}.ids"].tolist(), spans)


ROLES = ("repeated", "single", "validation", "control")


def save_setting(setting: Setting, directory: Path, save_tokenizer: bool = True) -> None:
    """Atomically; a pretrained model's setting keeps no tokenizer copy (the model has it)."""
    from safetensors.torch import save_file

    with atomic_directory(directory) as tmp:
        tensors = {}
        for role in ROLES:
            tensors.update(_pack(getattr(setting, role), role))
        save_file(tensors, str(tmp / "sequences.safetensors"))
        if save_tokenizer:
            setting.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        (tmp / "setting.json").write_text(json.dumps({
            "format": SETTING_FORMAT, "name": setting.name,
            "data": vars(setting.data) if setting.data is not None else None,
            **setting.describe()}, indent=2, sort_keys=True))


def load_setting_tensors(directory: Path) -> dict[str, SequenceSet]:
    """The four roles' sequences of a cached setting."""
    from safetensors.torch import load_file

    tensors = load_file(str(Path(directory) / "sequences.safetensors"))
    return {role: _unpack(tensors, role) for role in ROLES}


def load_setting(directory: Path, data: DataConfig) -> Setting:
    from safetensors.torch import load_file
    from transformers import PreTrainedTokenizerFast

    meta = read_json(directory / "setting.json")
    tensors = load_file(str(directory / "sequences.safetensors"))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory / "tokenizer"))
    roles = {role: _unpack(tensors, role) for role in ROLES}
    return Setting(meta["name"], data, tokenizer, corpus_name=corpus_label(data),
                   corpus_hash=meta["corpus_hash"], setting_hash=meta["setting_hash"],
                   directory=directory, **roles)


def get_setting(name: str, data: DataConfig, workdir: Path) -> Setting:
    """The built setting, from the cache when it is there, else built and cached."""
    key, _ = setting_fingerprint(name, data)
    directory = workdir / "settings" / f"{name}-{key}"
    if (directory / "setting.json").is_file():
        return _load_cached(directory, data)
    # one builder at a time: concurrent builders would race in atomic_directory's renames
    with file_lock(workdir / "locks" / f"setting-{directory.name}.lock",
                   f"waiting: another process is building setting {name} ({directory.name})"):
        if (directory / "setting.json").is_file():
            return _load_cached(directory, data)
        setting = build_setting(name, data)
        if setting.setting_hash != key:       # the corpus changed between hashing and building
            raise UserError(f"the corpus of setting {name} changed while it was being built",
                            "run again once the corpus file is no longer being written")
        save_setting(setting, directory)
    setting.directory = directory
    return setting


def _load_cached(directory: Path, data: DataConfig) -> Setting:
    try:
        return load_setting(directory, data)
    except Exception as error:
        raise UserError(f"cached setting {directory} is unreadable ({type(error).__name__})",
                        f"delete {directory} and run again to rebuild it") from None
