"""`memsink-bench analyze`: a mechanistic analysis of one checkpoint."""

from __future__ import annotations

import sys
from argparse import RawDescriptionHelpFormatter

from .options import prepare, results_option, setting_options


def register(sub) -> None:
    from ..analyses import ANALYSES

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
    setting_options(analyze)
    analyze.add_argument("--checkpoint", default="standard",
                         help="KIND[:VIEW] (trained if missing) or a checkpoint directory; default: standard")
    analyze.add_argument("--max-sequences", type=int, default=None, help="analyze only the first N sequences of each group")
    analyze.add_argument("--seed", type=int, default=0, help="seed of the random replacement tokens (prefix-perturbation)")
    results_option(analyze)


def handle(args) -> int:
    import inspect

    from ..analyses import load_analysis
    from ..analyses.store import analysis_path, render_analysis, write_analysis
    from ..models import select_device
    from ..checkpoints import resolve_target, viewed_model
    from ..storage import check_writable

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
    from ..checkpoints import git_commit, package_versions

    return {"setting": setting.name, "preset": config.preset, "setting_hash": setting.setting_hash,
            "corpus": setting.corpus_name, "corpus_hash": setting.corpus_hash, "parameters": parameters,
            "checkpoint": {"label": target.label, "kind": target.checkpoint.kind, "view": target.view,
                           "path": str(target.checkpoint.directory)},
            "versions": package_versions(), "git_commit": git_commit()}
