"""The `memsink-bench` command line: train, run, leaderboard, ls (and more as they land)."""

from __future__ import annotations

import argparse
import os
import errno
import sys
from pathlib import Path

from .errors import UserError

EXAMPLES = """examples:
  memsink-bench train --setting ts-canary --kind memsinks
  memsink-bench train --setting ts-repetition --kind standard --preset smoke --set train.lr=1e-3
  memsink-bench run --method ig --setting ts-canary
  memsink-bench run --method hard-concrete --setting ts-repetition --checkpoint memsinks
  memsink-bench leaderboard --format md
  memsink-bench ls settings | kinds | checkpoints | methods
"""


def default_workdir() -> Path:
    return Path(os.environ.get("MEMSINK_BENCH_CACHE", Path.home() / ".cache" / "memsink-bench"))


def _common(parser: argparse.ArgumentParser, setting_required: bool = True) -> None:
    parser.add_argument("--setting", required=setting_required,
                        help="ts-repetition, ts-canary, or a path to a task YAML")
    parser.add_argument("--preset", default="cpu", help="smoke | cpu (default) | paper")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config field, e.g. --set train.lr=1e-3 (repeatable)")
    parser.add_argument("--workdir", type=Path, default=default_workdir(),
                        help="checkpoint and setting cache (default: $MEMSINK_BENCH_CACHE or ~/.cache/memsink-bench)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memsink-bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmark post-hoc memorization localization/unlearning against MemSinks "
                    "and gradient masking on controlled repeated-story and canary settings.",
        epilog=EXAMPLES)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train (or reuse) one checkpoint kind on a setting",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="example:\n  memsink-bench train --setting ts-canary --kind memsinks --preset cpu")
    _common(train)
    train.add_argument("--kind", required=True, help="standard | standard-no-rep | gradient-masked | memsinks")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run from its last snapshot")

    ls = sub.add_parser("ls", help="list settings, kinds, checkpoints or methods")
    ls.add_argument("what", choices=["settings", "kinds", "checkpoints", "methods"])
    ls.add_argument("--workdir", type=Path, default=default_workdir())

    from .commands import add_commands
    add_commands(sub, _common)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_libraries()
    try:
        from .commands import dispatch
        return dispatch(args)
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


if __name__ == "__main__":
    sys.exit(main())
