"""Where a setting's documents come from: the built-in synthetic stories, public-domain fiction
(classic-prose), TinyStories, or a file.

Every source returns a list of documents; the setting builder hashes what it used, and that hash
travels with every checkpoint and result so that numbers from different corpora never mix.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError

TINYSTORIES_HUB_ID = "roneneldan/TinyStories"


def load_documents(corpus: str, n_needed: int, seed: int, path: str | None = None) -> list[str]:
    """At least `n_needed` non-empty documents (fewer is an error naming the shortfall)."""
    if corpus == "synthetic-stories":
        from .synthetic import generate_stories
        documents = generate_stories(n_needed, seed)
    elif corpus == "classic-prose":
        from .prose import load_classic_prose
        documents = load_classic_prose(path)
    elif corpus == "tinystories":
        documents = load_tinystories(n_needed, path)
    elif corpus == "file":
        documents = read_document_file(Path(path))
    else:
        raise UserError(f"unknown corpus '{corpus}'", "use synthetic-stories, classic-prose, tinystories or file")
    documents = [" ".join(d.split()) for d in documents if d and d.strip()]
    if len(documents) < n_needed:
        raise UserError(f"corpus '{corpus}' has {len(documents)} usable documents but the setting "
                        f"needs {n_needed}", "lower data.n_single / data.n_validation or give a larger corpus")
    return documents


def read_document_file(path: Path) -> list[str]:
    """One document per line (.txt), a `text` field per line (.jsonl), or a `text` column (.parquet)."""
    if path.is_dir():
        raise UserError(f"corpus path {path} is a directory", "set data.corpus_path to a .txt, .jsonl or .parquet file")
    if not path.is_file():
        raise UserError(f"corpus file {path} does not exist", "set data.corpus_path to an existing file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"corpus file {path} is not UTF-8 text",
                        "give a .txt, .jsonl or .parquet file of documents") from None
    if "\x00" in text:
        raise UserError(f"corpus file {path} is binary, not text", "give a .txt, .jsonl or .parquet file")
    if suffix == ".jsonl":
        documents = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                documents.append(json.loads(line)["text"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{path} line {number} is not a JSON object with a 'text' field",
                                "write one {\"text\": ...} object per line") from None
        return documents
    if suffix in (".txt", ""):
        return text.splitlines()
    raise UserError(f"unsupported corpus file type '{suffix}'", "use .txt, .jsonl or .parquet")


def _read_parquet(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for a bad file
        raise UserError(f"cannot read parquet file {path}: {type(error).__name__}",
                        "give a valid .parquet file with a 'text' column") from None
    if "text" not in table.column_names:
        raise UserError(f"parquet file {path} has no 'text' column", "name the document column 'text'")
    return [str(t) for t in table.column("text").to_pylist()]


def load_tinystories(n_needed: int, path: str | None = None) -> list[str]:
    """The real TinyStories through HF `datasets`.

    `path` may point at local data files in the hub's schema (parquet or json with a `text`
    column); otherwise the hub id is used, which works offline only from the local HF cache.
    """
    import datasets

    try:
        if path:
            files = sorted(str(p) for p in Path(path).glob("*")) if Path(path).is_dir() else [path]
            builder = "parquet" if files and files[0].endswith(".parquet") else "json"
            dataset = datasets.load_dataset(builder, data_files=files, split="train")
        else:
            dataset = datasets.load_dataset(TINYSTORIES_HUB_ID, split="train")
    except Exception as error:  # datasets raises ConnectionError, FileNotFoundError, ...
        raise UserError(f"cannot load TinyStories ({type(error).__name__}: {str(error).splitlines()[0][:120]})",
                        "connect to the HF hub once to fill the cache, or set data.corpus_path to "
                        "local TinyStories parquet/json files") from None
    if "text" not in dataset.column_names:
        raise UserError("the TinyStories data has no 'text' column", "give files in the hub's schema")
    return dataset.select(range(min(n_needed, len(dataset))))["text"]
