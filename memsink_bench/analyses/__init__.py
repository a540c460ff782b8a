"""Mechanistic analyses of where a checkpoint keeps its memorized sequences (Stoehr et al.):
the rare-token attention head, the per-layer gradient signature, and prefix-token perturbation;
and a diagnostic of gradient-masked checkpoints (what their memorization block writes).

Each analysis is a module with `NAME`, `TITLE`, `run(model, setting, ...) -> (DataFrame, summary)`
and `figure(frame, summary) -> matplotlib Figure`. `run` compares memorized (repeated) with
non-memorized (control) sequences (a pretrained model's memorized paragraphs, its forget set,
against its control set); `store` writes its raw output under
`results/analyses/<setting>-<preset>/<checkpoint>/<name>.json` (`paragraphs-<model>/pretrained/`
for a pretrained model), from which tables and figures are redrawn without recomputing anything.
Every architecture with an attention layout (`attention.LAYOUTS`: GPT-2, GPT-Neo, GPT-NeoX,
Llama-style) is analyzed the same way.
"""

from __future__ import annotations

import importlib

from ..errors import UserError, did_you_mean

ANALYSES = {
    "rare-tokens": "memsink_bench.analyses.rare_tokens",
    "gradient-signature": "memsink_bench.analyses.gradient_signature",
    "prefix-perturbation": "memsink_bench.analyses.prefix_perturbation",
    "block-norms": "memsink_bench.analyses.block_norms",
}


def load_analysis(name: str):
    """The module of a named analysis (imported lazily: torch and transformer-lens are heavy)."""
    if name not in ANALYSES:
        raise UserError(f"unknown analysis '{name}'", did_you_mean(name, ANALYSES))
    return importlib.import_module(ANALYSES[name])
