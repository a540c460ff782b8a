"""`memsink-bench plot`: the tradeoff, training-curve, sweep and dynamics figures."""

from __future__ import annotations

from argparse import RawDescriptionHelpFormatter

from ..errors import UserError
from .options import results_option, setting_options


def register(sub) -> None:
    plot = sub.add_parser(
        "plot", help="draw the tradeoff or training-curve figure of a setting",
        formatter_class=RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  memsink-bench plot tradeoff --setting ts-canary            # from results/records\n"
               "  memsink-bench plot pareto --setting ts-canary              # gap closed within every budget\n"
               "  memsink-bench plot robustness --setting ts-canary          # MIA ROC and relearning curves\n"
               "  memsink-bench plot neighbours --setting ts-repetition     # collateral damage on look-alike text\n"
               "  memsink-bench plot training-curves --setting ts-repetition  # from trained checkpoints\n"
               "  memsink-bench plot sweep --setting ts-repetition --parameter data.id_noise --values 0,0.1,0.5\n"
               "  memsink-bench plot dynamics --setting ts-repetition --set data.n_repeated=1 --set data.repetitions=8\n"
               "      (after training standard and memsinks with those --set and --set train.trace_repeated=true)\n"
               "figures go to results/figures/<figure>_<setting>-<preset>.{pdf,png}")
    plot.add_argument("figure", choices=["tradeoff", "pareto", "robustness", "neighbours", "training-curves", "sweep",
                                              "dynamics"])
    setting_options(plot)
    plot.add_argument("--parameter", default="memsinks.sink_fraction",
                      help="sweep: the swept field, e.g. memsinks.sink_fraction or data.id_noise")
    plot.add_argument("--values", default="0.1,0.3,0.5,0.7",
                      help="sweep: comma-separated values; checkpoints not yet trained are skipped")
    results_option(plot)


def handle(args) -> int:
    from ..config import load_config
    from ..leaderboard import load_records
    from ..report import (render_training_curves, save_training_curves, training_curves_from_checkpoints,
                          write_neighbours, write_pareto, write_robustness, write_tradeoff)

    config = load_config(args.setting, args.preset, args.overrides)
    if args.figure in ("tradeoff", "pareto"):
        write = write_tradeoff if args.figure == "tradeoff" else write_pareto
        written = write(load_records(args.results), args.results, config.setting, config.preset)
        if not written:
            raise UserError(f"no result records for {config.setting} ({config.preset}) under {args.results}",
                            f"run `memsink-bench run --method ... --setting {config.setting} --preset {config.preset}` first")
    elif args.figure == "neighbours":
        written = write_neighbours(load_records(args.results), args.results, config.setting, config.preset)
        if not written:
            raise UserError(f"no records with neighbour losses for {config.setting} ({config.preset}) under {args.results}",
                            f"run `memsink-bench run --method ... --setting {config.setting} --preset {config.preset}` "
                            "(records made before neighbours were measured have none)")
    elif args.figure == "robustness":
        written = write_robustness(load_records(args.results), args.results, config.setting, config.preset)
        if not written:
            raise UserError(f"no records with robustness results for {config.setting} ({config.preset}) "
                            f"under {args.results}", "records written before robustness existed lack them: "
                            f"run `memsink-bench run --method ... --setting {config.setting} --force` to recompute")
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
    from ..report import DYNAMICS_FILE, dynamics_from_checkpoints, render_dynamics
    from ..storage import atomic_write_json

    stored = dynamics_from_checkpoints(args.workdir, config)
    if not stored["traces"]:
        raise UserError(f"no repeated-sequence traces for {config.setting} ({config.preset}) with these --set values",
                        "train standard and memsinks with the same --set and --set train.trace_repeated=true")
    path = args.results / "analyses" / f"{config.setting}-{config.preset}" / DYNAMICS_FILE
    atomic_write_json(path, stored)
    return render_dynamics(path, args.results)


def _plot_sweep(args, config) -> list:
    from ..report import render_sweep, sweep_from_checkpoints, sweep_path
    from ..storage import atomic_write_json

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
