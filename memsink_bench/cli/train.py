"""`memsink-bench train`: train (or reuse) one checkpoint kind on a setting."""

from __future__ import annotations

import json
from argparse import RawDescriptionHelpFormatter

from .options import prepare, setting_options


def register(sub) -> None:
    train = sub.add_parser("train", help="train (or reuse) one checkpoint kind on a setting",
                           formatter_class=RawDescriptionHelpFormatter,
                           epilog="example:\n  memsink-bench train --setting ts-canary --kind memsinks --preset cpu")
    setting_options(train)
    train.add_argument("--kind", required=True,
                       help="standard | standard-no-rep | never-seen (the forget sequences removed) | "
                            "gradient-masked | memsinks, or a registered plugin kind")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run from its last snapshot")


def handle(args) -> int:
    from ..checkpoints import get_checkpoint
    from ..kinds import check_kind

    check_kind(args.kind)
    config, setting = prepare(args)
    checkpoint = get_checkpoint(args.workdir, setting, args.kind, config, resume=args.resume,
                                progress=not args.quiet)
    manifest = checkpoint.manifest
    print(json.dumps({"checkpoint": str(checkpoint.directory), "kind": args.kind,
                      "setting": setting.name, "preset": config.preset,
                      "train_seconds": manifest["train_seconds"],
                      "final_metrics": manifest["final_metrics"]}, indent=2))
    return 0
