"""Model building, MLP layouts across architectures, offline transformer-lens conversion, loading."""

import pytest
import torch

from memsink_bench.config import ModelConfig
from memsink_bench.errors import UserError
from memsink_bench.models import build_model, load_pretrained, mlp_layout, mlp_shape, to_hooked_transformer


def test_hooked_transformer_conversion_is_offline_and_exact():
    model = build_model(ModelConfig(n_layer=2, n_embd=32, n_head=2, d_mlp=64), 100, 32, 0).eval()
    hooked = to_hooked_transformer(model)
    tokens = torch.randint(1, 100, (2, 10))
    torch.testing.assert_close(hooked(tokens), model(input_ids=tokens).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["gpt_neo", "gpt_neox", "llama"])
def test_mlp_layout_finds_the_down_projection_of_other_families(family):
    import transformers

    configs = {
        "gpt_neo": transformers.GPTNeoConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=2,
                                             attention_types=[[["global"], 2]], intermediate_size=80),
        "gpt_neox": transformers.GPTNeoXConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                               num_attention_heads=2, intermediate_size=80),
        "llama": transformers.LlamaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, intermediate_size=80),
    }
    model = transformers.AutoModelForCausalLM.from_config(configs[family])
    assert mlp_shape(model) == (2, 80)
    seen = []
    handle = mlp_layout(model)[1].down.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    model(input_ids=torch.randint(0, 64, (1, 5)))
    handle.remove()
    assert seen == [torch.Size([1, 5, 80])]


def test_load_pretrained_reads_a_local_hf_directory(tmp_path, smoke_setting):
    model = build_model(ModelConfig(n_layer=1, n_embd=32, n_head=2, d_mlp=64), smoke_setting.vocab_size, 32, 0)
    model.save_pretrained(tmp_path, safe_serialization=True)
    smoke_setting.tokenizer.save_pretrained(tmp_path)
    loaded, tokenizer = load_pretrained(str(tmp_path))
    assert tokenizer.get_vocab() == smoke_setting.tokenizer.get_vocab()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])


def test_load_pretrained_names_the_problem_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="cannot load the tokenizer of .*nothing-here.* \\(hub id\\)"):
        load_pretrained(str(tmp_path / "nothing-here"))       # not a directory: taken for a hub id
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has none of tokenizer.json"):
        load_pretrained(str(tmp_path / "empty"))
