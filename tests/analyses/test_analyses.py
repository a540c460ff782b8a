"""Golden tests of the mechanistic analyses on tiny hand-built GPT-2s with known answers:
a head whose attention is set to follow rarity must come out as the rare-token head, a
component cut off from the output must get zero gradient, and in a model whose next token
depends only on the current token only the last prefix token's perturbation may change the
continuation. The same analyses on tiny random GPT-Neo, GPT-NeoX and Llama models: the
architecture-neutral attention layout must agree with transformer-lens' own conversion (head
ablation = zeroing `hook_z`, unpacked Q/K/V weights and gradients = its per-head W_Q/W_K/W_V),
and each analysis must give its known answer on each architecture."""

from __future__ import annotations

import copy
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from memsink_bench.analyses import gradient_signature, load_analysis, prefix_perturbation, rare_tokens
from memsink_bench.analyses.attention import attention_blocks, unpack_qkv
from memsink_bench.analyses.common import as_hooked
from memsink_bench.config import ModelConfig
from memsink_bench.errors import UserError
from memsink_bench.evaluate import sequence_losses
from memsink_bench.models import build_model, mlp_layout
from memsink_bench.setting import SequenceSet

VOCAB, SEQ_LEN, BOS = 48, 40, 0
ARCHITECTURES = ("gpt2", "gpt-neo", "gpt-neox", "llama", "mistral", "qwen2")
# each architecture's attention output projection in layer 0, spelled out independently of the layout table
ATTENTION_OUTPUT_0 = {"gpt2": "transformer.h.0.attn.c_proj", "gpt-neo": "transformer.h.0.attn.attention.out_proj",
                      "gpt-neox": "gpt_neox.layers.0.attention.dense", "llama": "model.layers.0.self_attn.o_proj",
                      "mistral": "model.layers.0.self_attn.o_proj", "qwen2": "model.layers.0.self_attn.o_proj"}


def fake_setting(repeated: SequenceSet, control: SequenceSet, single: SequenceSet | None = None,
                 repetitions: int = 4):
    """The parts of a Setting the analyses read."""
    return SimpleNamespace(repeated=repeated, control=control, single=single or control,
                           data=SimpleNamespace(repetitions=repetitions),
                           tokenizer=SimpleNamespace(pad_token_id=BOS, bos_token_id=BOS))


def tiny_model(seed: int = 0, n_head: int = 4):
    return build_model(ModelConfig(n_layer=2, n_embd=32, n_head=n_head, d_mlp=64), VOCAB, SEQ_LEN, seed).eval()


def tiny_architecture(architecture: str, seed: int = 0):
    """A random 2-layer, 4-head, d_model 32 model of each architecture. GPT-Neo's second layer is
    local with a window (6) shorter than the test sequences; the Llama-style ones have 2 key/value
    heads for their 4 query heads (grouped-query attention), Qwen2 with Q/K/V biases and Mistral
    with a sliding window (8) shorter than the test sequences."""
    if architecture == "gpt2":
        return tiny_model(seed)
    from transformers import AutoModelForCausalLM, GPTNeoConfig, GPTNeoXConfig, LlamaConfig, MistralConfig, Qwen2Config

    small = {"vocab_size": VOCAB, "bos_token_id": BOS, "eos_token_id": BOS, "pad_token_id": BOS,
             "max_position_embeddings": SEQ_LEN, "intermediate_size": 64}
    grouped = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, **small}
    config = {
        "gpt-neo": lambda: GPTNeoConfig(num_layers=2, hidden_size=32, num_heads=4, window_size=6,
                                        attention_types=[[["global", "local"], 1]], **small),
        "gpt-neox": lambda: GPTNeoXConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, **small),
        "llama": lambda: LlamaConfig(**grouped),
        "mistral": lambda: MistralConfig(sliding_window=8, **grouped),
        "qwen2": lambda: Qwen2Config(**grouped),
    }[architecture]()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config).eval()


