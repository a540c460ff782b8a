"""The contrastive objective and sparse weight updates shared by the unlearning editors.

Contrastive objective (Stoehr et al. Eq. 3, after Maini et al. 2023):
    CO = -nll_weight * NLL(memorized target tokens) + D_KL((x_NM; theta), (x_NM; theta_0))
on retain sequences (non-memorized training text, disjoint from the control set that scores the
edit). Minimising it pushes the memorized continuation away while the KL term anchors the model's
next-token distributions on non-memorized text to the original model's. The paper's KL has the
current model first, KL(current || original) (`kl="current||original"`, the default);
`kl="original||current"` is the other direction. The editing objective (Eq. 4) replaces
-NLL(memorized) by +NLL(perturbed continuation), see `co_edit.py`.

Trainable parameters: Stoehr et al. disable gradients on embed, pos_embed, unembed and every
bias in TransformerLens, whose layer norms are folded into the next weights; on an unfolded HF
model the equivalent is the attention and MLP weight matrices (`editable_matrices`,
`parameters="matrices"`). `parameters="all"` trains every parameter.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluate import Batch
from .base import MethodContext, target_nll


KL_DIRECTIONS = ("current||original", "original||current")
PARAMETER_SETS = ("matrices", "all")


def retain_kl(model: nn.Module, original: nn.Module, batch: Batch, kl: str = KL_DIRECTIONS[0]) -> torch.Tensor:
    """Mean over valid positions of the KL divergence between the next-token distributions of the
    current and the original model: KL(current || original) (the paper's) or KL(original || current)."""
    with torch.no_grad():
        reference = F.log_softmax(original(input_ids=batch.input_ids).logits.float(), dim=-1)
    current = F.log_softmax(model(input_ids=batch.input_ids).logits.float(), dim=-1)
    if kl == "current||original":
        divergence = (current.exp() * (current - reference)).sum(-1)
    else:
        divergence = (reference.exp() * (reference - current)).sum(-1)
    valid = batch.labels != -100
    return (divergence * valid).sum() / valid.sum().clamp_min(1)


def contrastive_objective(model, original, target: Batch, retain: Batch, nll_weight: float,
                          kl: str = KL_DIRECTIONS[0]) -> torch.Tensor:
    """Eq. 3 with nll_weight > 0 (push the targets away); a negative weight pulls them in (Eq. 4)."""
    return -nll_weight * target_nll(model, target) + retain_kl(model, original, retain, kl)


def editable_matrices(model: nn.Module) -> dict[str, nn.Parameter]:
    """Attention and MLP weight matrices of every block: not embeddings, unembedding, biases or norms."""
    embeddings = {id(model.get_input_embeddings().weight)}
    if model.get_output_embeddings() is not None:
        embeddings.add(id(model.get_output_embeddings().weight))
    found = {}
    for name, parameter in model.named_parameters():
        if parameter.dim() == 2 and id(parameter) not in embeddings and "wpe" not in name \
                and "embed" not in name and (".h." in name or "layers." in name):
            found[name] = parameter
    return found


def top_fraction_masks(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Boolean masks of the top `fraction` entries by score over all tensors together."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = max(1, int(round(fraction * flat.numel())))
    threshold_index = torch.topk(flat, k).indices
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[threshold_index] = True
    masks, start = {}, 0
    for name, score in scores.items():
        masks[name] = chosen[start:start + score.numel()].view_as(score)
        start += score.numel()
    return masks


def contrastive_gradient_magnitudes(model, context: MethodContext, nll_weight: float,
                                    kl: str = KL_DIRECTIONS[0]) -> dict[str, torch.Tensor]:
    """|grad| of the contrastive objective at the unedited model, per editable matrix.

    At the unedited model the KL term has zero gradient, so this is the memorized-NLL gradient,
    accumulated over every target batch.
    """
    original = copy.deepcopy(model).eval()
    matrices = editable_matrices(model)
    totals = {name: torch.zeros_like(p) for name, p in matrices.items()}
    model.eval()
    for target, retain in zip(context.target_batches(), itertools.cycle(context.retain_batches())):
        loss = contrastive_objective(model, original, target, retain, nll_weight, kl)
        grads = torch.autograd.grad(loss, list(matrices.values()))
        for name, grad in zip(matrices, grads):
            totals[name] += grad
    return {name: total.abs() for name, total in totals.items()}


def unlearning_steps(model, original, context: MethodContext, steps: int, lr: float, nll_weight: float,
                     masks: dict[str, torch.Tensor] | None, optimizer=None, *, kl: str = KL_DIRECTIONS[0],
                     parameters: str = "matrices", targets=None):
    """Take `steps` Adam steps on the contrastive objective. `parameters="matrices"` moves only the
    attention and MLP weight matrices (every other parameter frozen); with `masks`, only their
    masked entries (gradients are masked and Adam has no weight decay, so unmasked weights stay
    bit-identical); `parameters="all"` (no masks) moves every parameter. `targets`: the target
    batches (default: the context's). Returns the optimizer to continue a sweep."""
    if masks is None and parameters == "all":
        trainable = [p for p in model.parameters()]
    else:
        matrices = editable_matrices(model)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        trainable = []
        for name, parameter in matrices.items():
            parameter.requires_grad_(True)
            if masks is not None:
                parameter.register_hook(lambda grad, mask=masks[name]: grad * mask.to(grad.dtype))
            trainable.append(parameter)
    if optimizer is None:
        optimizer = torch.optim.Adam(trainable, lr=lr, weight_decay=0.0)
    targets = itertools.cycle(list(targets if targets is not None else context.target_batches()))
    retains = itertools.cycle(list(context.retain_batches()))
    model.train()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        contrastive_objective(model, original, next(targets), next(retains), nll_weight, kl).backward()
        optimizer.step()
    model.eval()
    return optimizer
