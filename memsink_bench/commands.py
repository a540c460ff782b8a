"""What each CLI command does; `cli.py` only parses."""

from __future__ import annotations

import json
import sys
from argparse import RawDescriptionHelpFormatter
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
        for name, kind in KINDS.items():
            print(f"{name:16s} {kind.description}")
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


@registrar
def _register_run(sub, common) -> None:
    run = sub.add_parser(
        "run", help="run one method on a checkpoint and write its result record",
        formatter_class=RawDescriptionHelpFormatter,
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

    from .config import split_overrides

    config_overrides, method_overrides = split_overrides(args.overrides)
    args.overrides = config_overrides
    methods = list(BUILTINS) if args.method == "all" else [args.method]
    if args.method == "all" and (method_overrides or args.checkpoint):
        raise UserError("--method all takes no method.*/sweep.* overrides or --checkpoint",
                        "run single methods to change their settings")
    for name in methods:
        registry().get(name).load()             # an unknown method fails before any training
    check_writable(args.results, "--results")
    config, setting = prepare(args)
    records = []
    for name in methods:
        record, path, computed = run_method(
            method_spec=name, config=config, setting=setting, workdir=args.workdir, results=args.results,
            checkpoint_spec=args.checkpoint, method_overrides=method_overrides, force=args.force,
            progress=not args.quiet, seed=args.seed)
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


# --- analyses, figures and the report --------------------------------------------------------

@registrar
def _register_analyses(sub, common) -> None:
    from .analyses import ANALYSES

    analyze = sub.add_parser(
        "analyze", help="mechanistic analysis of a checkpoint (rare-token heads, gradients, perturbation)",
        formatter_class=RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  memsink-bench analyze rare-tokens --setting ts-repetition\n"
               "  memsink-bench analyze gradient-signature --setting ts-canary --checkpoint memsinks:drop\n"
               "  memsink-bench analyze prefix-perturbation --setting ts-repetition --max-sequences 16 --seed 1\n"
               "writes results/analyses/<setting>-<preset>/<checkpoint>/<analysis>.{json,csv,md,pdf,png};\n"
               "memorized = the repeated sequences, non-memorized = the control set")
    analyze.add_argument("analysis", choices=sorted(ANALYSES))
    common(analyze)
    analyze.add_argument("--checkpoint", default="standard",
                         help="KIND[:VIEW] (trained if missing) or a checkpoint directory; default: standard")
    analyze.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: ./results)")
    analyze.add_argument("--max-sequences", type=int, default=None, help="analyze only the first N sequences of each group")
    analyze.add_argument("--seed", type=int, default=0, help="seed of the random replacement tokens (prefix-perturbation)")

    plot = sub.add_parser(
        "plot", help="draw the tradeoff or training-curve figure of a setting",
        formatter_class=RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  memsink-bench plot tradeoff --setting ts-canary            # from results/records\n"
               "  memsink-bench plot training-curves --setting ts-repetition  # from trained checkpoints\n"
               "  memsink-bench plot sweep --setting ts-repetition --parameter data.id_noise --values 0,0.1,0.5\n"
               "  memsink-bench plot dynamics --setting ts-repetition --set data.n_repeated=1 --set data.repetitions=8\n"
               "      (after training standard and memsinks with those --set and --set train.trace_repeated=true)\n"
               "figures go to results/figures/<figure>_<setting>-<preset>.{pdf,png}")
    plot.add_argument("figure", choices=["tradeoff", "training-curves", "sweep", "dynamics"])
    common(plot)
    plot.add_argument("--parameter", default="memsinks.sink_fraction",
                      help="sweep: the swept field, e.g. memsinks.sink_fraction or data.id_noise")
    plot.add_argument("--values", default="0.1,0.3,0.5,0.7",
                      help="sweep: comma-separated values; checkpoints not yet trained are skipped")
    plot.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: ./results)")

    report = sub.add_parser(
        "report", help="rebuild every table and figure in results/ from stored records and analyses",
        formatter_class=RawDescriptionHelpFormatter,
        epilog="example:\n  memsink-bench report --results results\n"
               "writes leaderboard.{md,csv,tex,html}, figures/, analysis tables and index.html; computes nothing")
    report.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: ./results)")


