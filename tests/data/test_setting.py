"""Setting construction: counts, spans, canaries, tokenizer round trip, corpus determinism, caching."""

import json

import pytest

from memsink_bench.config import load_config
from memsink_bench import setting as setting_module
from memsink_bench.setting import build_setting, get_setting, setting_fingerprint


def test_counts_follow_the_config(smoke_setting, smoke_config):
    data = smoke_config.data
    assert len(smoke_setting.repeated) == data.n_repeated
    assert len(smoke_setting.single) == data.n_single
    assert len(smoke_setting.validation) == data.n_validation
    assert len(smoke_setting.control) == data.n_control
    assert smoke_setting.vocab_size == data.vocab_size


def test_ids_are_unique_per_distinct_sequence_and_never_zero(smoke_setting):
    ids = smoke_setting.repeated.ids + smoke_setting.single.ids
    assert len(set(ids)) == len(ids) and 0 not in ids
    assert set(smoke_setting.control.ids) <= set(smoke_setting.single.ids)


def test_canaries_are_the_target_span_and_fit_the_sequence(smoke_setting, smoke_config):
    data = smoke_config.data
    for tokens, (start, end) in zip(smoke_setting.repeated.tokens, smoke_setting.repeated.spans):
        assert end == len(tokens) and end - start == data.canary_length
        assert len(tokens) <= data.seq_len
    canaries = [tuple(t[s:e]) for t, (s, e) in zip(smoke_setting.repeated.tokens, smoke_setting.repeated.spans)]
    assert len(set(canaries)) == len(canaries)                  # each story its own canary
    bos = smoke_setting.tokenizer.bos_token_id
    assert all(bos not in c for c in canaries)


def test_validation_stories_are_not_training_stories(smoke_setting):
    training = {tuple(t) for t in smoke_setting.single.tokens} | {tuple(t) for t in smoke_setting.repeated.tokens}
    assert not any(tuple(t) in training for t in smoke_setting.validation.tokens)


def test_tokenizer_round_trip(smoke_setting):
    tokenizer = smoke_setting.tokenizer
    text = 'Lily saw a big red ball. "Can I play?" she asked. Zyx 123!'
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text


def test_corpus_and_setting_are_deterministic_and_seed_dependent():
    config = load_config("ts-repetition", "smoke")
    first, second = build_setting("ts-repetition", config.data), build_setting("ts-repetition", config.data)
    assert first.corpus_hash == second.corpus_hash and first.repeated.tokens == second.repeated.tokens
    other = load_config("ts-repetition", "smoke", ["data.seed=1"])
    assert build_setting("ts-repetition", other.data).corpus_hash != first.corpus_hash
    assert setting_fingerprint("ts-repetition", other.data) != setting_fingerprint("ts-repetition", config.data)
    assert first.setting_hash == setting_fingerprint("ts-repetition", config.data)[0]


def test_key_follows_the_generated_content(monkeypatch):
    """A changed story generator (same config, other text) must not reuse the old cached setting."""
    config = load_config("ts-repetition", "smoke")
    before = setting_fingerprint("ts-repetition", config.data)
    real = setting_module.load_documents_for

    def edited_generator(data, n):
        documents = real(data, n)
        return [documents[0].replace("a", "the", 1)] + documents[1:]

    monkeypatch.setattr(setting_module, "load_documents_for", edited_generator)
    setting_module._fingerprint.cache_clear()
    try:
        after = setting_fingerprint("ts-repetition", config.data)
        assert after[0] != before[0] and after[1] != before[1]
        assert build_setting("ts-repetition", config.data).setting_hash == after[0]
    finally:                        # the edited generator's fingerprint must not outlive the test
        monkeypatch.undo()
        setting_module._fingerprint.cache_clear()


def _file_config(path):
    return load_config("ts-repetition", "smoke", ["data.corpus=file", f"data.corpus_path={path}",
                                                   "data.n_single=40", "data.n_control=8", "data.n_validation=8",
                                                   "data.n_repeated=4"])


def test_key_follows_a_corpus_file_content_not_its_path(tmp_path):
    from memsink_bench.corpus.synthetic import generate_stories

    stories = [" ".join(s.split()) for s in generate_stories(60, 5)]
    first, second = tmp_path / "a" / "docs.txt", tmp_path / "b" / "other-name.txt"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text("\n".join(stories))
    key = setting_fingerprint("ts-repetition", _file_config(first).data)[0]
    assert setting_fingerprint("ts-repetition", _file_config(second).data)[0] == key     # same content elsewhere
    first.write_text("\n".join(stories[:-1] + ["A different last story, long enough to count."]))
    assert setting_fingerprint("ts-repetition", _file_config(first).data)[0] != key      # replaced in place


def test_cached_setting_loads_identically(smoke_setting, smoke_config, session_workdir):
    again = get_setting(smoke_config.setting, smoke_config.data, session_workdir)
    assert again.repeated.tokens == smoke_setting.repeated.tokens
    assert again.control.ids == smoke_setting.control.ids
    assert again.corpus_hash == smoke_setting.corpus_hash
    meta = json.loads((again.directory / "setting.json").read_text())
    assert meta["corpus"] == "synthetic-stories" and len(meta["corpus_hash"]) == 64


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".parquet"])
def test_local_corpus_files(tmp_path, suffix):
    from memsink_bench.corpus.sources import read_document_file
    from memsink_bench.corpus.synthetic import generate_stories

    stories = [" ".join(s.split()) for s in generate_stories(5, 3)]     # one line each
    path = tmp_path / f"docs{suffix}"
    if suffix == ".txt":
        path.write_text("\n".join(stories))
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps({"text": s}) for s in stories))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table({"text": stories}), path)
    assert read_document_file(path) == stories


def test_tinystories_loader_reads_local_files_in_the_hub_schema(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from memsink_bench.corpus.sources import load_tinystories

    stories = [f"Once upon a time there was a cat number {i}." for i in range(20)]
    pq.write_table(pa.table({"text": stories}), tmp_path / "train-00000-of-00001.parquet")
    assert load_tinystories(7, str(tmp_path)) == stories[:7]
