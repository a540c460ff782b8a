"""Where each block's attention weights are, per model type: the one table that head ablation and
the gradient signature read, so that neither knows an architecture by name.

Per model type: the block list, the attention module inside a block, its output projection (whose
*input* is the merged heads "batch pos (head d_head)", head-major in every architecture here), and
how the query, key and value projections are stored:

- `columns` (GPT-2): one Conv1D `c_attn`, weight [d_model, 3 * d_model] (input dim first) whose
  columns are [Q | K | V];
- `per-head` (GPT-NeoX / Pythia): one Linear `query_key_value`, weight [3 * d_model, d_model] whose
  rows are [n_heads, 3, d_head]: each head's q, k and v rows side by side, not three thirds;
- `separate` (GPT-Neo, Llama-style): `q_proj`, `k_proj`, `v_proj` Linears; with grouped-query
  attention K and V have n_kv_heads * d_head output rows, fewer than Q's n_heads * d_head.

Q, K and V come out in transformer-lens' orientation, [d_model, (head d_head)]: `W_Q[layer]`
[head, d_model, d_head] flattened over its heads.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UserError
from ..models import weight_layout

PACKINGS = ("columns", "per-head", "separate")


@dataclass(frozen=True)
class AttentionLayout:
    """Attribute paths of one architecture's attention (see the module docstring)."""

    blocks: str                 # the block list, from the model
    attention: str              # the attention module, from a block
    output: str                 # the output projection, from the attention module
    packing: str                # one of PACKINGS
    qkv: tuple[str, ...]        # the packed projection, or the (query, key, value) ones

    def __post_init__(self):
        if self.packing not in PACKINGS:
            raise ValueError(f"unknown packing '{self.packing}', expected one of {PACKINGS}")
        if len(self.qkv) != (3 if self.packing == "separate" else 1):
            raise ValueError(f"packing '{self.packing}' takes {3 if self.packing == 'separate' else 1} projections")


_SEPARATE = ("q_proj", "k_proj", "v_proj")
_LLAMA_STYLE = AttentionLayout("model.layers", "self_attn", "o_proj", "separate", _SEPARATE)

LAYOUTS = {
    "gpt2": AttentionLayout("transformer.h", "attn", "c_proj", "columns", ("c_attn",)),
    "gpt_neo": AttentionLayout("transformer.h", "attn.attention", "out_proj", "separate", _SEPARATE),
    "gpt_neox": AttentionLayout("gpt_neox.layers", "attention", "dense", "per-head", ("query_key_value",)),
    "llama": _LLAMA_STYLE,
    "mistral": _LLAMA_STYLE,
    "qwen2": _LLAMA_STYLE,
}


@dataclass
class AttentionBlock:
    """One layer's attention: its Q/K/V projection module(s) and its output projection."""

    qkv: list[nn.Module]
    output: nn.Module
    packing: str
    n_heads: int
    n_kv_heads: int
    d_head: int

    @property
    def qkv_weights(self) -> list[nn.Parameter]:
        return [module.weight for module in self.qkv]


def _attribute(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def layout_of(model, needed_by: str = "head ablation") -> AttentionLayout:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in LAYOUTS:
        raise UserError(f"no attention layout is known for model type '{model_type}' (needed by {needed_by})",
                        f"analyze a model of type {', '.join(sorted(LAYOUTS))}")
    return LAYOUTS[model_type]


def attention_blocks(model, needed_by: str = "head ablation") -> list[AttentionBlock]:
    """Per layer, the attention's modules and head geometry."""
    layout = layout_of(model, needed_by)
    n_heads = model.config.num_attention_heads
    n_kv_heads = getattr(model.config, "num_key_value_heads", None) or n_heads
    found = []
    for block in _attribute(model, layout.blocks):
        attention = _attribute(block, layout.attention)
        output = getattr(attention, layout.output)
        merged = output.weight.shape[0 if weight_layout(output) == "conv1d" else 1]
        found.append(AttentionBlock([getattr(attention, name) for name in layout.qkv], output, layout.packing,
                                    n_heads, n_kv_heads, merged // n_heads))
    return found


def unpack_qkv(block: AttentionBlock, tensors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The weights of `block.qkv` (or their gradients) -> Q, K, V, each [d_model, (head d_head)]
    (K and V with n_kv_heads heads)."""
    if len(tensors) != len(block.qkv):
        raise ValueError(f"expected {len(block.qkv)} tensors for packing '{block.packing}', got {len(tensors)}")
    if block.packing == "columns":
        packed = tensors[0]
        if packed.shape[-1] != 3 * block.n_heads * block.d_head:
            raise ValueError(f"packed Q/K/V weight has {packed.shape[-1]} output columns, "
                             f"expected 3 * {block.n_heads * block.d_head}")
        return tuple(packed.split(block.n_heads * block.d_head, dim=-1))
    if block.packing == "per-head":
        rows = tensors[0].reshape(block.n_heads, 3, block.d_head, -1)          # [head, qkv, d_head, d_model]
        return tuple(rows[:, part].reshape(block.n_heads * block.d_head, -1).T for part in range(3))
    return tuple(tensor.T if weight_layout(module) == "linear" else tensor
                 for module, tensor in zip(block.qkv, tensors))


@contextlib.contextmanager
def ablated_head(model, layer: int, head: int):
    """Zero one head's output: its d_head slice of the merged heads entering the output projection,
    which is transformer-lens' `blocks.{layer}.attn.hook_z[:, :, head] = 0` on the HF model."""
    block = attention_blocks(model)[layer]
    if not 0 <= head < block.n_heads:
        raise UserError(f"head {head} does not exist (layer {layer} has {block.n_heads})",
                        f"give a head in 0..{block.n_heads - 1}")
    width = block.d_head

    def zero_head(module, args):
        merged = args[0].clone()
        merged[..., head * width:(head + 1) * width] = 0
        return (merged, *args[1:])

    handle = block.output.register_forward_pre_hook(zero_head)
    try:
        yield model
    finally:
        handle.remove()