def random_tokens(batch: int, length: int, seed: int) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


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


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_as_hooked_keeps_the_logits(architecture):
    model = tiny_architecture(architecture)
    tokens = random_tokens(2, 20, seed=0)              # longer than GPT-Neo's local window
    with torch.no_grad():
        assert torch.allclose(as_hooked(model)(tokens), model(input_ids=tokens).logits, atol=1e-5)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_head_ablation_on_hf_equals_zeroing_hook_z_in_transformer_lens(architecture):
    model = tiny_architecture(architecture)
    hooked = as_hooked(model)
    tokens = random_tokens(2, 20, seed=1)

    def zero_z(z, hook):                                # [batch, pos, head, d_head]
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
    with pytest.raises(UserError, match="head 4 does not exist"), rare_tokens.ablated_head(model, layer=1, head=4):
        pass


def test_planted_rarity_head_is_found_and_ablated_on_every_architecture():
    single = zipf_sequences(200, 24, 12, seed=1, first_id=20)
    setting = fake_setting(zipf_sequences(6, 24, 16, seed=2), single.subset(range(8)), single)
    for architecture in ARCHITECTURES:
        model = tiny_architecture(architecture)
        hooked = as_hooked(model)
        rarity_following(hooked, rare_tokens.unigram_frequencies(setting, VOCAB), layer=1, head=2)
        frame, summary = rare_tokens.run(model, setting, hooked=hooked)
        assert len(frame) == 2 * 2 * 4, architecture
        for group in ("memorized", "non-memorized"):
            top = summary["groups"][group]["top_head"]
            assert (top["layer"], top["head"], round(top["tau"], 6)) == (1, 2, -1.0), architecture
        assert (summary["ablation"]["layer"], summary["ablation"]["head"]) == (1, 2)
        assert summary["frequencies"] == {"source": "setting training data",
                                          "tokens": 200 * 24 + 4 * 6 * 24}


# --- unigram frequencies from a corpus file ----------------------------------------------------

def word_tokenizer():
    """Words `t0`..`t47` -> ids 0..47 (t0 is BOS and padding), split on whitespace."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="t0", pad_token="t0", unk_token="t0")


def write_corpus(path, documents: list[str]):
    import json

    import pandas as pd

    if path.suffix == ".parquet":
        pd.DataFrame({"text": documents}).to_parquet(path)
    elif path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps({"text": d}) for d in documents) + "\n")
    else:
        path.write_text("\n".join(documents) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".parquet"])
def test_frequencies_from_a_corpus_file_count_its_tokens(tmp_path, suffix):
    import hashlib

    setting = fake_setting(SequenceSet([], [], []), SequenceSet([], [], []))
    setting.tokenizer = word_tokenizer()
    path = write_corpus(tmp_path / f"corpus{suffix}", ["t5 t3 t5", "", "t47 t5 t60"])     # t60 is unknown: t0
    counts, source = rare_tokens.token_frequencies(setting, VOCAB, path)
    expected = np.zeros(VOCAB, dtype=np.int64)
    expected[[0, 3, 5, 47]] = [1, 1, 3, 1]
    assert counts.tolist() == expected.tolist()
    assert source == {"source": "file", "path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                      "documents": 2, "tokens": 6}


def test_a_pretrained_paragraph_setting_counts_each_of_its_sequences_once():
    def one(tokens):
        return SequenceSet([tokens], [1], [(1, len(tokens))])

    setting = fake_setting(one([1, 2, 2]), one([3]), single=one([1, 4]))
    setting.data, setting.validation = None, one([5, 5, 5])
    counts, source = rare_tokens.token_frequencies(setting, 6)
    assert counts.tolist() == [0, 2, 2, 1, 1, 3]
    assert source == {"source": "setting sequences", "tokens": 9}


def test_the_rare_token_head_is_judged_by_the_frequencies_of_the_file_given(tmp_path):
    """A head planted to follow the file's rarity: tau -1 against the file's frequencies; against
    the setting's own (Zipf: low ids common), where the file has low ids rare, it is the opposite."""
    model = tiny_model()
    single = zipf_sequences(200, 24, 12, seed=1, first_id=20)
    setting = fake_setting(zipf_sequences(6, 24, 16, seed=2), single.subset(range(8)), single)
    setting.tokenizer = word_tokenizer()
    path = write_corpus(tmp_path / "corpus.txt", [" ".join([f"t{t}"] * t) for t in range(1, VOCAB)])
    counts, _ = rare_tokens.token_frequencies(setting, VOCAB, path)
    assert counts[1:].tolist() == list(range(1, VOCAB))
    hooked = as_hooked(model)
    rarity_following(hooked, counts, layer=1, head=2)
    _, by_file = rare_tokens.run(model, setting, hooked=hooked, ablate=False, frequencies=path)
    frame, by_setting = rare_tokens.run(model, setting, hooked=hooked, ablate=False)
    top = by_file["groups"]["memorized"]["top_head"]
    assert (top["layer"], top["head"], round(top["tau"], 6)) == (1, 2, -1.0)
    assert by_file["frequencies"]["source"] == "file" and by_setting["frequencies"]["source"] == "setting training data"
    planted = frame[(frame["group"] == "memorized") & (frame["layer"] == 1) & (frame["head"] == 2)]
    assert float(planted["tau"].iloc[0]) > 0.5
    assert by_setting["groups"]["memorized"]["top_head"] != top


