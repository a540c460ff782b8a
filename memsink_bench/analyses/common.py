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
    pad = setting.tokenizer.pad_token_id
    return 0 if pad is None else pad


def model_device(model) -> torch.device:
    return next(model.parameters()).device


# model_type -> (the architecture transformer-lens translates, its weight converter's name)
HOOKED_ARCHITECTURES = {
    "gpt2": ("GPT2LMHeadModel", "convert_gpt2_weights"),
    "gpt_neo": ("GPTNeoForCausalLM", "convert_neo_weights"),
    "gpt_neox": ("GPTNeoXForCausalLM", "convert_neox_weights"),
    "llama": ("LlamaForCausalLM", "convert_llama_weights"),
    "mistral": ("MistralForCausalLM", "convert_mistral_weights"),
    "qwen2": ("Qwen2ForCausalLM", "convert_qwen2_weights"),
}


def as_hooked(model):
    """The HF model as a transformer-lens HookedTransformer (same weights, same logits), offline.

    GPT-2 is converted from its HF config by `models._tl_config_from_hf` (transformer-lens 3.9
    with transformers 5 rejects GPT2Config, which has no `n_ctx`). Every other architecture goes
    through transformer-lens' own config translation, handed the model's config as a local
    directory: given a name it would look the model up on the hub, and given nothing (a model
    built from a config, or a non-official hub id) it gives up.
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens import loading_from_pretrained as loading

    model_type = getattr(model.config, "model_type", None)
    if model_type not in HOOKED_ARCHITECTURES:
        raise UserError(f"cannot convert model type '{model_type}' to transformer-lens",
                        f"analyze a model of type {', '.join(sorted(HOOKED_ARCHITECTURES))}")
    architecture, converter = HOOKED_ARCHITECTURES[model_type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fields = _gpt2_fields(model) if model_type == "gpt2" else _translated_fields(model, architecture)
        fields = {k: v for k, v in fields.items() if k in HookedTransformerConfig.__dataclass_fields__}
        fields.update(device=str(model_device(model)), dtype=next(model.parameters()).dtype, tokenizer_name=None)
        cfg = HookedTransformerConfig(**fields)
        hooked = HookedTransformer(cfg)
        hooked.load_state_dict(getattr(loading, converter)(model, cfg), strict=False)
    return hooked.eval()


def _gpt2_fields(model) -> dict:
    from ..models import _tl_config_from_hf

    return _tl_config_from_hf(model.config, "GPT2LMHeadModel")


def _translated_fields(model, architecture: str) -> dict:
    """transformer-lens' HookedTransformerConfig fields for the model's HF config, read from a
    temporary directory holding only that config (its name decides nothing: it is a path).
    d_mlp is the model's own: transformer-lens 3.9 takes 4 * d_model for GPT-Neo whatever its
    `intermediate_size`."""
    import copy
    import tempfile

    from transformer_lens import loading_from_pretrained as loading

    from ..models import mlp_shape

    config = copy.deepcopy(model.config)
    config.architectures = [architecture]
    with tempfile.TemporaryDirectory(prefix="hf-config-") as directory:
        config.save_pretrained(directory)
        try:
            fields = loading.convert_hf_model_config(directory)
        except (TypeError, ValueError, AttributeError, KeyError, NotImplementedError) as error:
            raise UserError(f"transformer-lens cannot translate this {architecture} config "
                            f"({type(error).__name__}: {str(error).splitlines()[0][:120]})",
                            "analyze a model whose config transformer-lens 3.x supports") from None
    return {**fields, "d_mlp": mlp_shape(model)[1]}


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
