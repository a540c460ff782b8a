"""Building, loading and converting the causal LMs the benchmark trains and edits.

Every intervention on MLP neurons goes through `mlp_layout(model)`: for each layer, the
up-projection module(s) whose outputs make the hidden activation, and the down-projection whose
*input* is the hidden activation after the nonlinearity ("batch pos d_mlp"). One layout serves
GPT-2, GPT-Neo, GPT-NeoX and gated (Llama-style) MLPs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from .config import ModelConfig
from .errors import UserError


@dataclass
class MLPLayer:
    """The modules of one MLP block: `up` maps d_model -> d_mlp, `down` maps d_mlp -> d_model."""

    up: list[nn.Module]
    down: nn.Module
    d_mlp: int


# attribute path of the block list, then of (up projections, down projection) inside `block.mlp`
_LAYOUTS = {
    "gpt2": ("transformer.h", "mlp", ["c_fc"], "c_proj"),
    "gpt_neo": ("transformer.h", "mlp", ["c_fc"], "c_proj"),
    "gpt_neox": ("gpt_neox.layers", "mlp", ["dense_h_to_4h"], "dense_4h_to_h"),
    "llama": ("model.layers", "mlp", ["gate_proj", "up_proj"], "down_proj"),
    "mistral": ("model.layers", "mlp", ["gate_proj", "up_proj"], "down_proj"),
    "qwen2": ("model.layers", "mlp", ["gate_proj", "up_proj"], "down_proj"),
}


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def weight_layout(module: nn.Module) -> str:
    """'linear' (weight [out, in]) or 'conv1d' (GPT-2's Conv1D, weight [in, out])."""
    if isinstance(module, nn.Linear):
        return "linear"
    if type(module).__name__ == "Conv1D":
        return "conv1d"
    raise UserError(f"unsupported projection module {type(module).__name__}",
                    "use a model whose MLP projections are nn.Linear or GPT-2 Conv1D")


def mlp_layout(model: nn.Module) -> list[MLPLayer]:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in _LAYOUTS:
        raise UserError(f"no MLP layout known for model type '{model_type}'",
                        f"use one of {', '.join(sorted(_LAYOUTS))}")
    blocks_path, mlp_name, up_names, down_name = _LAYOUTS[model_type]
    layers = []
    for block in _get(model, blocks_path):
        mlp = getattr(block, mlp_name)
        down = getattr(mlp, down_name)
        d_mlp = down.weight.shape[0 if weight_layout(down) == "conv1d" else 1]
        layers.append(MLPLayer([getattr(mlp, name) for name in up_names], down, d_mlp))
    return layers


def mlp_shape(model: nn.Module) -> tuple[int, int]:
    """(layers, d_mlp) of the neuron grid that localizers score."""
    layers = mlp_layout(model)
    return len(layers), layers[0].d_mlp


def build_model(cfg: ModelConfig, vocab_size: int, seq_len: int, seed: int) -> nn.Module:
    """A fresh GPT-2 with SDPA attention and no dropout (dropout would blur memorization).

    The activation is GPT-2's tanh-approximated GELU computed by one fused kernel
    (`gelu_pytorch_tanh`, the same function as GPT-2's `gelu_new`, which takes five elementwise
    kernels forward and more backward): 1.2x faster training at the cpu preset.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size, n_positions=seq_len, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=cfg.d_mlp, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, activation_function="gelu_pytorch_tanh",
    )
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    return model


def load_pretrained(name_or_path: str, revision: str | None = None, trust_remote_code: bool = False,
                    dtype: torch.dtype | None = None):
    """A local HF causal-LM directory or a hub id, with its own tokenizer (safetensors weights only;
    `trust_remote_code` only when the user asks for it).

    Hub ids need the network (or the local HF cache); the error says so when neither is there.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = os.path.isdir(name_or_path)
    tokenizer_files = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
    if local and not any(os.path.isfile(os.path.join(name_or_path, f)) for f in tokenizer_files):
        raise UserError(f"cannot load the tokenizer of '{name_or_path}' (local directory): it has none of "
                        f"{', '.join(tokenizer_files)}", "save the tokenizer beside the model "
                        "(tokenizer.save_pretrained(DIR))")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as error:
        raise UserError(f"cannot load the tokenizer of '{name_or_path}' ({'local directory' if local else 'hub id'}): "
                        f"{str(error).splitlines()[0][:200]}",
                        "save the tokenizer beside the model (tokenizer.save_pretrained(DIR))" if local else
                        "check the hub id, or download the model while online and give its local directory") from None
    try:
        # attention: transformers' default, SDPA where the architecture has it (GPT-Neo does not)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, revision=revision,
                                                     use_safetensors=True, trust_remote_code=trust_remote_code,
                                                     **_dtype_argument(dtype))
    except (OSError, ValueError, KeyError) as error:
        where = "local directory" if local else "hub id"
        raise UserError(f"cannot load model '{name_or_path}' ({where}): {str(error).splitlines()[0][:200]}",
                        "give a directory with config.json, *.safetensors and a tokenizer, or a "
                        "hub id reachable from this machine") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'", "use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but CUDA is not available", "use --set train.device=cpu")
    return device