@pytest.mark.parametrize("content, problem", [(None, "is not an existing"), ("\n  \n", "holds no text")])
def test_a_missing_or_empty_frequencies_file_is_a_user_error(tmp_path, content, problem):
    setting = fake_setting(SequenceSet([], [], []), SequenceSet([], [], []))
    setting.tokenizer = word_tokenizer()
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=problem):
        rare_tokens.token_frequencies(setting, VOCAB, path)


# --- the attention layout and the gradient signature ---------------------------------------------

def flat_heads(weight: torch.Tensor) -> torch.Tensor:
    """transformer-lens [head, d_model, d_head] -> [d_model, (head d_head)]."""
    return weight.permute(1, 0, 2).reshape(weight.shape[1], -1)


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_unpacked_qkv_weights_and_gradients_equal_transformer_lens_per_head_ones(architecture):
    """transformer-lens unpacks each architecture with its own converter (GPT-NeoX per head, Llama's
    key/value heads unexpanded in `_W_K`/`_W_V`); the layout's Q/K/V and their gradients must agree."""
    model = tiny_architecture(architecture)
    hooked = as_hooked(model)
    tokens = random_tokens(2, 16, seed=2)
    blocks = attention_blocks(model)
    packed = [w for block in blocks for w in block.qkv_weights]
    ours = torch.autograd.grad(lm_loss(model(input_ids=tokens).logits, tokens), packed)
    theirs_weights = [(a.W_Q, getattr(a, "_W_K", a.W_K), getattr(a, "_W_V", a.W_V))
                      for a in (hooked.blocks[layer].attn for layer in range(2))]
    theirs = torch.autograd.grad(lm_loss(hooked(tokens), tokens), [w for ws in theirs_weights for w in ws])
    kv_width = 16 if architecture in ("llama", "mistral", "qwen2") else 32
    for layer, block in enumerate(blocks):
        n = len(block.qkv)
        weights = unpack_qkv(block, [w.detach() for w in packed[layer * n:(layer + 1) * n]])
        grads = unpack_qkv(block, list(ours[layer * n:(layer + 1) * n]))
        assert [tuple(w.shape) for w in weights] == [(32, 32), (32, kv_width), (32, kv_width)]
        for part in range(3):
            assert torch.allclose(weights[part], flat_heads(theirs_weights[layer][part].detach()), atol=1e-6)
            reference = flat_heads(theirs[3 * layer + part])
            assert reference.abs().max() > 0
            assert torch.allclose(grads[part], reference, rtol=1e-3, atol=1e-7)


