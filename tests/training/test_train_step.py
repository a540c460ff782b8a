"""The training step's shortcuts compute what the obvious step computes."""

import pytest
import torch
import torch.nn.functional as F

from memsink_bench.config import load_config
from memsink_bench.evaluate import collate
from memsink_bench.interventions import NeuronScaler, ProjectionScaler, leading_ones, per_example_scale
from memsink_bench.masks import neuron_mask
from memsink_bench.models import build_model, mlp_shape
from memsink_bench.train import LabelledLoss, make_optimizer

SEQS = [[5, 9, 3, 7, 2, 8], [4, 4, 6], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [11, 3]]


def _model_and_batch():
    config = load_config("ts-repetition", "smoke")
    model = build_model(config.model, 64, 32, seed=0)
    batch = collate(SEQS, [1, 2, 3, 4], [(1, 2)] * len(SEQS), pad_id=0)
    return config, model, batch


def test_loss_at_labelled_positions_equals_the_full_logits_loss_and_gradients():
    _, model, batch = _model_and_batch()
    assert (batch.labels == -100).sum() > 10            # enough padding for the shortcut to matter
    full = F.cross_entropy(model(input_ids=batch.input_ids).logits.flatten(0, 1), batch.labels.flatten())
    full.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    nll, labelled = LabelledLoss(model)(batch.input_ids, batch.labels)
    nll.mean().backward()
    assert torch.equal(labelled, batch.labels != -100)
    assert nll.shape == (sum(len(s) - 1 for s in SEQS),)
    torch.testing.assert_close(nll.mean(), full, rtol=1e-6, atol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-5, atol=1e-7, msg=name)


def test_fused_optimizer_takes_the_same_steps_as_the_default_one():
    # float64, so that rounding cannot hide a difference in the update rule (weight decay,
    # betas, bias correction) behind Adam's sensitivity to tiny gradients
    config, model, batch = _model_and_batch()
    model = model.double()
    reference = build_model(config.model, 64, 32, seed=0).double()
    fused = make_optimizer(model, config)
    assert fused.defaults["fused"]
    assert make_optimizer(model, config, torch.device("mps")).defaults["fused"] is None   # not a fused device
    plain = torch.optim.AdamW(
        [{"params": [p for p in reference.parameters() if p.dim() >= 2], "weight_decay": config.train.weight_decay},
         {"params": [p for p in reference.parameters() if p.dim() < 2], "weight_decay": 0.0}],
        lr=config.train.lr, betas=(config.train.beta1, config.train.beta2))
    start = [p.detach().clone() for p in reference.parameters()]
    for net, optimizer in ((model, fused), (reference, plain)):
        for _ in range(3):
            loss = F.cross_entropy(net(input_ids=batch.input_ids).logits.flatten(0, 1), batch.labels.flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    assert max((q - s).abs().max() for q, s in zip(reference.parameters(), start)) > 1e-3   # it moved
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-10, msg=name)


def _tiny(family):
    import transformers

    if family == "gpt2":
        return build_model(load_config("ts-repetition", "smoke").model, 64, 32, seed=0)
    config = {"llama": transformers.LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                num_attention_heads=2, intermediate_size=80),
              "gpt_neox": transformers.GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=80)}[family]
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_neox"])
@pytest.mark.parametrize("shape", ["per-example", "per-layer"])
def test_projection_scaler_computes_what_the_hook_scaler_computes(family, shape):
    """MemSinks-style masks (shared neurons at 1, sinks 0/1 per example) and a scale whose
    first feature is not 1: same logits and gradients as the hook followed by the projection."""
    model = _tiny(family).double()
    d_mlp = mlp_shape(model)[1]
    batch = collate(SEQS, [1, 2, 3, 4], [(1, 2)] * len(SEQS), pad_id=0)
    if shape == "per-example":
        scale = per_example_scale(neuron_mask(torch.tensor([3, 9, 27, 81]), d_mlp, 0.7, 0.3)).double()
    else:
        scale = torch.rand(2, 1, 1, d_mlp, generator=torch.Generator().manual_seed(1)).double()
    results = []
    for scaler_type in (NeuronScaler, ProjectionScaler):
        model.zero_grad(set_to_none=True)
        scaler = scaler_type(model)
        scaler.scale = scale
        logits = model(input_ids=batch.input_ids).logits
        F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten()).backward()
        scaler.remove()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (hook_logits, hook_grads), (fused_logits, fused_grads) = results
    torch.testing.assert_close(fused_logits, hook_logits, rtol=1e-10, atol=1e-12)
    for name in hook_grads:
        torch.testing.assert_close(fused_grads[name], hook_grads[name], rtol=1e-9, atol=1e-12, msg=name)
    if shape == "per-example":
        assert leading_ones(scale[0]) == round(0.7 * d_mlp)


def test_projection_scaler_refuses_learned_gates():
    scaler = ProjectionScaler(_tiny("gpt2"))
    with pytest.raises(ValueError, match="NeuronScaler"):
        scaler.scale = torch.ones(1, 1, 1, 128, requires_grad=True)
    scaler.remove()


def test_stacked_patches_come_off_cleanly():
    from memsink_bench.interventions import GradientRouter
    from memsink_bench.models import mlp_layout

    model = _tiny("gpt2")
    scaler, router = ProjectionScaler(model), GradientRouter(model)
    router.remove()
    scaler.remove()
    for layer in mlp_layout(model):
        assert "forward" not in vars(layer.down) and "forward" not in vars(layer.up[0])
