"""Golden tests of the mechanistic analyses on tiny hand-built GPT-2s with known answers:
a head whose attention is set to follow rarity must come out as the rare-token head, a
component cut off from the output must get zero gradient, and in a model whose next token
depends only on the current token only the last prefix token's perturbation may change the
continuation."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from memsink_bench.analyses import gradient_signature, load_analysis, prefix_perturbation, rare_tokens
from memsink_bench.analyses.common import as_hooked
from memsink_bench.config import ModelConfig
from memsink_bench.errors import UserError
from memsink_bench.models import build_model
from memsink_bench.setting import SequenceSet

VOCAB, SEQ_LEN, BOS = 48, 40, 0


def fake_setting(repeated: SequenceSet, control: SequenceSet, single: SequenceSet | None = None,
                 repetitions: int = 4):
    """The parts of a Setting the analyses read."""
    return SimpleNamespace(repeated=repeated, control=control, single=single or control,
                           data=SimpleNamespace(repetitions=repetitions),
                           tokenizer=SimpleNamespace(pad_token_id=BOS, bos_token_id=BOS))


def tiny_model(seed: int = 0, n_head: int = 4):
    return build_model(ModelConfig(n_layer=2, n_embd=32, n_head=n_head, d_mlp=64), VOCAB, SEQ_LEN, seed).eval()


def zipf_sequences(count: int, length: int, start: int, seed: int, first_id: int = 1) -> SequenceSet:
    """Random tokens with a Zipf-like unigram distribution (so frequencies differ widely)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, VOCAB)
    tokens = [[BOS] + (1 + rng.choice(VOCAB - 1, size=length - 1, p=weights / weights.sum())).tolist()
              for _ in range(count)]
    return SequenceSet(tokens, list(range(first_id, first_id + count)), [(start, length)] * count)


# --- rare-token heads ------------------------------------------------------------------------

def test_dense_frequency_ranks_on_a_hand_made_sequence():
    frequencies = np.zeros(10, dtype=np.int64)
    frequencies[[2, 3, 5, 7]] = [4, 1, 10, 10]
    ranks = rare_tokens.dense_frequency_ranks([5, 3, 5, 7, 2], frequencies)
    assert ranks.tolist() == [2, 0, 2, 2, 1]       # 3 rarest; 5 and 7 tie; ranks are dense


def test_unigram_frequencies_count_each_repetition():
    setting = fake_setting(repeated=SequenceSet([[0, 2, 2]], [1], [(1, 3)]), control=SequenceSet([], [], []),
                           single=SequenceSet([[0, 1, 2]], [2], [(1, 3)]), repetitions=3)
    assert rare_tokens.unigram_frequencies(setting, 4).tolist() == [1 + 3, 1, 1 + 2 * 3, 0]


def rarity_following(hooked, frequencies: np.ndarray, layer: int, head: int) -> None:
    """Make one head attend from every query to earlier non-BOS tokens in proportion to
    1 / corpus frequency (a permanent hook; the forward pass records its input tokens for it)."""
    seen, forward = {}, hooked.forward

    def recording_forward(tokens, *args, **kwargs):
        seen["tokens"] = tokens
        return forward(tokens, *args, **kwargs)

    hooked.forward = recording_forward
    inverse = 1.0 / torch.tensor(frequencies, dtype=torch.float32).clamp_min(1)

    def overwrite(pattern, hook):
        weights = inverse[seen["tokens"]]                                   # [batch, pos]
        weights[:, 0] = 0.0
        grid = torch.tril(torch.ones(pattern.shape[-2:])) * weights[:, None, :]   # [batch, q, k]
        grid[:, 0, 0] = 1.0
        pattern = pattern.clone()
        pattern[:, head] = grid / grid.sum(-1, keepdim=True)
        return pattern

    hooked.add_hook(f"blocks.{layer}.attn.hook_pattern", overwrite)