def test_gpt_neox_rows_are_unpacked_per_head_not_by_thirds():
    """query_key_value rows are [head, (q k v), d_head]: with each row holding its own index, head
    h's query columns must be rows 3*h*d_head + 0..d_head-1, its keys the next d_head rows."""
    block = attention_blocks(tiny_architecture("gpt-neox"))[0]
    d_head = block.d_head
    labelled = torch.arange(3 * 32, dtype=torch.float32)[:, None].expand(3 * 32, 32)     # [3 d_model, d_model]
    q, k, v = unpack_qkv(block, [labelled])
    expected = torch.tensor([3 * h * d_head + j for h in range(4) for j in range(d_head)], dtype=torch.float32)
    for part, matrix in enumerate((q, k, v)):
        assert torch.equal(matrix, (expected + part * d_head)[None, :].expand(32, -1))
    assert not torch.equal(q[0], torch.arange(32, dtype=torch.float32))        # not GPT-2's [Q | K | V]


def test_packed_columns_of_the_wrong_width_are_rejected():
    block = attention_blocks(tiny_model())[0]
    with pytest.raises(ValueError, match="expected 3 \\* 32"):
        unpack_qkv(block, [torch.zeros(32, 2 * 32)])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_components_cut_off_from_the_output_get_zero_gradient(architecture):
    model = tiny_architecture(architecture)
    with torch.no_grad():
        model.get_submodule(ATTENTION_OUTPUT_0[architecture]).weight.zero_()   # layer 0 attention writes nothing
        mlp_layout(model)[1].down.weight.zero_()                               # layer 1 MLP writes nothing
    setting = fake_setting(zipf_sequences(3, 16, 8, seed=3), zipf_sequences(4, 16, 8, seed=4, first_id=10))
    frame, summary = gradient_signature.run(model, setting)
    assert len(frame) == 2 * 2 * 6 and set(frame["n_sequences"]) == {3, 4}
    value = frame.set_index(["group", "layer", "component"])["mean_max_abs_grad"]
    for group in ("memorized", "non-memorized"):
        for layer, component in ((0, "attn Q"), (0, "attn K"), (0, "attn V"), (1, "MLP in")):
            assert value[(group, layer, component)] == 0.0
        for layer, component in ((0, "attn O"), (1, "MLP out"), (1, "attn Q"), (1, "attn V"), (0, "MLP in")):
            assert value[(group, layer, component)] > 0.0
    assert list(frame["component"][:6]) == list(gradient_signature.COMPONENTS)
    assert len(summary["memorized_over_non_memorized_by_layer"]) == 2


def test_the_signature_reads_the_target_span_and_the_whole_sequence_beside_it():
    model = tiny_model()
    tokens = zipf_sequences(1, 16, 8, seed=5).tokens[0]
    whole = gradient_signature.max_abs_gradients(model, tokens, 0)
    assert np.allclose(gradient_signature.max_abs_gradients(model, tokens, 0, (1, 16)), whole)
    target = gradient_signature.max_abs_gradients(model, tokens, 0, (8, 12))
    assert not np.allclose(target, whole)
    changed_after = tokens[:12] + [(t % 40) + 1 for t in tokens[12:]]   # tokens after the span cannot matter
    assert np.allclose(gradient_signature.max_abs_gradients(model, changed_after, 0, (8, 12)), target)
    setting = fake_setting(zipf_sequences(3, 16, 8, seed=3), zipf_sequences(4, 16, 8, seed=4, first_id=10))
    _, summary = gradient_signature.run(model, setting)
    assert "target span" in summary["definition"] and "lower_half_ratio" in summary["whole_sequence"]
    assert summary["whole_sequence"]["lower_half_ratio"] != pytest.approx(summary["lower_half_ratio"])


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
    for position, perturbed in enumerate(first[1:], start=1):
        changed = [i for i, (a, b) in enumerate(zip(perturbed, tokens)) if a != b]
        assert changed == [position] and perturbed[position] != BOS


def test_a_head_that_writes_nothing_has_no_exact_match_effect():
    model, target = successor_model(), 5
    sequences = successor_sequences(3, 8, target, seed=2)
    effect = rare_tokens.ablation_effect(model, sequences, layer=0, head=1)
    assert effect == {"em_before": target, "em_after": target, "em_drop": 0}


