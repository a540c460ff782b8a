"""Options several commands share, declared once, and the first steps every setting command takes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def default_workdir() -> Path:
    return Path(os.environ.get("MEMSINK_BENCH_CACHE", Path.home() / ".cache" / "memsink-bench"))


def workdir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=Path, default=default_workdir(),
                        help="checkpoint and setting cache (default: $MEMSINK_BENCH_CACHE or ~/.cache/memsink-bench)")


def results_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: ./results)")


def setting_options(parser: argparse.ArgumentParser, setting_required: bool = True) -> None:
    """--setting, --preset, --set, --workdir, --quiet: what every command on a setting takes."""
    parser.add_argument("--setting", required=setting_required,
                        help="ts-repetition, ts-canary, or a path to a task YAML")
    parser.add_argument("--preset", default="cpu",
                        help="smoke | cpu (default) | cpu-4m | cpu-12m (the model-size ladder) | paper")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config field, e.g. --set train.lr=1e-3 (repeatable)")
    workdir_option(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def pretrained_options(parser: argparse.ArgumentParser, heldout_help: str) -> None:
    """--model, --paragraphs, --heldout: a pretrained model and its paragraphs instead of --setting."""
    own = parser.add_argument_group("your own model and text (instead of --setting)")
    own.add_argument("--model", default=None, help="a pretrained HF causal LM: local directory or hub id")
    own.add_argument("--paragraphs", default=None,
                     help="candidate paragraphs (.txt one per line, .jsonl `text`, .parquet `text`)")
    own.add_argument("--heldout", default=None, help=heldout_help)


def check_setting_or_model(args) -> None:
    """Exactly one of --setting and --model, and --paragraphs with --model."""
    from ..errors import UserError

    if (args.model is None) == (args.setting is None) or (args.model is None) != (args.paragraphs is None):
        raise UserError("give either --setting, or --model with --paragraphs",
                        "e.g. --setting ts-canary, or --model DIR_OR_HUB_ID --paragraphs FILE")


def prepare(args):
    """Config, workdir check, built setting: the first steps of every command on a setting."""
    from ..config import load_config
    from ..setting import get_setting
    from ..storage import check_writable

    config = load_config(args.setting, args.preset, args.overrides)
    check_writable(args.workdir)
    setting = get_setting(config.setting, config.data, args.workdir)
    return config, setting
