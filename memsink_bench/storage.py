"""Atomic writes and locks: a checkpoint, setting or result is either complete or invisible.

Directories are written into a hidden temporary sibling and renamed into place; files are
written to a temporary sibling, fsynced and renamed. A crash at any point leaves at most a
`.tmp-*` leftover, which readers never look at and the next successful write of the same
directory removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from .errors import UserError


@contextlib.contextmanager
def atomic_directory(target: Path):
    """Yield a temporary directory; on success it replaces `target` in one rename.

    The caller must be the target's only writer (every caller holds the target's lock), so after
    a success the `.tmp-*` / `.old-*` leftovers of earlier writers of the same target, killed
    mid-write, are removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.exists():
            # a unique name: a `.old-*` left by a crash (same pid after a container restart) must not block
            old = Path(tempfile.mkdtemp(prefix=f".old-{target.name}-", dir=target.parent))
            os.rename(target, old)                       # replaces the empty placeholder
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for leftover in leftovers(target):
        shutil.rmtree(leftover, ignore_errors=True)


def leftovers(target: Path) -> list[Path]:
    """`.tmp-<name>-XXXXXXXX` / `.old-<name>-XXXXXXXX` siblings of `target` (mkdtemp's 8-character
    suffix, so `standard-<key>` never matches another target's leftovers)."""
    pattern = re.compile(rf"\.(tmp|old)-{re.escape(target.name)}-[A-Za-z0-9_]{{8}}")
    return [path for path in target.parent.iterdir() if pattern.fullmatch(path.name)]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, fsync, rename: the file is complete or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, payload) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is missing", "the directory is incomplete; recompute it") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is not valid JSON", "the file is damaged or not memsink-bench's; recompute it") from None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with contextlib.suppress(OSError):
                with open(os.path.join(dirpath, name), "rb") as handle:
                    os.fsync(handle.fileno())


@contextlib.contextmanager
def file_lock(path: Path, message: str | None = None):
    """An exclusive inter-process lock (fcntl); prints `message` once if we have to wait."""
    import fcntl
    import sys

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if message:
                print(message, file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_writable(directory: Path, option: str = "--workdir", needed_bytes: int = 50_000_000) -> None:
    """Fail before any work if results or checkpoints could not be written; `option` is the flag
    that chose `directory`, so the message names the one the user can change."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=directory, prefix=".tmp-probe-", delete=True)
        probe.close()
    except OSError as error:
        raise UserError(f"cannot write to {option} {directory} ({error.strerror})",
                        f"choose a writable directory with {option} or fix its permissions") from None
    free = shutil.disk_usage(directory).free
    if free < needed_bytes:
        raise UserError(f"only {free // 1_000_000} MB free under {option} {directory}",
                        f"free at least {needed_bytes // 1_000_000} MB or choose another {option}")
