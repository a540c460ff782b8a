"""What each CLI command does; `cli.py` only parses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import UserError


def add_commands(sub, common) -> None:
    """Sub-commands beyond train/ls are registered here so cli.py stays a parser."""
    for register in _REGISTRARS:
        register(sub, common)


_REGISTRARS: list = []


def registrar(function):
    _REGISTRARS.append(function)
    return function


def dispatch(args) -> int:
    handler = {"train": cmd_train, "ls": cmd_ls, **_HANDLERS}.get(args.command)
    return handler(args)


_HANDLERS: dict = {}


def handler(name):
    def wrap(function):
        _HANDLERS[name] = function
        return function
    return wrap


def prepare(args):
    """Config, workdir check, built setting: the first steps of every command."""
    from .config import load_config
    from .setting import get_setting
    from .storage import check_writable

    config = load_config(args.setting, args.preset, args.overrides)
    check_writable(args.workdir)
    setting = get_setting(config.setting, config.data, args.workdir)
    return config, setting


def cmd_train(args) -> int:
    from .checkpoints import get_checkpoint
    from .kinds import check_kind

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


def cmd_ls(args) -> int:
    if args.what == "settings":
        from .config import available_settings, read_task
        for name in available_settings():
            task = read_task(name)
            print(f"{name:16s} presets: {', '.join(task['presets'])}  -- {task.get('description', '').strip()}")
    elif args.what == "kinds":
        from .kinds import KINDS
        for name, description in KINDS.items():
            print(f"{name:16s} {description}")
    elif args.what == "checkpoints":
        from .checkpoints import list_checkpoints
        rows = list_checkpoints(args.workdir)
        if not rows:
            print(f"no checkpoints under {args.workdir}", file=sys.stderr)
        for row in rows:
            val = f"{row['val_loss']:.3f}" if row["val_loss"] is not None else "-"
            print(f"{row['setting']:14s} {row['preset']:6s} {row['kind']:16s} val {val}  "
                  f"{row['train_seconds']}s  {row['path']}")
    elif args.what == "methods":
        from .methods.registry import registry
        for entry in registry().describe():
            print(f"{entry['name']:20s} {entry['type']:9s} {entry['source']:30s} {entry['summary']}")
            for problem in entry.get("problems", []):
                print(f"  ! {problem}")
    return 0


def _split_method_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """`method.*` and `sweep.*` go to the method; everything else configures the setting."""
    method = [o for o in overrides if o.split(".", 1)[0] in ("method", "sweep")]
    return [o for o in overrides if o not in method], method


@registrar
def _register_run(sub, common) -> None:
    run = sub.add_parser(
        "run", help="run one method on a checkpoint and write its result record",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  memsink-bench run --method ig --setting ts-canary\n"
               "  memsink-bench run --method hard-concrete --setting ts-repetition --checkpoint memsinks\n"
               "  memsink-bench run --method sparse-ft --setting ts-canary --set method.lr=1e-4 --set sweep.steps=[1,5,10]\n"
               "  memsink-bench run --method ./my_method.py:MyLocalizer --setting ts-canary\n"
               "method hyperparameters: --set method.NAME=VALUE; knob grid: --set sweep.ratios=[...] or sweep.steps=[...]")
    common(run)
    run.add_argument("--method", required=True,
                     help="a name from `memsink-bench ls methods`, FILE.py:Class, or `all` (every built-in)")
    run.add_argument("--checkpoint", default=None,
                     help="KIND[:VIEW] (standard, standard-no-rep, gradient-masked, memsinks) or a checkpoint "
                          "directory; default: standard (training-time methods: their own kind)")
    run.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: ./results)")
    run.add_argument("--force", action="store_true", help="recompute even if the record exists")
    run.add_argument("--seed", type=int, default=0, help="method seed (random controls, hard-concrete noise)")

    board = sub.add_parser("leaderboard", help="build leaderboard tables from result records")
    board.add_argument("--setting", default=None)
    board.add_argument("--preset", default=None)
    board.add_argument("--format", default="md", choices=["md", "csv", "latex", "html"])
    board.add_argument("--results", type=Path, default=Path("results"))
    board.add_argument("--output", type=Path, default=None,
                       help="write here (atomically) instead of stdout, e.g. results/leaderboard.md")


@handler("run")
def cmd_run(args) -> int:
    from .leaderboard import leaderboard_frame, render
    from .methods.registry import BUILTINS, registry
    from .run import run_method
    from .storage import check_writable

    config_overrides, method_overrides = _split_method_overrides(args.overrides)
    args.overrides = config_overrides
    methods = list(BUILTINS) if args.method == "all" else [args.method]
    if args.method == "all" and (method_overrides or args.checkpoint):
        raise UserError("--method all takes no method.*/sweep.* overrides or --checkpoint",
                        "run single methods to change their settings")
    for name in methods:
        registry().get(name).load()             # an unknown method fails before any training
    check_writable(args.results)
    config, setting = prepare(args)
    records = []
    for name in methods:
        record, path, computed = run_method(
            method_spec=name, config=config, setting=setting, workdir=args.workdir, results=args.results,
            checkpoint_spec=args.checkpoint, method_overrides=method_overrides, force=args.force,
            progress=not args.quiet, seed=args.seed)
        status = "wrote" if computed else "reused (pass --force to recompute)"
        print(f"{status} {path}", file=sys.stderr)
        print(_points_table(record))
        records.append(record)
    print(render(leaderboard_frame(records), "md"))
    return 0


def _points_table(record: dict) -> str:
    import pandas as pd

    columns = ["knob", "forgetting", "forgetting_target", "degradation", "gap_closed", "gap_closed_target",
               "em_repeated", "em_control"]
    frame = pd.DataFrame(record["points"])[columns].rename(columns={"knob": record["knob"]})
    before = record["before"]
    header = (f"{record['method']} on {record['checkpoint']['label']} ({record['setting']}, {record['preset']}): "
              f"before: repeated loss {before['repeated_loss']:.3f}, val loss {before['val_loss']:.3f}, "
              f"EM {before['em_repeated']:.1f}; no-rep repeated loss {record['no_rep']['repeated_loss']:.3f}; "
              f"method {record['timings']['method_seconds']:.1f}s")
    return header + "\n" + frame.to_markdown(index=False, floatfmt=".3f") + "\n"


@handler("leaderboard")
def cmd_leaderboard(args) -> int:
    from .leaderboard import leaderboard_frame, load_records, render
    from .storage import atomic_write_text

    text = render(leaderboard_frame(load_records(args.results), args.setting, args.preset), args.format)
    if args.output:
        atomic_write_text(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0