def test_rarity_following_head_is_found_first_with_tau_near_minus_one():
    model = tiny_model()
    single = zipf_sequences(200, 24, 12, seed=1, first_id=20)
    setting = fake_setting(zipf_sequences(6, 24, 16, seed=2), single.subset(range(8)), single)
    hooked = as_hooked(model)
    rarity_following(hooked, rare_tokens.unigram_frequencies(setting, VOCAB), layer=1, head=2)
    frame, summary = rare_tokens.run(model, setting, hooked=hooked, ablate=False)
    for group in ("memorized", "non-memorized"):
        top = summary["groups"][group]["top_head"]
        assert (top["layer"], top["head"]) == (1, 2)
        assert top["tau"] == pytest.approx(-1.0, abs=1e-6)
        others = frame[(frame["group"] == group) & ~((frame["layer"] == 1) & (frame["head"] == 2))]
        assert others["tau"].min() > -0.6            # untouched random heads are not rarity-driven
    assert len(frame) == 2 * 2 * 4 and list(frame.columns[:3]) == ["group", "layer", "head"]
    assert len(summary["groups"]["memorized"]["attention_by_rank"]) == 2 * 4


def test_as_hooked_keeps_the_logits():
    model = tiny_model()
    tokens = torch.randint(1, VOCAB, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(as_hooked(model)(tokens), model(input_ids=tokens).logits, atol=1e-5)


def test_head_ablation_on_hf_equals_zeroing_hook_z_in_transformer_lens():
    model = tiny_model()
    hooked = as_hooked(model)
    tokens = torch.randint(1, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))

    def zero_z(z, hook):
        z = z.clone()
        z[:, :, 2] = 0.0
        return z

    with torch.no_grad():
        reference = hooked.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", zero_z)])
        with rare_tokens.ablated_head(model, layer=1, head=2):
            ablated = model(input_ids=tokens).logits
        intact = model(input_ids=tokens).logits
    assert torch.allclose(ablated, reference, atol=1e-5)
    assert not torch.allclose(intact, reference, atol=1e-3)


# --- gradient signature ----------------------------------------------------------------------

def test_split_qkv_matches_transformer_lens_per_head_weights():
    model = tiny_model()
    hooked = as_hooked(model)
    d_model, heads = 32, 4
    q, k, v = gradient_signature.split_qkv(model.transformer.h[1].attn.c_attn.weight.detach(), d_model)
    assert q.shape == k.shape == v.shape == (d_model, d_model)
    width = d_model // heads
    for ours, theirs in ((q, hooked.W_Q), (k, hooked.W_K), (v, hooked.W_V)):
        for head in range(heads):                                   # TL: [layer, head, d_model, d_head]
            assert torch.allclose(ours[:, head * width:(head + 1) * width], theirs[1, head], atol=1e-6)
    with pytest.raises(ValueError):
        gradient_signature.split_qkv(torch.zeros(d_model, 2 * d_model), d_model)


def test_components_cut_off_from_the_output_get_zero_gradient():
    model = tiny_model()
    with torch.no_grad():
        block0, block1 = model.transformer.h
        block0.attn.c_proj.weight.zero_()          # layer 0 attention writes nothing: Q, K, V get no gradient
        block1.mlp.c_proj.weight.zero_()           # layer 1 MLP writes nothing: its input weights get none
    setting = fake_setting(zipf_sequences(3, 16, 8, seed=3), zipf_sequences(4, 16, 8, seed=4, first_id=10))
    frame, summary = gradient_signature.run(model, setting)
    assert len(frame) == 2 * 2 * 6 and set(frame["n_sequences"]) == {3, 4}
    value = frame.set_index(["group", "layer", "component"])["mean_max_abs_grad"]
    for group in ("memorized", "non-memorized"):
        for layer, component in ((0, "attn Q"), (0, "attn K"), (0, "attn V"), (1, "MLP in")):
            assert value[(group, layer, component)] == 0.0
        for layer, component in ((0, "attn O"), (1, "MLP out"), (1, "attn Q"), (0, "MLP in")):
            assert value[(group, layer, component)] > 0.0
    assert list(frame["component"][:6]) == list(gradient_signature.COMPONENTS)
    assert len(summary["memorized_over_non_memorized_by_layer"]) == 2