def to_hooked_transformer(model: nn.Module, device: str | torch.device = "cpu"):
    """Convert an HF GPT-2 / GPT-Neo / GPT-NeoX / Llama-style model into a transformer-lens
    HookedTransformer offline (same weights, same logits): the analyses' converter
    (`analyses.common.as_hooked`), which builds the config from the model's own, so a model built
    from a config or saved locally converts without the hub."""
    from .analyses.common import as_hooked

    hooked = as_hooked(model)
    return hooked if str(device) == str(next(model.parameters()).device) else hooked.to(device)


def _tl_config_from_hf(hf_config, architecture: str) -> dict:
    """GPT-2 config translation for transformer-lens versions whose converter needs the hub."""
    if architecture != "GPT2LMHeadModel":
        raise UserError("this transformer-lens version cannot convert the model offline",
                        "install transformer-lens==3.9.0")
    return {
        "d_model": hf_config.n_embd, "d_head": hf_config.n_embd // hf_config.n_head,
        "n_heads": hf_config.n_head, "d_mlp": hf_config.n_inner or 4 * hf_config.n_embd,
        "n_layers": hf_config.n_layer, "n_ctx": hf_config.n_positions, "eps": hf_config.layer_norm_epsilon,
        "d_vocab": hf_config.vocab_size, "act_fn": hf_config.activation_function,
        "use_attn_scale": True, "use_local_attn": False, "scale_attn_by_inverse_layer_idx":
        hf_config.scale_attn_by_inverse_layer_idx, "normalization_type": "LN",
        "original_architecture": architecture, "tokenizer_prepends_bos": False,
    }


def cached_forward(model: nn.Module, input_ids: torch.Tensor, past=None, **kwargs):
    """One incremental decoding step: (output, key/value cache for the next step).

    transformers 5 renamed the forward argument and output field `past_key_values` to `cache`
    (the old name warns); this passes and reads whichever the model's forward takes.
    """
    import inspect

    takes_cache = "cache" in inspect.signature(type(model).forward).parameters
    if past is not None:
        kwargs["cache" if takes_cache else "past_key_values"] = past
    output = model(input_ids=input_ids, use_cache=True, **kwargs)
    return output, (output.cache if takes_cache else output.past_key_values)


def _dtype_argument(dtype: torch.dtype | None) -> dict:
    """from_pretrained's dtype keyword: `dtype` since transformers 4.56 (the old `torch_dtype` warns in 5)."""
    if dtype is None:
        return {}
    import transformers
    from packaging.version import Version

    return {"dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype": dtype}
