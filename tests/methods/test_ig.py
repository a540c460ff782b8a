"""Integrated gradients: the batched version equals the literal reference loop; completeness.

The tiny GPT-2 is fit for a few Adam steps on its own sequences (float64) so the true-token
probabilities, and so the IG values, are far from the uniform 1/vocab of random weights; that
keeps the 1e-5 comparison meaningful.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from memsink_bench.errors import UserError
from memsink_bench.methods import ig as ig_module
from memsink_bench.methods.base import MethodContext
from memsink_bench.methods.ig import IntegratedGradients, ig_per_position, integrated_gradients
from memsink_bench.models import mlp_layout
from memsink_bench.setting import SequenceSet

from tests.helpers.reference_ig import integrated_gradients_reference
from tests.helpers.tiny_ig_model import SPANS, fitted_tiny_model



@pytest.fixture(scope="module")
def setup(one_thread):
    model, batch, tokens = fitted_tiny_model()
    targets = SequenceSet(tokens, [1, 2, 3, 4], SPANS)
    return model, batch, targets


@pytest.fixture(scope="module")
def reference(setup):
    model, batch, _ = setup
    return integrated_gradients_reference(model, batch, steps=4)


def _context(targets, batch_size):
    return MethodContext(targets=targets, retain=SequenceSet([], [], []), pad_id=0,
                         device=torch.device("cpu"), batch_size=batch_size)


def _assert_close(actual, expected):
    scale = expected.abs().max().item()
    assert scale > 1e-3, "IG values too small for a meaningful comparison"
    diff = (actual - expected).abs().max().item()
    assert diff < 1e-5
    assert diff < 1e-5 * scale


def test_score_matches_reference(setup, reference):
    model, _, targets = setup
    model.train()
    # batches of 2 sequences (two padding widths), 5 positions per forward (chunks straddle sequences);
    # the fast KV-cached path must be taken (no fallback warning)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        score = IntegratedGradients(steps=4, positions_per_batch=5).score(model, _context(targets, 2))
    assert score.shape == (2, 64) and score.dtype == torch.float32 and score.device.type == "cpu"
    _assert_close(score, reference)
    assert model.training, "score must restore the model's train/eval mode"
    assert all(p.grad is None for p in model.parameters()), "no gradients left on parameters"


def test_split_rows_match_reference(setup, reference, monkeypatch):
    """A sequence's copies spread over several batch rows, even splitting one position's alphas."""
    model, batch, _ = setup
    monkeypatch.setattr(ig_module, "_ROW_COPIES", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _assert_close(integrated_gradients(model, batch, steps=4, positions_per_batch=32), reference)


def test_uncached_path_matches_reference(setup, reference):
    model, batch, _ = setup
    uncached = integrated_gradients(model, batch, steps=4, positions_per_batch=7, use_cache=False)
    _assert_close(uncached, reference)


def test_cache_mismatch_falls_back(setup, reference, monkeypatch):
    model, batch, _ = setup
    monkeypatch.setattr(ig_module, "_mismatch_tolerance", lambda dtype: -1.0)  # every check fails
    with pytest.warns(RuntimeWarning, match="uncached"):
        result = integrated_gradients(model, batch, steps=4, positions_per_batch=32)
    _assert_close(result, reference)


def _probability_gap(model, batch, layer):
    """[n_targets] p(label | clean) - p(label | activation zeroed at that layer and position)."""
    rows, cols = torch.nonzero(batch.target_mask, as_tuple=True)
    gaps = []
    for row, col in zip(rows.tolist(), cols.tolist()):
        ids = batch.input_ids[row:row + 1]
        label = int(batch.labels[row, col])
        probs = []
        for zero in (False, True):
            def put(_module, args):
                hidden = args[0].clone()
                hidden[0, col] = 0
                return (hidden,)

            handle = mlp_layout(model)[layer].down.register_forward_pre_hook(put) if zero else None
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
            if handle is not None:
                handle.remove()
            probs.append(torch.softmax(logits[0, col], -1)[label])
        gaps.append(probs[0] - probs[1])
    return torch.stack(gaps)


@pytest.mark.parametrize("layer", [0, 1])
def test_completeness(setup, layer):
    model, batch, _ = setup
    model.eval()
    gap = _probability_gap(model, batch, layer)
    assert gap.abs().max() > 1e-2, "the ablation must matter for the test to mean anything"
    errors = {}
    for steps in (16, 512):
        ig = ig_per_position(model, batch, layer, steps, positions_per_batch=32)
        assert ig.shape == (int(batch.target_mask.sum()), 64)
        errors[steps] = (ig.sum(-1) - gap).abs()
    fine, coarse = errors[512], errors[16]
    assert torch.all((fine < 0.01 * gap.abs()) | (fine < 1e-4)), (fine, gap)
    assert fine.sum() < coarse.sum()
    assert fine.max() < coarse.max()


def test_steps_validation():
    for bad in (1, 0, -3, 2.5, True):
        with pytest.raises(UserError, match="steps must be an integer >= 2"):
            IntegratedGradients(steps=bad)
    with pytest.raises(UserError, match="positions_per_batch"):
        IntegratedGradients(positions_per_batch=0)
    method = IntegratedGradients()
    assert method.name == "ig"
    assert method.hyperparameters() == {"steps": 16}            # what defines the run (its identity)
    assert method.resources() == {"positions_per_batch": 32}    # memory only: recorded, never identity