# --- prefix perturbation ---------------------------------------------------------------------

def successor_model(seed: int = 0):
    """A GPT-2 whose next token is the current token's successor (1 -> 2 -> ... -> 47 -> 1),
    whatever came before: attention and MLP outputs and position embeddings are zeroed, so
    the final residual is the token embedding, and the unembedding row of s is the normalized
    embedding of s's predecessor."""
    model = build_model(ModelConfig(n_layer=2, n_embd=64, n_head=4, d_mlp=64), VOCAB, SEQ_LEN, seed).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.transformer.wpe.weight.zero_()
        for block in model.transformer.h:
            for projection in (block.attn.c_proj, block.mlp.c_proj):
                projection.weight.zero_()
                projection.bias.zero_()
        embedding = torch.randn(VOCAB, 64, generator=generator)
        model.transformer.wte.weight.copy_(embedding)
        normed = F.layer_norm(embedding, (64,))
        unembedding = torch.zeros(VOCAB, 64)
        for token in range(1, VOCAB):
            unembedding[token % (VOCAB - 1) + 1] = normed[token]
    model.lm_head.weight = torch.nn.Parameter(unembedding)
    model.config.tie_word_embeddings = False
    return model


def successor_sequences(count: int, prefix: int, target: int, seed: int) -> SequenceSet:
    """Random prefix, then the successor chain of its last token as the target span."""
    rng = random.Random(seed)
    tokens = []
    for _ in range(count):
        sequence = [BOS] + [rng.randrange(1, VOCAB) for _ in range(prefix)]
        for _ in range(target):
            sequence.append(sequence[-1] % (VOCAB - 1) + 1)
        tokens.append(sequence)
    return SequenceSet(tokens, list(range(1, count + 1)), [(1 + prefix, 1 + prefix + target)] * count)


def test_only_the_last_prefix_token_matters_when_the_model_reads_only_the_current_token():
    model, target = successor_model(), 6
    setting = fake_setting(successor_sequences(3, 10, target, seed=0), successor_sequences(2, 10, target, seed=1))
    frame, summary = prefix_perturbation.run(model, setting, seed=0)
    assert len(frame) == 5 * 10 and set(frame["position"]) == set(range(1, 11))
    assert (frame["em_before"] == target).all()                   # the model reproduces every target
    last, earlier = frame[frame["distance"] == 1], frame[frame["distance"] > 1]
    assert (last["em_drop"] == target).all() and (last["own_drop"] == target).all()
    assert (earlier["em_drop"] == 0).all() and (earlier["own_drop"] == 0).all()
    for group, count in (("memorized", 3), ("non-memorized", 2)):
        assert summary["groups"][group]["worst_distance"] == 1
        assert summary["groups"][group]["mean_em_drop"] == pytest.approx(target / 10)
        assert summary["groups"][group]["n_sequences"] == count


def test_perturbed_copies_change_exactly_one_token_reproducibly():
    tokens = [BOS, 5, 6, 7, 8, 9, 10]

    def copies(seed):
        return prefix_perturbation.perturbed_copies(tokens, 5, VOCAB, random.Random(seed), {BOS})

    first = copies(3)
    assert first == copies(3) and first[0] == tokens and len(first) == 5
    for position, copy in enumerate(first[1:], start=1):
        changed = [i for i, (a, b) in enumerate(zip(copy, tokens)) if a != b]
        assert changed == [position] and copy[position] != BOS


def test_a_head_that_writes_nothing_has_no_exact_match_effect():
    model, target = successor_model(), 5
    sequences = successor_sequences(3, 8, target, seed=2)
    effect = rare_tokens.ablation_effect(model, sequences, layer=0, head=1)
    assert effect == {"em_before": target, "em_after": target, "em_drop": 0}


def test_unknown_analysis_and_non_gpt2_models_are_user_errors():
    with pytest.raises(UserError, match="did you mean"):
        load_analysis("rare-token")
    with pytest.raises(UserError, match="GPT-2"):
        gradient_signature.run(SimpleNamespace(config=SimpleNamespace(model_type="llama")), None)
