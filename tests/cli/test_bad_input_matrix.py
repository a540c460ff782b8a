"""Bad input across every surface: CLI flags, task YAML, `--set`, checkpoint directories, plugins
and corpora. Each case must exit 2 with ONE stderr line naming the problem and the fix, and must
write or overwrite nothing (the results directory, the damaged checkpoint directory, the shared
checkpoint cache and the folder around the work/results directories are compared before/after).

The cases complement `test_cli.py::test_bad_input_is_one_line_exit_2_nothing_written`; they run
in-process through `memsink_bench.cli.main` on one module-scoped workdir whose smoke checkpoints
(1 epoch) are trained once.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from memsink_bench.cli import main

SMOKE = ["--setting", "ts-canary", "--preset", "smoke", "--quiet", "--set", "train.epochs=1"]
TASKS = Path(__file__).resolve().parents[2] / "tasks"


@dataclass
class Bench:
    root: Path
    workdir: Path
    results: Path
    standard: Path          # a trained smoke checkpoint directory (never damaged itself)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                       # 2 busy cores: oversubscription costs 10-20x
    root = tmp_path_factory.mktemp("bad-input")
    workdir, results = root / "workdir", root / "results"
    common = ["--workdir", str(workdir)]
    assert main(["run", "--method", "random-neurons", *SMOKE, "--set", "sweep.ratios=[0.1]", *common,
                 "--results", str(results)]) == 0
    assert main(["train", *SMOKE, "--kind", "memsinks", *common]) == 0
    [standard] = [p for p in (workdir / "checkpoints" / "ts-canary").iterdir()
                  if re.fullmatch(r"standard-[0-9a-f]{16}", p.name)]
    yield Bench(root, workdir, results, standard)
    torch.set_num_threads(threads)


# --- argv builders -----------------------------------------------------------------------------

def run(b: Bench, *extra: str, method: str = "random-neurons") -> list[str]:
    sweep = [] if any(e.startswith("sweep.") for e in extra) else ["--set", "sweep.ratios=[0.1]"]
    return ["run", "--method", method, *SMOKE, *sweep, "--workdir", str(b.workdir),
            "--results", str(b.results), *extra]


def train(b: Bench, *extra: str) -> list[str]:
    return ["train", *SMOKE, "--kind", "standard", "--workdir", str(b.workdir), *extra]


def with_task(b: Bench, tmp: Path, text: str, preset: str = "smoke") -> list[str]:
    path = tmp / "task.yaml"
    path.write_text(textwrap.dedent(text))
    return ["run", "--method", "random-neurons", "--setting", str(path), "--preset", preset, "--quiet",
            "--set", "sweep.ratios=[0.1]", "--workdir", str(b.workdir), "--results", str(b.results)]


def canary_yaml(**replace: str) -> str:
    text = (TASKS / "ts-canary.yaml").read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


def damaged_checkpoint(b: Bench, tmp: Path, damage) -> Path:
    copy = tmp / "checkpoint-copy"
    shutil.copytree(b.standard, copy)
    damage(copy)
    return copy


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def swap_two_tokens(directory: Path) -> None:
    tokenizer = json.loads((directory / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    (a, ia), (b, ib) = sorted(vocab.items(), key=lambda kv: kv[1])[-2:]
    vocab[a], vocab[b] = ib, ia
    (directory / "tokenizer.json").write_text(json.dumps(tokenizer))


def torn_record(results: Path) -> None:
    """A results directory whose only record was cut off mid-write by something other than us."""
    path = results / "records" / "ts-canary-smoke" / "ig__standard__0123456789.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"schema": 1, "points": [{"knob": 0.1, "forge')


def with_checkpoint(b: Bench, tmp: Path, damage) -> tuple[list[str], Path]:
    path = damaged_checkpoint(b, tmp, damage)
    return run(b, "--checkpoint", str(path)), path


def with_plugin(b: Bench, tmp: Path, source: str, spec: str = "Plugin", *extra: str) -> list[str]:
    path = tmp / "plugin.py"
    path.write_text(textwrap.dedent(source))
    return run(b, *extra, method=f"{path}:{spec}" if spec else str(path))


def with_corpus(b: Bench, tmp: Path, name: str, content: bytes | None) -> list[str]:
    path = tmp / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return run(b, "--set", "data.corpus=file", "--set", f"data.corpus_path={path}")


LOCALIZER = """
    import torch
    from memsink_bench.methods.base import NeuronLocalizer
    from memsink_bench.models import mlp_shape

    class Plugin(NeuronLocalizer):
        name = "bad-localizer"
        def score(self, model, context):
            {body}