@handler("analyze")
def cmd_analyze(args) -> int:
    import inspect

    from .analyses import load_analysis
    from .analyses.store import analysis_path, render_analysis, write_analysis
    from .models import select_device
    from .checkpoints import resolve_target, viewed_model
    from .storage import check_writable

    module = load_analysis(args.analysis)
    check_writable(args.results, "--results")
    config, setting = prepare(args)
    device = select_device(config.train.device)
    target = resolve_target(args.checkpoint, args.workdir, setting, config, not args.quiet, device)
    model = viewed_model(target, config)
    accepted = inspect.signature(module.run).parameters
    parameters = {k: v for k, v in (("max_sequences", args.max_sequences), ("seed", args.seed)) if k in accepted}
    frame, summary = module.run(model, setting, **parameters)
    path = analysis_path(args.results, setting.name, config.preset, target.label, args.analysis)
    write_analysis(path, args.analysis, frame, summary, _analysis_provenance(setting, config, target, parameters))
    written = render_analysis(path)
    print(f"wrote {path} and {', '.join(p.name for p in written)}", file=sys.stderr)
    print(path.with_suffix(".md").read_text())
    return 0


def _analysis_provenance(setting, config, target, parameters: dict) -> dict:
    """What an analysis output records about where it came from (never shown in its tables)."""
    from .checkpoints import git_commit, package_versions

    return {"setting": setting.name, "preset": config.preset, "setting_hash": setting.setting_hash,
            "corpus": setting.corpus_name, "corpus_hash": setting.corpus_hash, "parameters": parameters,
            "checkpoint": {"label": target.label, "kind": target.checkpoint.kind, "view": target.view,
                           "path": str(target.checkpoint.directory)},
            "versions": package_versions(), "git_commit": git_commit()}


@handler("plot")
def cmd_plot(args) -> int:
    from .config import load_config
    from .leaderboard import load_records
    from .report import render_training_curves, save_training_curves, training_curves_from_checkpoints, write_tradeoff

    config = load_config(args.setting, args.preset, args.overrides)
    if args.figure == "tradeoff":
        written = write_tradeoff(load_records(args.results), args.results, config.setting, config.preset)
        if not written:
            raise UserError(f"no result records for {config.setting} ({config.preset}) under {args.results}",
                            f"run `memsink-bench run --method ... --setting {config.setting} --preset {config.preset}` first")
    elif args.figure == "sweep":
        written = _plot_sweep(args, config)
    elif args.figure == "dynamics":
        written = _plot_dynamics(args, config)
    else:
        curves, sources = training_curves_from_checkpoints(args.workdir, config)
        if not curves:
            raise UserError(f"no trained checkpoints of {config.setting} ({config.preset}) under {args.workdir}",
                            f"train one with `memsink-bench train --setting {config.setting} --kind standard`")
        written = render_training_curves(save_training_curves(args.results, config.setting, config.preset,
                                                              curves, sources), args.results)
    print("\n".join(str(p) for p in written))
    return 0


def _plot_dynamics(args, config) -> list:
    from .report import DYNAMICS_FILE, dynamics_from_checkpoints, render_dynamics
    from .storage import atomic_write_json

    stored = dynamics_from_checkpoints(args.workdir, config)
    if not stored["traces"]:
        raise UserError(f"no repeated-sequence traces for {config.setting} ({config.preset}) with these --set values",
                        "train standard and memsinks with the same --set and --set train.trace_repeated=true")
    path = args.results / "analyses" / f"{config.setting}-{config.preset}" / DYNAMICS_FILE
    atomic_write_json(path, stored)
    return render_dynamics(path, args.results)


def _plot_sweep(args, config) -> list:
    from .report import render_sweep, sweep_from_checkpoints, sweep_path
    from .storage import atomic_write_json

    if args.parameter.split(".", 1)[0] not in ("memsinks", "data") or "." not in args.parameter:
        raise UserError(f"cannot sweep '{args.parameter}'", "use memsinks.<field> or data.<field>")
    try:
        values = [float(v) for v in args.values.split(",")]
    except ValueError:
        raise UserError(f"--values '{args.values}' is not a comma-separated list of numbers", "e.g. --values 0.1,0.3") from None
    stored = sweep_from_checkpoints(args.workdir, config, args.parameter, values)
    if len(stored["pairs"]) < 2:
        raise UserError(f"only {len(stored['pairs'])} MemSinks checkpoints of the sweep are trained",
                        f"train them: memsink-bench train --setting {config.setting} --kind memsinks "
                        f"--set {args.parameter}=VALUE")
    path = sweep_path(args.results, config.setting, config.preset, args.parameter)
    atomic_write_json(path, stored)
    return render_sweep(path, args.results)


@handler("report")
def cmd_report(args) -> int:
    from .report import build_report

    written = build_report(args.results)
    print(f"wrote {len(written)} files under {args.results}; open {args.results / 'index.html'}", file=sys.stderr)
    return 0