def test_the_ablation_control_ablates_every_other_head_and_ranks_the_top_one():
    model = tiny_model()
    sequences = zipf_sequences(6, 24, 16, seed=2)
    control = rare_tokens.ablation_control(model, sequences, (1, 2), layers=2, heads=4)
    assert control["of_heads"] == 8 and len(control["heads"]) == 7 and "L1H2" not in control["heads"]
    for name, drop in zip(control["heads"], control["em_drops"]):       # each one as ablation_effect measures it
        layer, head = int(name[1]), int(name[3])
        assert drop == pytest.approx(rare_tokens.ablation_effect(model, sequences, layer, head)["em_drop"])
    top = rare_tokens.ablation_effect(model, sequences, 1, 2)["em_drop"]
    assert control["top_head_em_drop"] == pytest.approx(top)
    assert control["top_head_rank"] == 1 + sum(d > top for d in control["em_drops"])
    assert control["range"][0] <= control["mean_em_drop"] <= control["range"][1]


def test_attention_inputs_of_both_readings_and_of_matched_prefixes():
    tokens = [0, 11, 12, 13, 14, 15, 16]                    # target span starts at 5
    assert rare_tokens.attention_inputs(tokens, 5) == ([0, 11, 12, 13, 14], 4, [11, 12, 13, 14])
    assert rare_tokens.attention_inputs(tokens, 5, query_offset=1) == ([0, 11, 12, 13, 14, 15], 5, [11, 12, 13, 14])
    assert rare_tokens.attention_inputs(tokens, 5, window=2) == ([0, 13, 14], 2, [13, 14])
    assert rare_tokens.attention_inputs(tokens, 5, 1, 2) == ([0, 13, 14, 15], 3, [13, 14])


def test_the_rarity_head_is_found_under_every_reading_and_with_matched_prefix_lengths():
    model = tiny_model()
    single = zipf_sequences(200, 24, 12, seed=1, first_id=20)
    setting = fake_setting(zipf_sequences(6, 24, 16, seed=2), single.subset(range(8)), single)
    hooked = as_hooked(model)
    rarity_following(hooked, rare_tokens.unigram_frequencies(setting, VOCAB), layer=1, head=2)
    _, summary = rare_tokens.run(model, setting, hooked=hooked, ablate=False)
    controls = summary["controls"]
    assert controls["prefix_tokens"]["memorized"]["min"] == 15 and controls["prefix_tokens"]["non-memorized"]["min"] == 11
    assert controls["matched_prefix_tokens"] == 11
    assert len(controls["variants"]) == 4
    for variant, groups in controls["variants"].items():
        for group, top in groups.items():
            assert (top["layer"], top["head"]) == (1, 2) and top["tau"] == pytest.approx(-1.0, abs=1e-6), variant


def uncached_greedy(model, prefix: list[int], length: int) -> list[int]:
    """Greedy decoding by full forward passes (no key/value cache): the reference decoding."""
    tokens = list(prefix)
    with torch.no_grad():
        for _ in range(length):
            tokens.append(int(model(input_ids=torch.tensor([tokens])).logits[0, -1].argmax()))
    return tokens[len(prefix):]


def own_continuations(model, count: int, prefix: int, target: int, seed: int) -> SequenceSet:
    """Random prefixes, each followed by the model's own greedy continuation: sequences the model
    reproduces exactly, whatever its weights."""
    rng = random.Random(seed)
    tokens = []
    for _ in range(count):
        start = [BOS] + [rng.randrange(1, VOCAB) for _ in range(prefix)]
        tokens.append(start + uncached_greedy(model, start, target))
    return SequenceSet(tokens, list(range(1, count + 1)), [(1 + prefix, 1 + prefix + target)] * count)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_prefix_perturbation_on_every_architecture_starts_from_an_exact_reproduction(architecture):
    """On continuations that are the model's own greedy decoding, the cached decoding the analysis
    runs must reproduce all of them (GPT-Neo's local window and rotary positions included), and a
    drop against the truth must then be the same as the drop against the model's own decoding."""
    model, prefix, target = tiny_architecture(architecture), 9, 8
    setting = fake_setting(own_continuations(model, 2, prefix, target, seed=0),
                           own_continuations(model, 2, prefix, target, seed=1))
    frame, summary = prefix_perturbation.run(model, setting, seed=0)
    assert len(frame) == 4 * prefix and set(frame["distance"]) == set(range(1, prefix + 1))
    assert (frame["em_before"] == target).all()
    assert (frame["em_drop"] == frame["own_drop"]).all()
    assert (frame["em_drop"] == target - frame["em_after"]).all()
    assert frame["em_drop"].max() > 0                  # some replacement changes what a random model says
    assert summary["groups"]["memorized"]["em_before"] == target