"""

EDITOR = """
    import copy
    import torch
    from memsink_bench.methods.base import ModelEditor

    class Plugin(ModelEditor):
        name = "bad-editor"
        knob = "steps"
        def edit(self, model, context, knob):
            {body}
"""


def localizer(body: str) -> str:
    return textwrap.dedent(LOCALIZER).replace("{body}", body.replace("\n    ", "\n"))


def editor(body: str) -> str:
    return textwrap.dedent(EDITOR).replace("{body}", body.replace("\n    ", "\n"))


# --- the cases: (builder(bench, tmp) -> argv or (argv, damaged dir), problem text, fix text) ----

CASES = [
    # CLI flags
    pytest.param(lambda b, t: run(b, "--seed", "abc"), "invalid int value: 'abc'", "--seed SEED",
                 id="flag-seed-not-int"),
    pytest.param(lambda b, t: (t / "afile").write_text("x") and
                 ["run", "--method", "random-neurons", *SMOKE, "--workdir", str(t / "afile"),
                  "--results", str(b.results)], "cannot write to", "choose a writable directory",
                 id="flag-workdir-is-a-file"),
    pytest.param(lambda b, t: run(b, "--checkpoint", "standard:bogus"), "has no view 'bogus'",
                 "choose one of", id="flag-checkpoint-unknown-view"),
    pytest.param(lambda b, t: run(b, "--checkpoint", "memsinks:own"), "depends on the sequence",
                 "choose a fixed view", id="flag-checkpoint-sequence-view-for-localizer"),
    pytest.param(lambda b, t: ["leaderboard", "--results", str(t / "empty")], "no result records match",
                 "run `memsink-bench run", id="flag-leaderboard-empty-results"),
    pytest.param(lambda b, t: ["leaderboard", "--results", str(b.results), "--setting", "ts-canari"],
                 "no result records match", "run `memsink-bench run", id="flag-leaderboard-unknown-setting"),
    # task YAML files
    pytest.param(lambda b, t: with_task(b, t, "- a\n- list\n"), "lacks `name` or `presets`",
                 "see tasks/ts-repetition.yaml", id="yaml-top-level-list"),
    pytest.param(lambda b, t: with_task(b, t, canary_yaml(**{"defaults:\n": "defaults:\n  optimizer: {lr: 1}\n"})),
                 "unknown section 'optimizer'", "choose one of", id="yaml-unknown-section"),
    pytest.param(lambda b, t: with_task(b, t, canary_yaml(**{"n_single: 64": "n_singel: 64"})),
                 "unknown key 'data.n_singel'", "did you mean 'data.n_single'", id="yaml-unknown-key"),
    pytest.param(lambda b, t: with_task(b, t, canary_yaml(**{"id_noise: 0.0": "id_noise: lots"})),
                 "data.id_noise='lots'", "a number", id="yaml-wrong-type"),
    pytest.param(lambda b, t: with_task(b, t, "name: x\ndefaults: {}\npresets:\n  smoke:\n    data: [1, 2]\n"),
                 "'data'", "mapping", id="yaml-section-not-a-mapping"),
    pytest.param(lambda b, t: with_task(b, t, "name: x\ndefaults: {}\npresets: [smoke, cpu]\n"),
                 "presets", "mapping", id="yaml-presets-is-a-list"),
    pytest.param(lambda b, t: with_task(b, t, "name: x\ndefaults: [1]\npresets: {smoke: {}}\n"),
                 "defaults", "mapping", id="yaml-defaults-is-a-list"),
    pytest.param(lambda b, t: with_task(b, t, canary_yaml(**{"name: ts-canary": "name: ../../escaped"})),
                 "'../../escaped'", "letters, digits", id="yaml-name-escapes-directories"),
    pytest.param(lambda b, t: with_task(b, t, canary_yaml(**{"  smoke:\n": "  ../escaped:\n"}), "../escaped"),
                 "'../escaped'", "letters, digits", id="yaml-preset-escapes-directories"),
    # --set overrides
    pytest.param(lambda b, t: run(b, "--set", "data.n_single=abc"), "data.n_single='abc'", "integer",
                 id="set-int-field-given-text"),
    pytest.param(lambda b, t: run(b, "--set", "train.epochs=2.5"), "train.epochs=2.5", "integer",
                 id="set-int-field-given-float"),
    pytest.param(lambda b, t: run(b, "--set", "train.epochs=true"), "train.epochs=True", "integer",
                 id="set-int-field-given-bool"),
    pytest.param(lambda b, t: run(b, "--set", "data.seed=abc"), "data.seed='abc'", "integer",
                 id="set-seed-given-text"),
    pytest.param(lambda b, t: run(b, "--set", "train.lr=fast"), "train.lr='fast'", "number",
                 id="set-float-field-given-text"),
    pytest.param(lambda b, t: train(b, "--set", "train.warmup_steps=ten"), "train.warmup_steps='ten'",
                 "an integer", id="set-train-command-wrong-type"),
    pytest.param(lambda b, t: run(b, "--set", "method.salt=abc"), "method.salt='abc'", "integer",
                 id="set-method-hyperparameter-wrong-type"),
    pytest.param(lambda b, t: run(b, "--set", "sweep.steps=[0,1]", method="sparse-ft"),
                 "sweep.steps=[0, 1]", "e.g. --set sweep.steps=[1,5,10]", id="set-editor-steps-zero"),
    pytest.param(lambda b, t: run(b, "--set", "sweep.ratios=0.1"), "must be a list of fractions",
                 "e.g. --set sweep.ratios=", id="set-ratios-not-a-list"),
    pytest.param(lambda b, t: run(b, "--set", "model.n_head=3"), "not divisible", "multiple of n_head",
                 id="set-heads-do-not-divide"),
    pytest.param(lambda b, t: run(b, "--set", "data.corpus=file"), "corpus 'file' needs a path",
                 "set data.corpus_path", id="set-file-corpus-without-path"),
    # metric parameters (--set metrics.*)
    pytest.param(lambda b, t: run(b, "--set", "metrics.min_k_fraction=0"), "metrics.min_k_fraction=0",
                 "a fraction in (0, 1]", id="set-metrics-min-k-zero"),
    pytest.param(lambda b, t: run(b, "--set", "metrics.top_k=0"), "metrics.top_k=0", "e.g. 40",
                 id="set-metrics-top-k-zero"),
    pytest.param(lambda b, t: run(b, "--set", "metrics.temperature=-1"), "metrics.temperature=-1",
                 "a number > 0", id="set-metrics-temperature-negative"),
    pytest.param(lambda b, t: run(b, "--set", "metrics.samples=100"), "metrics.samples=100",
                 "a list like [1, 10, 100]", id="set-metrics-samples-not-a-list"),
    pytest.param(lambda b, t: run(b, "--set", "metrics.samples=[0,10]"), "metrics.samples=[0, 10]",
                 "a list like [1, 10, 100]", id="set-metrics-samples-zero"),
    pytest.param(lambda b, t: run(b, "--set", "metrics.relearn_steps=[-1]"), "metrics.relearn_steps=[-1]",
                 "a list like [1, 5, 20]", id="set-metrics-relearn-steps-negative"),
    pytest.param(lambda b, t: run(b, "--set", "metrics.extraction_p=1"), "metrics.extraction_p=1",
                 "a fraction in (0, 1)", id="set-metrics-extraction-p-one"),
    pytest.param(lambda b, t: run(b, "--set", "metrics.quantization_bits=[1]"), "metrics.quantization_bits=[1]",
                 "a list like [8, 4]", id="set-metrics-bits-too-few"),
    # checkpoint directories given as --checkpoint PATH (copies of a trained smoke checkpoint)
    pytest.param(lambda b, t: with_checkpoint(b, t, lambda d: (d / "model.safetensors").unlink()),
                 "lacks model.safetensors", "copy it again", id="ckpt-missing-weights"),
    pytest.param(lambda b, t: with_checkpoint(b, t, lambda d: truncate(d / "model.safetensors")),
                 "its weights are unreadable", "copy it again", id="ckpt-truncated-safetensors"),
    pytest.param(lambda b, t: with_checkpoint(b, t, lambda d: edit_json(
        d / "manifest.json", setting="ts-repetition", setting_hash="0123456789abcdef")),
                 "trained on setting 'ts-repetition'", "pass a checkpoint of this setting",
                 id="ckpt-manifest-of-another-setting"),
    pytest.param(lambda b, t: with_checkpoint(b, t, swap_two_tokens), "different tokenizer",
                 "use a checkpoint trained on this setting", id="ckpt-tokenizer-mismatch"),
    pytest.param(lambda b, t: with_checkpoint(b, t, lambda d: truncate(d / "manifest.json")),
                 "manifest.json is not valid JSON", "copy it again", id="ckpt-manifest-truncated"),
    pytest.param(lambda b, t: with_checkpoint(b, t, lambda d: edit_json(d / "manifest.json", kind="../../x")),
                 "unknown kind '../../x'", "give a directory written by", id="ckpt-manifest-unknown-kind"),
    pytest.param(lambda b, t: with_checkpoint(b, t, lambda d: edit_json(d / "manifest.json", corpus_hash="f" * 64)),
                 "different corpus", "retrain on this corpus", id="ckpt-other-corpus"),
    pytest.param(lambda b, t: with_checkpoint(b, t, lambda d: edit_json(d / "config.json", n_inner=64)),
                 "its weights are unreadable", "copy it again", id="ckpt-config-does-not-match-weights"),
    pytest.param(lambda b, t: with_checkpoint(b, t, lambda d: (d / "tokenizer.json").write_text("{")),
                 "its tokenizer is unreadable", "copy it again", id="ckpt-tokenizer-corrupt"),
    pytest.param(lambda b, t: (t / "notes.txt").write_text("a user's file") and (run(b, "--checkpoint", str(t)), t),
                 "is not a memsink-bench checkpoint (it has no manifest.json)", "give a directory written by",
                 id="ckpt-any-directory-like-etc"),
    pytest.param(lambda b, t: (t / "ckpt.txt").write_text("x") and run(b, "--checkpoint", str(t / "ckpt.txt")),
                 "unknown checkpoint", "or a checkpoint directory", id="ckpt-path-is-a-file"),
    # results directories
    pytest.param(lambda b, t: (t / "a-file").write_text("x") and run(b, "--results", str(t / "a-file" / "results")),
                 "cannot write to --results", "choose a writable directory with --results", id="results-unwritable"),
    pytest.param(lambda b, t: (torn_record(t / "torn"), ["leaderboard", "--results", str(t / "torn")])[1],
                 "ts-canary-smoke/ig__standard__0123456789.json", "--force", id="leaderboard-only-record-torn"),
    pytest.param(lambda b, t: (torn_record(t / "torn"), ["report", "--results", str(t / "torn")])[1],
                 "ts-canary-smoke/ig__standard__0123456789.json", "--force", id="report-only-record-torn"),
    # plugins given as --method FILE.py:Class
    pytest.param(lambda b, t: with_plugin(b, t, "import no_such_module_for_memsink\n"),
                 "failed to import: ModuleNotFoundError", "fix the error in that file", id="plugin-import-error"),
    pytest.param(lambda b, t: with_plugin(b, t, "def broken(:\n"), "failed to import: SyntaxError",
                 "fix the error in that file", id="plugin-syntax-error"),
    pytest.param(lambda b, t: with_plugin(b, t, "class Plugin:\n    pass\n"),
                 "not a NeuronLocalizer or ModelEditor subclass", "subclass memsink_bench", id="plugin-not-a-method"),
    pytest.param(lambda b, t: with_plugin(b, t, localizer("return 0"), "Nope"), "has no class 'Nope'",
                 "choose one of: NeuronLocalizer, Plugin", id="plugin-missing-class"),
    pytest.param(lambda b, t: with_plugin(b, t, localizer("return 0") + "\nclass Other(Plugin):\n    pass\n", ""),
                 "defines 2 method classes", "name one", id="plugin-file-two-classes"),
    pytest.param(lambda b, t: with_plugin(b, t, localizer("return torch.zeros(mlp_shape(model)[::-1])")),
                 "scores of shape [128, 2]", "return shape [layers, d_mlp] = [2, 128]", id="plugin-transposed-scores"),
    pytest.param(lambda b, t: with_plugin(b, t, localizer("return torch.full(mlp_shape(model), float('inf'))")),
                 "NaN or infinite", "return finite scores", id="plugin-infinite-scores"),
    pytest.param(lambda b, t: with_plugin(b, t, localizer(
        "next(context.target_batches()); raise ValueError('the scores exploded\\nsecond line')")),
                 "ValueError: the scores exploded second line", "fix the plugin", id="plugin-localizer-raises-mid-run"),
    pytest.param(lambda b, t: with_plugin(b, t, editor(
        "if knob > 1: raise RuntimeError('optimizer diverged')\n            return copy.deepcopy(model)"),
        "Plugin", "--set", "sweep.steps=[1,2]"),
                 "RuntimeError: optimizer diverged", "fix the plugin", id="plugin-editor-raises-after-a-point"),
    pytest.param(lambda b, t: with_plugin(b, t, editor("return None"), "Plugin", "--set", "sweep.steps=[1]"),
                 "returned NoneType", "return an edited copy", id="plugin-editor-returns-none"),
    pytest.param(lambda b, t: with_plugin(b, t, editor(
        "m = copy.deepcopy(model)\n            [p.data.fill_(float('nan')) for p in m.parameters()]\n"
        "            return m"), "Plugin", "--set", "sweep.steps=[1]"),
                 "non-finite", "NaN/inf weights", id="plugin-editor-nan-weights"),
    pytest.param(lambda b, t: with_plugin(b, t, localizer("return 0").replace(
        "class Plugin(NeuronLocalizer):",
        "class Plugin(NeuronLocalizer):\n    def __init__(self):\n        raise OSError('no GPU found')")),
                 "OSError: no GPU found", "fix the plugin", id="plugin-constructor-raises"),
    # corpora: --set data.corpus=file --set data.corpus_path=...
    pytest.param(lambda b, t: with_corpus(b, t, "empty.txt", b""), "has 0 usable documents",
                 "give a larger corpus", id="corpus-empty-file"),
    pytest.param(lambda b, t: with_corpus(b, t, "blob.txt", bytes(range(256)) * 64), "not UTF-8 text",
                 "give a .txt, .jsonl or .parquet", id="corpus-binary-file"),
    pytest.param(lambda b, t: with_corpus(b, t, "nul.txt", b"story one\x00\x00\nstory two\n" * 100),
                 "is binary, not text", "give a .txt, .jsonl or .parquet", id="corpus-text-with-nul-bytes"),
    pytest.param(lambda b, t: with_corpus(b, t, "docs.jsonl", b'{"text": "a"}\n{"body": "b"}\n'),
                 "line 2 is not a JSON object with a 'text' field", "one {\"text\"", id="corpus-jsonl-wrong-field"),
    pytest.param(lambda b, t: with_corpus(b, t, "docs.parquet", b"PAR1 not really parquet"),
                 "cannot read parquet file", "valid .parquet", id="corpus-garbage-parquet"),
    pytest.param(lambda b, t: with_corpus(b, t, "docs.pdf", b"a story\n" * 200), "unsupported corpus file type",
                 "use .txt, .jsonl or .parquet", id="corpus-unsupported-suffix"),
    pytest.param(lambda b, t: with_corpus(b, t, "corpus_dir", None), "is a directory",
                 "set data.corpus_path to a", id="corpus-path-is-a-directory"),
    pytest.param(lambda b, t: with_corpus(b, t, "few.txt", b"one short story.\n" * 10), "needs 84",
                 "give a larger corpus", id="corpus-too-few-documents"),
]


def _tree(path: Path | None) -> dict[str, tuple[int, int, str]]:
    """Every file under `path` with its size, mtime and content hash."""
    if path is None or not path.exists():
        return {}
    if path.is_file():
        return {path.name: (path.stat().st_size, path.stat().st_mtime_ns,
                            hashlib.sha256(path.read_bytes()).hexdigest())}
    found = {}
    for file in sorted(path.rglob("*")):
        if file.is_file() and not file.name.endswith(".lock"):
            stat = file.stat()
            found[str(file.relative_to(path))] = (stat.st_size, stat.st_mtime_ns,
                                                  hashlib.sha256(file.read_bytes()).hexdigest())
    return found


def _listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


@pytest.mark.parametrize("build, problem, fix", CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(bench, tmp_path, capsys, build, problem, fix):
    built = build(bench, tmp_path)
    argv, damaged = built if isinstance(built, tuple) else (built, None)
    results_before, damaged_before = _tree(bench.results), _tree(damaged)
    cache_before = {name: _listing(bench.workdir / name) for name in ("checkpoints", "runs")}
    cache_before["checkpoints/ts-canary"] = _listing(bench.workdir / "checkpoints" / "ts-canary")
    around_before = (_listing(bench.root), _listing(bench.root.parent))
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:                     # argparse rejects a flag itself
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 2, f"exit {code}; stderr:\n{err}"
    lines = err.strip().splitlines()
    if lines and lines[0].startswith("usage:"):     # argparse: usage, then one error line
        assert sum("error:" in line for line in lines) == 1 and "error:" in lines[-1], err
        assert problem in lines[-1] and fix in err, err
    else:
        assert len(lines) == 1, f"not one line:\n{err}"
        assert lines[0].startswith("memsink-bench: error: "), err
        assert problem in lines[0], err
        assert fix in lines[0].split("; ", 1)[-1], err
        assert "Traceback" not in err
    if damaged is not None:         # a directory the user named is never advised for deletion
        assert "delete" not in err, err
    assert _tree(bench.results) == results_before, "the results directory changed"
    assert _tree(damaged) == damaged_before, "the damaged checkpoint changed"
    cache_after = {name: _listing(bench.workdir / name) for name in ("checkpoints", "runs")}
    cache_after["checkpoints/ts-canary"] = _listing(bench.workdir / "checkpoints" / "ts-canary")
    assert cache_after == cache_before, "a checkpoint was trained or written"
    assert (_listing(bench.root), _listing(bench.root.parent)) == around_before, "something escaped"


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
