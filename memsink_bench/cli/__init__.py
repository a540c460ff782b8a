"""The `memsink-bench` command line: one module per command, each with `register(sub)` (its
parser) beside `handle(args)` (what it does). Adding a command is a module and a line in COMMANDS."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from ..errors import UserError
from .options import default_workdir  # noqa: F401  (re-exported: the cache location commands share)

# command name -> module (relative to this package, or absolute) with register(sub) and handle(args)
COMMANDS = {
    "train": ".train",
    "run": ".run",
    "leaderboard": ".leaderboard",
    "analyze": ".analyze",
    "localize": ".localize",
    "plot": ".plot",
    "report": ".report",
    "sweep": "memsink_bench.sweep.command",
    "ls": ".ls",
}

EXAMPLES = """examples:
  memsink-bench train --setting ts-canary --kind memsinks
  memsink-bench train --setting ts-repetition --kind standard --preset smoke --set train.lr=1e-3
  memsink-bench run --method ig --setting ts-canary
  memsink-bench run --method hard-concrete --setting ts-repetition --checkpoint memsinks
  memsink-bench leaderboard --format md
  memsink-bench sweep run sweeps/reproduction.yaml --engine ray
  memsink-bench ls settings | kinds | checkpoints | methods
"""


def _module(name: str):
    target = COMMANDS[name]
    return importlib.import_module(target, __name__) if target.startswith(".") else importlib.import_module(target)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memsink-bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmark post-hoc memorization localization/unlearning against MemSinks "
                    "and gradient masking on controlled repeated-story and canary settings.",
        epilog=EXAMPLES)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        _module(name).register(sub)
    return parser


def _quiet_libraries() -> None:
    """transformers' load bars and padding advice are noise for a benchmark's user."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return _module(args.command).handle(args)
    except UserError as error:
        print(f"memsink-bench: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("memsink-bench: interrupted; rerun with --resume to continue training", file=sys.stderr)
        return 130
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # every write is atomic, so what was being written is simply absent, never partial
        where = f" writing {error.filename}" if error.filename else ""
        print(f"memsink-bench: error: the disk is full{where}; nothing partial was kept "
              "(free space or point --workdir / --results at another disk, then rerun)", file=sys.stderr)
        return 2
