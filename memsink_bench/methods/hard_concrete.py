"""Hard-concrete pruning over MLP neurons (Chang et al. 2024, after Louizos et al. 2018).

One stochastic gate per MLP hidden neuron of every layer multiplies the activation after the
nonlinearity. The gates' log_alpha ([layers, d_mlp]) are trained with Adam, model weights
frozen, to minimise the LM loss of the memorized target spans plus an L0 penalty on the expected
number of open gates, so they learn the sparsest set of neurons to KEEP that still reproduces
the targets. Those kept neurons are what the sequences need: score = sigmoid(log_alpha), and
the harness drops the highest scores.

The penalty is lambda * (expected open gates) / `penalty_reference_gates`. With the default
98,304 = 24 x 4096, the MLP neurons of the GPT-2-medium-sized models the papers tuned lambda on
(100, 500, 1000), each gate feels the pull lambda / 98,304 on any model size: the papers' lambda
means on a 1,024-neuron model what it meant on theirs. The mean over this model's own gates
(`penalty_reference_gates=0`, how records made before this option were computed) instead pulls
each gate of a 1,024-neuron model 96 times harder, so every gate closed within ~615 steps at
lambda 500 whatever the LM loss said.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from numbers import Integral, Real

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..evaluate import Batch
from ..interventions import NeuronScaler, per_layer_scale
from ..models import mlp_shape
from ..progress import progress as progress_bar
from .base import MethodContext, NeuronLocalizer, target_nll

STRETCH_LOW, STRETCH_HIGH = -0.1, 1.1   # l, r: the concrete sample is stretched to (l, r)
PAPER_GATES = 24 * 4096                  # MLP neurons of a GPT-2-medium-sized model (the papers' lambda)
NOISE_SALT = 2024                        # context.generator salt of the gate noise u


class HardConcretePruning(NeuronLocalizer):
    name = "hard-concrete"
    summary = "hard-concrete pruning gates over MLP neurons (Chang et al. 2024)"

    # a hyperparameter added after records existed: at this value it reproduces the old behaviour
    # and is left out of the identity (records made before it keep theirs)
    legacy_values = {"penalty_reference_gates": 0}

    def __init__(self, lambda_l0: float = 1000.0, steps: int = 1000, lr: float = 1e-2,
                 beta: float = 2 / 3, init_keep: float = 0.9, stop_keep_fraction: float = 0.05,
                 penalty_reference_gates: int = PAPER_GATES):
        _require(_is_real(lambda_l0) and 0 <= lambda_l0 < math.inf, "lambda_l0", lambda_l0,
                 "a finite number >= 0")
        _require(isinstance(steps, Integral) and not isinstance(steps, bool) and steps >= 1,
                 "steps", steps, "an integer >= 1")
        _require(_is_real(lr) and 0 < lr < math.inf, "lr", lr, "a finite number > 0")
        _require(_is_real(beta) and 0 < beta < math.inf, "beta", beta,
                 "a finite temperature > 0 (the paper uses 2/3 or 1/3)")
        _require(_is_real(init_keep) and 0 < init_keep <= 1, "init_keep", init_keep,
                 "a keep probability in (0, 1]")
        _require(_is_real(stop_keep_fraction) and 0 <= stop_keep_fraction < 1,
                 "stop_keep_fraction", stop_keep_fraction, "a fraction in [0, 1) (0 never stops early)")
        _require(isinstance(penalty_reference_gates, Integral) and not isinstance(penalty_reference_gates, bool)
                 and penalty_reference_gates >= 0, "penalty_reference_gates", penalty_reference_gates,
                 f"an integer >= 0 (default {PAPER_GATES}; 0: the mean over this model's gates)")
        self.lambda_l0 = lambda_l0
        self.steps = steps
        self.lr = lr
        self.beta = beta
        self.init_keep = init_keep
        self.stop_keep_fraction = stop_keep_fraction
        self.penalty_reference_gates = penalty_reference_gates
        self.steps_taken = 0    # Adam steps of the last score() (fewer than `steps` if stopped early)

    def score(self, model: nn.Module, context: MethodContext) -> torch.Tensor:
        """[layers, d_mlp] float32 on CPU: sigmoid(log_alpha) of the trained gates."""
        batches = [_through_last_target(batch) for batch in context.target_batches()]
        if not batches:
            raise UserError("hard-concrete needs at least one target sequence",
                            "give the method a setting with memorized (target) sequences")
        device = next(model.parameters()).device
        log_alpha = self._initial_log_alpha(mlp_shape(model), device)
        with _frozen(model):
            self.steps_taken = self._train(model, log_alpha, batches, context.generator(NOISE_SALT))
        return torch.sigmoid(log_alpha.detach()).float().cpu()

    def record_extras(self, model, context):
        return {**super().record_extras(model, context), "steps_taken": self.steps_taken}

    def _initial_log_alpha(self, shape: tuple[int, int], device) -> torch.Tensor:
        """logit((m - l) / (r - l)): a gate that is open with probability ~m at the start."""
        keep = (self.init_keep - STRETCH_LOW) / (STRETCH_HIGH - STRETCH_LOW)
        return torch.full(shape, math.log(keep / (1 - keep)), device=device, requires_grad=True)

    def _train(self, model: nn.Module, log_alpha: torch.Tensor, batches: list[Batch],
               generator: torch.Generator) -> int:
        """Adam on log_alpha, one target batch per step, cycling; returns the steps taken."""
        optimizer = torch.optim.Adam([log_alpha], lr=self.lr)
        loss_of = _target_loss_fn(model)
        scaler = NeuronScaler(model)
        progress = progress_bar(self.steps, "hard-concrete", "step", leave=False)
        try:
            for step in range(self.steps):
                progress.update(1)
                scaler.scale = per_layer_scale(self.sample_gates(log_alpha, generator))
                loss = loss_of(model, batches[step % len(batches)])
                penalty = self.penalty(log_alpha)
                optimizer.zero_grad(set_to_none=True)
                (loss + penalty).backward()
                optimizer.step()
                kept = self.keep_probability(log_alpha.detach()).mean().item()
                progress.set_postfix(loss=f"{loss.item():.3f}", kept=f"{kept:.3f}")
                if kept < self.stop_keep_fraction:
                    return step + 1
            return self.steps
        finally:
            scaler.remove()
            progress.close()

    def sample_gates(self, log_alpha: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One hard-concrete sample per gate, [layers, d_mlp] in [0, 1] (exact 0 and 1 occur).

        u is drawn on CPU from the seeded generator so runs are identical on every device.
        """
        u = torch.rand(log_alpha.shape, generator=generator, dtype=torch.float32)
        u = u.clamp(1e-6, 1 - 1e-6).to(log_alpha.device)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / self.beta)
        return (s * (STRETCH_HIGH - STRETCH_LOW) + STRETCH_LOW).clamp(0.0, 1.0)

    def penalty(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """lambda * expected open gates / penalty_reference_gates (0: / this model's gate count)."""
        keep = self.keep_probability(log_alpha)
        scale = self.penalty_reference_gates or keep.numel()
        return self.lambda_l0 * keep.sum() / scale

    def keep_probability(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """P(gate != 0) per gate, [layers, d_mlp]: the differentiable L0 norm term."""
        return torch.sigmoid(log_alpha - self.beta * math.log(-STRETCH_LOW / STRETCH_HIGH))


def _through_last_target(batch: Batch) -> Batch:
    """The batch cut after its last target-span label column: in a causal LM later tokens
    cannot change the target loss, so they are only cost (e.g. 4x on 256-token stories whose
    target span ends at token 64)."""
    columns = batch.target_mask.any(dim=0).nonzero()
    if len(columns) == 0:
        return batch
    width = int(columns.max()) + 1
    return Batch(batch.input_ids[:, :width], batch.labels[:, :width],
                 batch.target_mask[:, :width], batch.ids)


def _target_loss_fn(model: nn.Module):
    """`target_nll`, or the same value with the unembedding and softmax run only at the
    target-label columns when the model's forward takes `logits_to_keep` (transformers >= 4.50
    causal LMs); on the 2-layer d128 benchmark model with vocab 2048 that is ~1.5x the steps/s."""
    if "logits_to_keep" not in inspect.signature(model.forward).parameters:
        return target_nll
    return _target_nll_kept_columns


def _target_nll_kept_columns(model: nn.Module, batch: Batch) -> torch.Tensor:
    columns = batch.target_mask.any(dim=0).nonzero().flatten()                  # [kept]
    logits = model(input_ids=batch.input_ids, logits_to_keep=columns).logits    # [batch, kept, vocab]
    labels, mask = batch.labels[:, columns], batch.target_mask[:, columns]
    nll = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten().clamp_min(0),
                          reduction="none").view_as(labels)
    return (nll * mask).sum() / mask.sum().clamp_min(1)


@contextlib.contextmanager
def _frozen(model: nn.Module):
    """No model parameter requires grad inside (only log_alpha trains) and the model is in eval
    mode; both are restored on exit, so the model leaves exactly as it came."""
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    was_training = model.training
    try:
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield model.eval()
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        model.train(was_training)


def _is_real(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and not math.isnan(value)


def _require(ok: bool, name: str, value, expected: str) -> None:
    if not ok:
        raise UserError(f"hard-concrete {name}={value!r} is invalid",
                        f"set {name} to {expected}")
