"""What the analyses share: the memorized / non-memorized groups and the transformer-lens view.

Memorized sequences are the setting's repeated ones; non-memorized are the control set
(single-seen training sequences with the same prefix / continuation layout), so both groups are
training data and differ only in how often they were seen.
"""

from __future__ import annotations

import warnings

import torch

from ..errors import UserError
from ..setting import SequenceSet

GROUPS = ("memorized", "non-memorized")


def sequence_groups(setting, max_sequences: int | None = None) -> dict[str, SequenceSet]:
    """{"memorized": repeated, "non-memorized": control}, each cut to its first `max_sequences`."""
    found = {"memorized": setting.repeated, "non-memorized": setting.control}
    if max_sequences is not None:
        if max_sequences < 1:
            raise UserError(f"max_sequences={max_sequences} must be positive", "pass an integer >= 1")
        found = {g: s.subset(range(min(max_sequences, len(s)))) for g, s in found.items()}
    return found


def pad_id_of(setting) -> int:
    return setting.tokenizer.pad_token_id


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def require_gpt2(model, analysis: str) -> None:
    if getattr(model.config, "model_type", None) != "gpt2":
        raise UserError(f"the {analysis} analysis reads GPT-2 attention weights, not "
                        f"'{getattr(model.config, 'model_type', None)}'", "analyze a GPT-2 checkpoint")


def as_hooked(model):
    """The HF model as a transformer-lens HookedTransformer (same weights, same logits).

    GPT-2 is converted here from its HF config: `models.to_hooked_transformer` goes through
    transformer-lens' `convert_hf_model_config`, which (transformer-lens 3.9, transformers 5)
    rejects an unnamed model (hub-name lookup) and a checkpoint directory (GPT2Config has no
    `n_ctx`). Other architectures go through `models.to_hooked_transformer`.
    """
    from ..models import to_hooked_transformer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if getattr(model.config, "model_type", None) == "gpt2":
            return _gpt2_hooked(model)
        return to_hooked_transformer(model, model_device(model))


def _gpt2_hooked(model):
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens import loading_from_pretrained as loading

    from ..models import _tl_config_from_hf

    require_gpt2(model, "transformer-lens")
    fields = _tl_config_from_hf(model.config, "GPT2LMHeadModel")
    fields.update(device=str(model_device(model)), dtype=next(model.parameters()).dtype)
    cfg = HookedTransformerConfig(**fields)
    hooked = HookedTransformer(cfg)
    hooked.load_state_dict(loading.convert_gpt2_weights(model, cfg), strict=False)
    return hooked.eval()


def plain(value):
    """numpy / torch scalars and arrays -> JSON-ready Python values (NaN -> None)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
