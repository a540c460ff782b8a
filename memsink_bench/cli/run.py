"""`memsink-bench run`: one method (or all built-ins) on a checkpoint -> result records."""

from __future__ import annotations

import sys
from argparse import RawDescriptionHelpFormatter

from ..errors import UserError
from .options import check_setting_or_model, prepare, pretrained_options, results_option, setting_options


def register(sub) -> None:
    run = sub.add_parser(
        "run", help="run one method on a checkpoint and write its result record",
        formatter_class=RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  memsink-bench run --method ig --setting ts-canary\n"
               "  memsink-bench run --method hard-concrete --setting ts-repetition --checkpoint memsinks\n"
               "  memsink-bench run --method sparse-ft --setting ts-canary --set method.lr=1e-4 --set sweep.steps=[1,5,10]\n"
               "  memsink-bench run --method ./my_method.py:MyLocalizer --setting ts-canary\n"
               "  memsink-bench run --method ig --model EleutherAI/gpt-neo-125m --paragraphs paragraphs.jsonl\n"
               "method hyperparameters: --set method.NAME=VALUE; knob grid: --set sweep.ratios=[...] or sweep.steps=[...];\n"
               "a pretrained model's paragraphs: --set paragraphs.prefix_len=50 (and continuation_len, em_threshold, ...)")
    setting_options(run, setting_required=False)
    run.add_argument("--method", required=True,
                     help="a name from `memsink-bench ls methods`, FILE.py:Class, or `all` (every built-in)")
    run.add_argument("--checkpoint", default=None,
                     help="KIND[:VIEW] (standard, standard-no-rep, gradient-masked, memsinks) or a checkpoint "
                          "directory; default: standard (training-time methods: their own kind)")
    run.add_argument("--force", action="store_true", help="recompute even if the record exists")
    run.add_argument("--seed", type=int, default=0, help="method seed (random controls, hard-concrete noise)")
    results_option(run)
    pretrained_options(run, "held-out text for model degradation (default: unused paragraphs)")


def handle(args) -> int:
    from ..config import split_overrides
    from ..leaderboard import leaderboard_frame, render
    from ..methods.registry import BUILTINS, registry
    from ..storage import check_writable

    check_setting_or_model(args)
    config_overrides, method_overrides = split_overrides(args.overrides)
    args.overrides = config_overrides
    methods = list(BUILTINS) if args.method == "all" else [args.method]
    if args.method == "all" and (method_overrides or args.checkpoint):
        raise UserError("--method all takes no method.*/sweep.* overrides or --checkpoint",
                        "run single methods to change their settings")
    for name in methods:
        registry().get(name).load()             # an unknown method fails before any training
    check_writable(args.results, "--results")
    records = []
    for record, path, computed in (_pretrained_runs(args, methods, method_overrides) if args.model
                                   else _setting_runs(args, methods, method_overrides)):
        if computed:
            print(f"wrote {path}", file=sys.stderr)
        else:
            print(f"reused the existing record {path} (made {record.created} by commit "
                  f"{record.git_commit[:12]}): nothing was trained or recomputed; "
                  f"--force recomputes it, --results DIR keeps your runs elsewhere", file=sys.stderr)
        print(_points_table(record))
        records.append(record)
    print(render(leaderboard_frame(records), "md"))
    return 0


def _setting_runs(args, methods, method_overrides):
    from ..run import run_method

    config, setting = prepare(args)
    for name in methods:
        yield run_method(method_spec=name, config=config, setting=setting, workdir=args.workdir,
                         results=args.results, checkpoint_spec=args.checkpoint, method_overrides=method_overrides,
                         force=args.force, progress=not args.quiet, seed=args.seed)


def _pretrained_runs(args, methods, method_overrides):
    from ..config import metrics_config
    from ..methods.registry import registry
    from ..models import select_device
    from ..paragraphs import load_model, paragraphs_config, run_pretrained
    from ..storage import check_writable

    if args.checkpoint:
        raise UserError("--checkpoint does not apply to --model", "drop --checkpoint: the model is the checkpoint")
    config = paragraphs_config(args.model, args.paragraphs, args.heldout, args.overrides)
    metrics = metrics_config(args.overrides)
    if args.method == "all":          # the training-time methods need their own checkpoints
        methods = [m for m in methods if registry().get(m).load().checkpoint_kind is None]
    check_writable(args.workdir)
    device = select_device("auto")
    loaded = load_model(config, device)
    for name in methods:
        yield run_pretrained(method_spec=name, config=config, workdir=args.workdir, results=args.results,
                             method_overrides=method_overrides, device=device, force=args.force,
                             progress=not args.quiet, seed=args.seed, loaded=loaded, metrics=metrics)


def _points_table(record) -> str:
    import pandas as pd

    frame = pd.DataFrame([{record.knob: p.knob, "forgetting": p.forgetting, "forgetting_target": p.forgetting_target,
                           "degradation": p.degradation, "gap_closed": p.gap_closed,
                           "gap_closed_target": p.gap_closed_target, "em_repeated": p.em_repeated,
                           "em_control": p.em_control} for p in record.points])
    before = record.before
    header = (f"{record.method} on {record.checkpoint.label} ({record.setting}, {record.preset}): "
              f"before: repeated loss {before.repeated_loss:.3f}, val loss {before.val_loss:.3f}, "
              f"EM {before.em_repeated:.1f}; no-rep repeated loss {record.no_rep.repeated_loss:.3f}; "
              f"method {record.timings.method_seconds:.1f}s")
    return header + "\n" + frame.to_markdown(index=False, floatfmt=".3f") + "\n"