def test_a_model_type_without_a_layout_is_a_user_error_naming_the_ones_with_one():
    with pytest.raises(UserError, match="did you mean"):
        load_analysis("rare-token")
    opt = SimpleNamespace(config=SimpleNamespace(model_type="opt"))
    for analysis in (gradient_signature, rare_tokens):
        with pytest.raises(UserError, match=r"model type 'opt' \(needed by the .* analysis\).*gpt2, gpt_neo, gpt_neox"):
            analysis.run(opt, None)
    with pytest.raises(UserError, match="cannot convert model type 'opt' to transformer-lens"):
        as_hooked(opt)


# --- gradient-masked blocks ------------------------------------------------------------------

def test_block_norms_split_the_mlp_output_between_the_two_blocks():
    from memsink_bench.analyses import block_norms
    from memsink_bench.config import load_config
    from memsink_bench.kinds import get_kind

    model = tiny_model()
    sequences = zipf_sequences(4, 16, 8, seed=3)
    both = block_norms.block_output_norms(model, sequences, BOS, n_gen=48)
    assert (both > 0).all()
    silent = copy.deepcopy(model)
    with torch.no_grad():                                   # the last layer's memorization block writes nothing
        mlp_layout(silent)[-1].down.weight[48:] = 0.0       # GPT-2 Conv1D [d_mlp, d_model]: its rows
    gen_only = block_norms.block_output_norms(silent, sequences, BOS, n_gen=48)
    assert gen_only[-1, 1] == 0.0 and np.allclose(gen_only[:, 0], both[:, 0])
    assert np.allclose(gen_only[0], both[0])                # the layers before it are untouched
    setting = fake_setting(sequences, zipf_sequences(4, 16, 8, seed=4, first_id=10))
    setting.validation = zipf_sequences(6, 16, 8, seed=5, first_id=20)
    frame, summary = block_norms.run(model, setting, generalization_fraction=0.75)
    assert set(frame["set"]) == {"held-out", "repeated"} and len(frame) == 4
    assert summary["n_generalization"] == 48 and summary["n_memorization"] == 16
    config = load_config("ts-canary", "smoke", ["gradient_masked.generalization_fraction=0.75"])
    views = get_kind("gradient-masked").views(config, 64)
    for view in ("keep-all", "dropout", "dropout-rescaled"):     # the same views the kind evaluates
        expected = sequence_losses(model, setting.validation, BOS, scale_for=views[view].scale_for).summary()["loss"]
        assert summary["losses"][view]["val_loss"] == pytest.approx(expected)
    with pytest.raises(UserError, match="gradient-masked checkpoint"):
        block_norms.run(model, setting)


def test_block_norms_cli_reads_only_gradient_masked_checkpoints(tmp_path, session_workdir, capsys):
    from memsink_bench.cli import main

    argv = ["analyze", "block-norms", "--setting", "ts-canary", "--preset", "smoke", "--set", "train.epochs=1",
            "--quiet", "--workdir", str(session_workdir), "--results", str(tmp_path)]
    assert main(argv) == 2
    assert "reads a gradient-masked checkpoint" in capsys.readouterr().err
    assert main([*argv, "--checkpoint", "gradient-masked"]) == 0
    stored = load_analysis("block-norms")
    assert stored.NAME == "block-norms"
    written = tmp_path / "analyses" / "ts-canary-smoke" / "gradient-masked" / "block-norms.json"
    assert written.is_file() and (written.with_suffix(".png")).is_file()
