"""`memsink-bench analyze`: a mechanistic analysis of one checkpoint, or of a pretrained model."""

from __future__ import annotations

import sys
from argparse import RawDescriptionHelpFormatter

from ..errors import UserError
from .options import check_setting_or_model, prepare, pretrained_options, results_option, setting_options


def register(sub) -> None:
    from ..analyses import ANALYSES

    analyze = sub.add_parser(
        "analyze", help="mechanistic analysis of a checkpoint (rare-token heads, gradients, perturbation)",
        formatter_class=RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  memsink-bench analyze rare-tokens --setting ts-repetition\n"
               "  memsink-bench analyze gradient-signature --setting ts-canary --checkpoint memsinks:drop\n"
               "  memsink-bench analyze prefix-perturbation --setting ts-repetition --max-sequences 16 --seed 1\n"
               "  memsink-bench analyze rare-tokens --model EleutherAI/gpt-neo-125m --paragraphs paragraphs.jsonl "
               "--frequencies wiki.txt\n"
               "writes results/analyses/<setting>-<preset>/<checkpoint>/<analysis>.{json,csv,md,pdf,png}\n"
               "(a pretrained model: results/analyses/paragraphs-<model>/pretrained/...);\n"
               "memorized = the repeated sequences (a pretrained model: its memorized paragraphs, the forget set),\n"
               "non-memorized = the control set")
    analyze.add_argument("analysis", choices=sorted(ANALYSES))
    setting_options(analyze, setting_required=False)
    analyze.add_argument("--checkpoint", default=None,
                         help="KIND[:VIEW] (trained if missing) or a checkpoint directory; default: standard")
    analyze.add_argument("--max-sequences", type=int, default=None, help="analyze only the first N sequences of each group")
    analyze.add_argument("--seed", type=int, default=0, help="seed of the random replacement tokens (prefix-perturbation)")
    analyze.add_argument("--frequencies", default=None, metavar="FILE",
                         help="rare-tokens: count unigram frequencies in this corpus (.txt one document per line, "
                              ".jsonl `text`, .parquet `text`); default: the setting's own sequences")
    results_option(analyze)
    pretrained_options(analyze, "held-out text (the setting's validation set; default: unused paragraphs)")


def handle(args) -> int:
    import inspect

    from ..analyses import load_analysis
    from ..analyses.store import analysis_path, render_analysis, write_analysis
    from ..storage import check_writable

    check_setting_or_model(args)
    module = load_analysis(args.analysis)
    parameters = _parameters(args, module)
    check_writable(args.results, "--results")
    model, setting, where, provenance = _pretrained(args) if args.model else _checkpoint(args)
    if "generalization_fraction" in inspect.signature(module.run).parameters:     # block-norms
        if args.model or provenance["checkpoint"]["kind"] != "gradient-masked" \
                or provenance["checkpoint"]["view"] not in ("default", "keep-all"):
            raise UserError(f"the {args.analysis} analysis reads a gradient-masked checkpoint",
                            f"run `memsink-bench analyze {args.analysis} --setting SETTING --checkpoint gradient-masked`")
        parameters["generalization_fraction"] = provenance["generalization_fraction"]
    frame, summary = module.run(model, setting, **parameters)
    path = analysis_path(args.results, *where, args.analysis)
    write_analysis(path, args.analysis, frame, summary, {**provenance, "parameters": parameters, **_versions()})
    written = render_analysis(path)
    print(f"wrote {path} and {', '.join(p.name for p in written)}", file=sys.stderr)
    print(path.with_suffix(".md").read_text())
    return 0


def _parameters(args, module) -> dict:
    """The keywords `module.run` takes: --max-sequences, --seed where it applies, --frequencies."""
    import inspect

    accepted = inspect.signature(module.run).parameters
    if args.frequencies is not None and "frequencies" not in accepted:
        raise UserError(f"--frequencies does not apply to the {args.analysis} analysis",
                        "drop --frequencies: it sets the unigram frequencies of rare-tokens")
    parameters = {k: v for k, v in (("max_sequences", args.max_sequences), ("seed", args.seed)) if k in accepted}
    if args.frequencies is not None:
        parameters["frequencies"] = str(module.frequency_file(args.frequencies))
    return parameters


def _checkpoint(args):
    """(model, setting, (setting, preset, checkpoint label), provenance) of a task setting's checkpoint."""
    from ..checkpoints import resolve_target, viewed_model
    from ..models import select_device

    config, setting = prepare(args)
    device = select_device(config.train.device)
    target = resolve_target(args.checkpoint or "standard", args.workdir, setting, config, not args.quiet, device)
    provenance = {"setting": setting.name, "preset": config.preset, "setting_hash": setting.setting_hash,
                  "corpus": setting.corpus_name, "corpus_hash": setting.corpus_hash,
                  "checkpoint": {"label": target.label, "kind": target.checkpoint.kind, "view": target.view,
                                 "path": str(target.checkpoint.directory)}}
    if target.checkpoint.kind == "gradient-masked":
        provenance["generalization_fraction"] = config.gradient_masked.generalization_fraction
    return viewed_model(target, config), setting, (setting.name, config.preset, target.label), provenance


def _pretrained(args):
    """The same for a pretrained model: its memorized paragraphs (the forget set) against the
    control set, labelled `paragraphs-<model>/pretrained`."""
    from ..models import select_device
    from ..paragraphs import get_paragraph_setting, load_model, model_identity, model_label, paragraphs_config
    from ..storage import check_writable

    if args.checkpoint:
        raise UserError("--checkpoint does not apply to --model", "drop --checkpoint: the model is the checkpoint")
    config = paragraphs_config(args.model, args.paragraphs, args.heldout, args.overrides)
    check_writable(args.workdir)
    model, tokenizer = load_model(config, select_device("auto"))
    setting = get_paragraph_setting(config, model, tokenizer, args.workdir)
    label = model_label(config)
    provenance = {"setting": setting.name, "preset": label, "setting_hash": setting.setting_hash,
                  "corpus": setting.corpus_name, "corpus_hash": setting.corpus_hash,
                  "checkpoint": {"label": "pretrained", "kind": "pretrained", "view": "model", "path": config.model},
                  "model_identity": model_identity(config), "paragraphs": config.to_dict()}
    return model, setting, (setting.name, label, "pretrained"), provenance


def _versions() -> dict:
    from ..checkpoints import git_commit, package_versions

    return {"versions": package_versions(), "git_commit": git_commit()}
