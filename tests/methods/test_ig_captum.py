"""Captum's integrator agrees with the `ig` method, and the check can tell a wrong integral apart.

Two comparisons, on a tiny float64 GPT-2 fit for a few Adam steps on its own sequences (so the
IG values are far from the ~1e-7 of random weights), and one on the planted-neuron model:

- equal steps, exact: captum's `method="linspace"` is algebraically `ig`'s rule (see
  `ig_captum.py`), so the two agree to captum's float32 rounding of its riemann alphas and step
  sizes (relative ~6e-8 per weight, ~1e-7 after the float32 output) -> tolerance 1e-6 of the
  largest |IG|. Captum's own `riemann_trapezoid` at the same points is a different rule, and
  is checked to differ by far more.
- converged: captum's Gauss-Legendre rule against `ig` at many steps (see
  `test_converged_rules_agree` for the tolerance).
- whole-layer scaling (captum's default layer-attribution scope, with the same zero baseline)
  is a different integral, and must differ by much more than the tolerance: the comparison
  above is not vacuous.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients as CaptumIntegratedGradients

from memsink_bench.errors import UserError
from memsink_bench.methods.ig import IntegratedGradients, integrated_gradients
from memsink_bench.methods.ig_captum import captum_ig_per_position, captum_integrated_gradients
from memsink_bench.models import mlp_layout

from tests.helpers.planted import one_batch, planted_model
from tests.helpers.tiny_ig_model import fitted_tiny_model



@pytest.fixture(scope="module")
def setup(one_thread):
    """(model, batch): 2 layers, d_model 32, d_mlp 64, float64, frozen, 4 sequences, 24 targets."""
    model, batch, _ = fitted_tiny_model()
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)      # as the harness hands models to localizers
    return model, batch


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def whole_layer_ig(model, batch, steps: int) -> torch.Tensor:
    """The wrong integral, [layers, d_mlp]: captum IG over a sequence's whole hidden activation
    [pos, d_mlp] at layer l (every position scaled by the same alpha, zero baseline), read at
    position i for p(label_i) -- what layer attribution does by default."""
    rows, cols = torch.nonzero(batch.target_mask, as_tuple=True)
    target = torch.arange(len(rows))
    scores = []
    for mlp in mlp_layout(model):
        acts = []
        handle = mlp.down.register_forward_pre_hook(lambda _m, args: acts.append(args[0]))
        with torch.no_grad():
            model(input_ids=batch.input_ids, attention_mask=torch.ones_like(batch.input_ids))
        handle.remove()

        def forward(hidden, index, down=mlp.down):
            handle = down.register_forward_pre_hook(lambda _m, args: (hidden,))
            try:
                input_ids = batch.input_ids[rows[index]]
                logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
            finally:
                handle.remove()
            probs = torch.softmax(logits[torch.arange(len(index)), cols[index]], -1)
            return probs.gather(-1, batch.labels[rows[index], cols[index]][:, None])[:, 0]

        inputs = acts[0][rows]                                    # [n_targets, pos, d_mlp]
        attributions = CaptumIntegratedGradients(forward).attribute(
            inputs, baselines=torch.zeros_like(inputs), additional_forward_args=(target,), n_steps=steps)
        scores.append(attributions[target, cols].mean(0))
    return torch.stack(scores).float()


@pytest.mark.parametrize("steps", [4, 16])
def test_linspace_rule_equals_ig_at_equal_steps(setup, steps):
    model, batch = setup
    ours = integrated_gradients(model, batch, steps)
    exact = captum_integrated_gradients(model, batch, steps, method="linspace")
    trapezoid = captum_integrated_gradients(model, batch, steps, method="riemann_trapezoid")
    scale = ours.abs().max().item()
    assert ours.shape == exact.shape == (2, 64) and scale > 1e-3
    assert _max_diff(exact, ours) < 1e-6 * scale
    # same points, weights 1/steps with halved ends: off by (g(0) + g(1)) a / (2 steps)
    assert _max_diff(trapezoid, ours) > 1e-3 * scale


def test_converged_rules_agree(setup):
    """Captum Gauss-Legendre (64 points) vs `ig` at 512 steps.

    Tolerance: `ig`'s rule is first order, error c/n + O(1/n^2), so its error at 2n is about
    |ig(n) - ig(2n)| (measured here: 2.24e-5 at 512 steps, the distance to captum 2.24e-5);
    Gauss-Legendre on this smooth integrand converges far faster, and its error at 2m is below
    |GL(m) - GL(2m)| (~1e-9). Twice their sum covers the O(1/n^2) remainder, plus 1e-7 of the
    scale for float32 outputs.
    """
    model, batch = setup
    ours = {n: integrated_gradients(model, batch, n) for n in (256, 512)}
    gauss = {m: captum_integrated_gradients(model, batch, m) for m in (32, 64)}
    scale = gauss[64].abs().max().item()
    tolerance = 2 * (_max_diff(ours[256], ours[512]) + _max_diff(gauss[32], gauss[64])) + 1e-7 * scale
    assert tolerance < 1e-2 * scale, "the rules have not converged enough for the comparison"
    assert _max_diff(ours[512], gauss[64]) < tolerance
    # the wrong integral (whole layer scaled) is told apart by a wide margin
    assert _max_diff(whole_layer_ig(model, batch, 64), gauss[64]) > 10 * tolerance


def test_per_position_rows_and_internal_batching(setup):
    """Per-position rows (the un-averaged [n_targets, d_mlp]) do not depend on how captum splits
    the steps into forwards; their mean is the layer's score."""
    model, batch = setup
    whole = captum_ig_per_position(model, batch, 1, 8)
    split = captum_ig_per_position(model, batch, 1, 8, internal_batch_size=int(batch.target_mask.sum()) * 3)
    assert whole.shape == (int(batch.target_mask.sum()), 64)
    assert _max_diff(whole, split) < 1e-12
    assert _max_diff(whole.mean(0).float(), captum_integrated_gradients(model, batch, 8)[1]) < 1e-9


def test_planted_neuron_and_method_score():
    """On the planted model captum gives the `ig` method's own score (one target batch) and ranks
    the planted neuron first in its layer."""
    model, context, (layer, neuron) = planted_model()
    model.double()
    ours = IntegratedGradients(steps=16).score(model, context)
    captum = captum_integrated_gradients(model, one_batch(context.targets), 16, method="linspace")
    assert _max_diff(captum, ours) < 1e-6 * ours.abs().max().item()
    assert int(captum[layer].argmax()) == neuron
    assert captum[layer, neuron] > 0.5       # p(MEMORIZED) rises ~0.003 -> ~0.995 through it


def test_bad_method(setup):
    model, batch = setup
    with pytest.raises(UserError, match="unknown integration method"):
        captum_ig_per_position(model, batch, 0, 8, method="simpson")
    with pytest.raises(UserError, match="steps >= 3"):
        captum_ig_per_position(model, batch, 0, 2, method="linspace")
