"""`memsink-bench localize`: localizers scored against a MemSinks checkpoint's own sinks."""

from __future__ import annotations

import json
import sys
from argparse import RawDescriptionHelpFormatter

from ..errors import UserError
from .options import prepare, results_option, setting_options


def register(sub) -> None:
    parser = sub.add_parser(
        "localize", help="score localizers against the sinks a MemSinks checkpoint gave each sequence",
        formatter_class=RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  memsink-bench localize --setting ts-repetition --methods ig,random-neurons\n"
               "  memsink-bench localize --setting ts-canary --methods hard-concrete --group-size 8\n"
               "writes results/analyses/<setting>-<preset>/memsinks-mean/localization.{json,md}; the localizers\n"
               "run on the sequence-free `mean` view, one forget sequence (or --group-size of them) at a time")
    setting_options(parser)
    parser.add_argument("--methods", default="ig,hard-concrete,random-neurons",
                        help="comma-separated localizers (built-in names, plugins, FILE.py:Class)")
    parser.add_argument("--group-size", type=int, default=1,
                        help="forget sequences per localizer call, scored against their sinks' union (default 1)")
    results_option(parser)


def handle(args) -> int:
    from ..checkpoints import git_commit, resolve_target, viewed_model
    from ..kinds import get_kind
    from ..kinds.memsinks import MemSinks
    from ..localization import localization_table, summarize
    from ..masks import split_neurons
    from ..methods.base import MethodContext, NeuronLocalizer
    from ..models import mlp_shape, select_device
    from ..run import plan_method
    from ..storage import atomic_write_json, atomic_write_text, check_writable

    if args.group_size < 1:
        raise UserError(f"--group-size {args.group_size} must be at least 1", "e.g. --group-size 1 or 8")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    planned = []
    for name in methods:
        entry, method, _, _ = plan_method(name, None, [])
        if not isinstance(method, NeuronLocalizer):
            raise UserError(f"method '{entry.name}' is not a localizer (it edits the model)",
                            "give NeuronLocalizer methods, e.g. --methods ig,hard-concrete,random-neurons")
        planned.append((entry.name, method))
    check_writable(args.results, "--results")
    config, setting = prepare(args)
    device = select_device(config.train.device)
    target = resolve_target(f"{MemSinks.name}:mean", args.workdir, setting, config, not args.quiet, device)
    model = viewed_model(target, config)
    d_mlp = mlp_shape(model)[1]
    n_shared, _ = split_neurons(d_mlp, config.memsinks.shared_fraction)
    pool = torch_arange(d_mlp) >= n_shared
    own = (get_kind(MemSinks.name).training_scale(config, d_mlp, torch_tensor(setting.repeated.ids))[0, :, 0, :] > 0) & pool
    context = MethodContext(targets=setting.repeated, retain=setting.control, pad_id=setting.tokenizer.pad_token_id,
                            device=device, seed=0, config=config)
    report = {"setting": setting.name, "preset": config.preset, "checkpoint": str(target.checkpoint.directory),
              "group_size": args.group_size, "git_commit": git_commit(), "methods": {}}
    lines = ["| method | precision@k (all) | AUROC (all) | precision@k (sink pool) | AUROC (sink pool) | "
             "forgetting: method top-k / own sinks | localizer s |", "|---|---|---|---|---|---|---|"]
    for name, method in planned:
        rows, seconds = localization_table(method, model, context, setting, own, pool, args.group_size)
        summary = summarize(rows)
        report["methods"][name] = {"summary": summary, "groups": rows, "localizer_seconds": round(seconds, 3)}

        def cell(key):
            value = summary[key]
            return f"{value['mean']:.3f} [{value['interval'][0]:.3f}, {value['interval'][1]:.3f}]"
        ratio = summary["causal_ratio"]
        lines.append(f"| {name} | {cell('precision_all')} | {cell('auroc_all')} | {cell('precision_pool')} | "
                     f"{cell('auroc_pool')} | {summary['forgetting_method_top_k']['mean']:.3f} / "
                     f"{summary['forgetting_own_sinks']['mean']:.3f}"
                     f"{f' ({ratio:.2f}x)' if ratio is not None else ''} | {seconds:.1f} |")
        print(f"localized {name}: {seconds:.1f} s", file=sys.stderr)
    first = next(iter(report["methods"].values()))["summary"]
    lines.append(f"\nchance: precision@k {first['chance_all']['mean']:.3f} over all neurons, "
                 f"{first['chance_pool']['mean']:.3f} within the sink pool; AUROC 0.5. Intervals: 95% bootstrap "
                 f"over forget-sequence groups of {args.group_size}.")
    directory = args.results / "analyses" / f"{setting.name}-{config.preset}" / "memsinks-mean"
    atomic_write_json(directory / "localization.json", json.loads(json.dumps(report)))
    atomic_write_text(directory / "localization.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def torch_arange(n):
    import torch
    return torch.arange(n)


def torch_tensor(values):
    import torch
    return torch.tensor(values)
