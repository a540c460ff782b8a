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
               "writes results/analyses/<setting>-<preset>/memsinks-mean/localization.{json,md} and the precision-recall\n"
               "figure results/figures/localization-pr_<setting>-<preset>.{pdf,png}; the localizers\n"
               "run on the sequence-free `mean` view, one forget sequence (or --group-size of them) at a time")
    setting_options(parser)
    parser.add_argument("--methods", default="ig,hard-concrete,random-neurons",
                        help="comma-separated localizers (built-in names, plugins, FILE.py:Class)")
    parser.add_argument("--group-size", type=int, default=1,
                        help="forget sequences per localizer call, scored against their sinks' union (default 1)")
    parser.add_argument("--seeds", default="0",
                        help="comma-separated seeds, each its own MemSinks checkpoint and localizer seed; the "
                             "intervals resample seeds and the groups inside them (default 0)")
    parser.add_argument("--seed-fields", default="train.seed",
                        help="what a seed sets besides the localizer's seed, as in a sweep's seed_fields "
                             "(default train.seed; train.seed,data.seed: each seed its own forget set)")
    results_option(parser)


def handle(args) -> int:
    from ..checkpoints import git_commit, resolve_target, viewed_model
    from ..kinds.memsinks import MemSinks
    from ..localization import DIRECTIONS, localization_table, own_sinks, render, summarize
    from ..setting import forget_set, retain_set
    from ..methods.base import MethodContext
    from ..models import select_device
    from ..storage import atomic_write_json, atomic_write_text, check_writable

    if args.group_size < 1:
        raise UserError(f"--group-size {args.group_size} must be at least 1", "e.g. --group-size 1 or 8")
    seeds, fields = _seeds(args.seeds, args.seed_fields)
    planned = _localizers(args.methods)
    check_writable(args.results, "--results")
    base = list(args.overrides)
    for override in base:
        if override.split("=", 1)[0].strip() in fields:
            raise UserError(f"--set {override} names a seed field that --seeds sets",
                            f"give the seed with --seeds instead, or leave it out of --seed-fields ({','.join(fields)})")
    found: dict[str, dict] = {name: {"groups": [], "localizer_seconds": 0.0} for name, _ in planned}
    checkpoints = []
    for seed in seeds:
        args.overrides = base + [f"{field}={seed}" for field in fields]
        config, setting = prepare(args)
        device = select_device(config.train.device)
        target = resolve_target(f"{MemSinks.name}:mean", args.workdir, setting, config, not args.quiet, device)
        checkpoints.append(str(target.checkpoint.directory))
        model = viewed_model(target, config)
        own, pool = own_sinks(config, setting, model)
        context = MethodContext(targets=forget_set(setting, config.scoring.forget_span), retain=retain_set(setting),
                                pad_id=setting.tokenizer.pad_token_id, device=device, seed=seed, config=config)
        for name, method in planned:
            rows, seconds = localization_table(method, model, context, setting, own, pool, args.group_size)
            found[name]["groups"] += [{**row, "seed": seed} for row in rows]
            found[name]["localizer_seconds"] += seconds
            print(f"localized {name} (seed {seed}): {seconds:.1f} s", file=sys.stderr)
    args.overrides = base
    report = {"setting": setting.name, "preset": config.preset, "checkpoint": checkpoints[0],
              "checkpoints": checkpoints, "seeds": seeds, "seed_fields": fields,
              "forget_span": config.scoring.forget_span,
              "group_size": args.group_size, "git_commit": git_commit(), "directions": DIRECTIONS, "methods": {}}
    for name, _ in planned:
        groups = found[name]["groups"]
        report["methods"][name] = {"summary": summarize(groups), "groups": groups,
                                   "localizer_seconds": round(found[name]["localizer_seconds"] / len(seeds), 3)}
    directory = args.results / "analyses" / f"{setting.name}-{config.preset}" / "memsinks-mean"
    atomic_write_json(directory / "localization.json", json.loads(json.dumps(report)))
    atomic_write_text(directory / "localization.md", render(report))
    from ..plots import localization_pr_figure, save_figure

    save_figure(localization_pr_figure(report, title=f"{setting.name} ({config.preset} preset): localizing own sinks"),
                args.results / "figures" / f"localization-pr_{setting.name}-{config.preset}")
    print(render(report))
    return 0


def _seeds(seeds: str, fields: str) -> tuple[list[int], list[str]]:
    from ..sweep.spec import SEED_FIELDS

    try:
        parsed = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds '{seeds}' is not a comma-separated list of integers", "e.g. --seeds 0,1,2") from None
    if not parsed or len(set(parsed)) != len(parsed):
        raise UserError(f"--seeds '{seeds}' must name at least one seed, each once", "e.g. --seeds 0,1,2")
    named = [f.strip() for f in fields.split(",") if f.strip()]
    for field in named:
        if field not in SEED_FIELDS:
            raise UserError(f"--seed-fields '{field}' is not a seed field", f"use {', '.join(SEED_FIELDS)}")
    return parsed, named


def _localizers(methods: str) -> list:
    from ..methods.base import NeuronLocalizer
    from ..run import plan_method

    planned = []
    for name in (m.strip() for m in methods.split(",") if m.strip()):
        entry, method, _, _ = plan_method(name, None, [])
        if not isinstance(method, NeuronLocalizer):
            raise UserError(f"method '{entry.name}' is not a localizer (it edits the model)",
                            "give NeuronLocalizer methods, e.g. --methods ig,hard-concrete,random-neurons")
        planned.append((entry.name, method))
    return planned
