"""Reliability at the smoke preset, doing the bad thing for real: SIGKILL during training, a
crash in the middle of a checkpoint save / record write, concurrent commands on one workdir,
repeated runs, malicious pickles, stray plugin files, escaping names, unwritable output.

Real processes (`python -m memsink_bench.cli` or a small wrapper around `cli.main`) are used
where something must be killed or run concurrently; the rest runs in-process. Subprocesses run
with one intra-op thread: on 2 busy cores oversubscription makes them 10-20x slower.
"""

from __future__ import annotations

import ast
import json
import math
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import memsink_bench
from memsink_bench.cli import main

SMOKE = ["--setting", "ts-canary", "--preset", "smoke", "--quiet"]
FAST = [*SMOKE, "--set", "train.epochs=1"]
RUN = ["run", "--method", "random-neurons", *FAST, "--set", "sweep.ratios=[0.1]"]
CHECKPOINT_NAME = re.compile(r"(standard|standard-no-rep|never-seen|memsinks|gradient-masked)-[0-9a-f]{16}")


def env(workdir: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "MEMSINK_BENCH_CACHE": str(workdir), "PYTHONUNBUFFERED": "1"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "memsink_bench.cli", *args]


def checkpoints(workdir: Path, kind: str = "standard") -> list[Path]:
    root = workdir / "checkpoints" / "ts-canary"
    return sorted(p for p in root.iterdir() if re.fullmatch(rf"{kind}-[0-9a-f]{{16}}", p.name)) \
        if root.is_dir() else []


def records(results: Path) -> list[Path]:
    return sorted((results / "records").glob("*/*.json"))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A workdir with the 1-epoch smoke checkpoints (standard, standard-no-rep) trained once."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    workdir = tmp_path_factory.mktemp("reliability") / "workdir"
    assert main([*RUN, "--workdir", str(workdir), "--results", str(workdir.parent / "results")]) == 0
    yield workdir
    torch.set_num_threads(threads)


# --- crash during training -----------------------------------------------------------------------

def test_sigkill_during_training_then_resume_is_bit_identical(tmp_path):
    args = ["train", *SMOKE, "--kind", "standard", "--set", "train.epochs=30", "--set", "train.eval_every=5"]
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full = subprocess.Popen(cli(*args, "--workdir", str(full_dir)), env=env(full_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cut = subprocess.Popen(cli(*args, "--workdir", str(cut_dir)), env=env(cut_dir),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rng = random.Random()
    target, delay = rng.randrange(15, 300), rng.uniform(0.0, 0.15)    # random-ish on purpose
    context = f"kill target step {target}, extra delay {delay:.3f}s"
    step, polls = 0, 0
    while step < target:
        assert cut.poll() is None, f"training ended before the kill ({context}): {cut.stderr.read()}"
        polls += 1
        assert polls < 15_000, context                   # a bounded wait (~5 minutes of 20 ms polls)
        found = list((cut_dir / "runs" / "ts-canary").glob("standard-*/snapshot/step.json"))
        if found:
            try:
                step = json.loads(found[0].read_text())["step"]
            except (OSError, ValueError):
                pass                              # mid-rename: try again
        time.sleep(0.02)
    time.sleep(delay)
    cut.send_signal(signal.SIGKILL)
    assert cut.wait() == -signal.SIGKILL
    assert not any((p / "manifest.json").exists() for p in checkpoints(cut_dir)), context
    [run_dir] = list((cut_dir / "runs" / "ts-canary").glob("standard-*"))
    # mark a metrics line the killed process wrote: it survives only if the run really resumes
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), "probe": True})
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")

    resumed = subprocess.run(cli(*args, "--resume", "--workdir", str(cut_dir)), env=env(cut_dir),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, f"{context}\n{resumed.stderr}"
    assert full.wait(timeout=600) == 0, full.stderr.read()

    [full_ckpt], [cut_ckpt] = checkpoints(full_dir), checkpoints(cut_dir)
    assert full_ckpt.name == cut_ckpt.name
    expected, got = load_file(str(full_ckpt / "model.safetensors")), load_file(str(cut_ckpt / "model.safetensors"))
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, got[name]), f"{name} differs ({context})"
    full_log = [json.loads(line) for line in (full_ckpt / "metrics.jsonl").read_text().splitlines()]
    cut_log = [json.loads(line) for line in (cut_ckpt / "metrics.jsonl").read_text().splitlines()]
    assert cut_log[0].pop("probe", False), f"the resumed run restarted from scratch ({context})"
    steps = [m["step"] for m in cut_log]
    assert len(steps) == len(set(steps)), f"duplicate steps ({context})"
    assert steps == [m["step"] for m in full_log] == [*range(5, 360, 5), 360], context
    assert cut_log == full_log, context


def test_crash_between_the_two_renames_of_a_snapshot_save_resumes_from_the_previous_one(
        shared, tmp_path, monkeypatch):
    """atomic_directory replaces an existing snapshot with two renames; a crash between them
    leaves only `.old-snapshot-*`. --resume must continue from it, not silently start over."""
    from memsink_bench import storage
    from memsink_bench.config import load_config
    from memsink_bench.setting import get_setting
    from memsink_bench.train import train

    config = load_config("ts-canary", "smoke", ["train.eval_every=5"])
    setting = get_setting(config.setting, config.data, shared)
    full = train(setting, "standard", config, tmp_path / "full", progress=False)

    class Crash(BaseException):
        pass

    real_rename = os.rename

    def rename(source, target):
        real_rename(source, target)
        if Path(target).name.startswith(".old-snapshot"):   # the 2nd save (step 10), between its renames
            raise Crash()

    monkeypatch.setattr(storage.os, "rename", rename)
    with pytest.raises(Crash):
        train(setting, "standard", config, tmp_path / "cut", progress=False)
    monkeypatch.setattr(storage.os, "rename", real_rename)
    cut = tmp_path / "cut"
    assert not (cut / "snapshot").exists()
    [old] = list(cut.glob(".old-snapshot-*/step.json"))
    assert json.loads(old.read_text())["step"] == 5
    lines = (cut / "metrics.jsonl").read_text().splitlines()          # steps 5 and 10
    lines[0] = json.dumps({**json.loads(lines[0]), "probe": True})    # survives only a real resume
    (cut / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    resumed = train(setting, "standard", config, cut, resume=True, progress=False)
    assert resumed.metrics[0].pop("probe", False), "--resume started over instead of resuming from step 5"
    assert resumed.metrics == full.metrics
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert not list(cut.glob(".old-snapshot-*"))      # the next successful save removed the leftover


# --- crash while writing ---------------------------------------------------------------------------

CRASH_SCRIPT = textwrap.dedent('''
    """Run the CLI, but os._exit() after a checkpoint's or a record's content is written and
    before it is renamed into place."""
    import os, sys
    from pathlib import Path
    import memsink_bench.storage as storage

    where = sys.argv[1]
    if where == "checkpoint":
        fsync_tree = storage._fsync_tree
        def crash(root):                        # called on the temp dir just before the rename
            fsync_tree(root)
            if Path(root).parent.parent.name == "checkpoints":
                os._exit(17)
        storage._fsync_tree = crash
    else:
        replace = os.replace
        def crash(source, target):
            if "records" in Path(target).parts:
                assert Path(source).stat().st_size > 100          # the content is there
                os._exit(17)
            return replace(source, target)
        os.replace = crash
    from memsink_bench.cli import main
    sys.exit(main(sys.argv[2:]))
''')


def test_crash_while_saving_a_checkpoint_or_writing_a_record_leaves_nothing_partial(tmp_path):
    from memsink_bench.checkpoints import list_checkpoints
    from memsink_bench.leaderboard import load_records

    workdir, results = tmp_path / "workdir", tmp_path / "results"
    script = tmp_path / "crash.py"
    script.write_text(CRASH_SCRIPT)
    argv = [*RUN, "--workdir", str(workdir), "--results", str(results)]

    def visible_checkpoints_are_complete():
        for directory in (workdir / "checkpoints" / "ts-canary").iterdir():
            if not directory.name.startswith("."):
                assert (directory / "manifest.json").is_file(), f"partial checkpoint {directory}"

    crashed = subprocess.run([sys.executable, str(script), "checkpoint", *argv], env=env(workdir),
                             capture_output=True, text=True, timeout=600)
    assert crashed.returncode == 17, crashed.stderr
    visible_checkpoints_are_complete()
    assert list_checkpoints(workdir) == [] and checkpoints(workdir) == []
    assert list((workdir / "checkpoints" / "ts-canary").glob(".tmp-standard-*/model.safetensors"))
    assert not results.exists() or not records(results)

    crashed = subprocess.run([sys.executable, str(script), "record", *argv], env=env(workdir),
                             capture_output=True, text=True, timeout=600)
    assert crashed.returncode == 17, crashed.stderr
    visible_checkpoints_are_complete()                      # the checkpoint was redone, completely
    assert {row["kind"] for row in list_checkpoints(workdir)} == {"standard", "standard-no-rep", "never-seen"}
    assert not list((workdir / "checkpoints" / "ts-canary").glob(".tmp-*"))   # leftovers removed on redo
    assert records(results) == [] and load_records(results) == []
    assert list((results / "records").glob("*/.tmp-*"))      # the crash really was mid-write
    for path in (results / "records").rglob("*.json"):
        json.loads(path.read_text())

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(argv) == 0                              # redoes the record
        [path] = records(results)
        assert json.loads(path.read_text())["points"]
        assert main(["leaderboard", "--results", str(results)]) == 0
    finally:
        torch.set_num_threads(threads)


# --- concurrency -----------------------------------------------------------------------------------

BARRIER_SCRIPT = textwrap.dedent('''
    """Import everything, report ready, wait for the go file, then run the CLI: the processes
    reach the cache at the same moment instead of seconds apart. Setting builds are reported."""
    import os, sys, time
    from pathlib import Path
    import memsink_bench.cli, memsink_bench.cli.run, memsink_bench.run, memsink_bench.train
    import memsink_bench.setting as setting_module
    import transformers, tokenizers, accelerate

    build = setting_module.build_setting
    def counted(*args, **kwargs):
        print(f"BUILDING SETTING in {os.getpid()}", file=sys.stderr, flush=True)
        time.sleep(3)        # hold the build lock long enough that the others surely queue on it
        return build(*args, **kwargs)
    setting_module.build_setting = counted
    ready, go = Path(sys.argv[1]), Path(sys.argv[2])
    ready.touch()
    while not go.exists():
        time.sleep(0.01)
    sys.exit(memsink_bench.cli.main(sys.argv[3:]))
''')


def run_together(tmp_path: Path, name: str, argvs: list[list[str]], workdir: Path) -> list[subprocess.CompletedProcess]:
    script = tmp_path / "barrier.py"
    script.write_text(BARRIER_SCRIPT)
    go = tmp_path / f"{name}-go"
    ready = [tmp_path / f"{name}-ready-{i}" for i in range(len(argvs))]
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(go), *argv], env=env(workdir),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r, argv in zip(ready, argvs)]
    polls = 0
    while not all(r.exists() for r in ready):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        polls += 1
        assert polls < 6_000                             # a bounded wait (~5 minutes of 50 ms polls)
        time.sleep(0.05)
    go.touch()
    done = []
    for proc, argv in zip(procs, argvs):
        out, err = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return done


def test_concurrent_runs_build_and_train_once_and_records_land_whole(tmp_path):
    """Four `run`s released at once on an empty workdir: the setting is built once and each
    checkpoint trained once (the others wait on the locks); then four seeds at once."""
    workdir = tmp_path / "workdir"

    def check_batch(done, results):
        assert [d.returncode for d in done] == [0] * 4, [d.stderr[-2000:] for d in done]
        names = sorted(p.name for p in (workdir / "checkpoints" / "ts-canary").iterdir())
        assert all(CHECKPOINT_NAME.fullmatch(n) for n in names) and len(names) == 3, names   # standard, no-rep, never-seen; no leftovers
        assert sorted(p.name for p in (workdir / "runs" / "ts-canary").iterdir()) == names
        assert len(list((workdir / "settings").iterdir())) == 1
        manifests = {n: json.loads((workdir / "checkpoints" / "ts-canary" / n / "manifest.json").read_text())
                     for n in names}
        written = [re.search(r"(?:wrote|reused the existing record) (\S+\.json)", d.stderr).group(1)
                   for d in done]
        loaded = [json.loads(Path(path).read_text()) for path in written]
        for record in loaded:                         # everyone saw the same, single training
            name = Path(record["checkpoint"]["path"]).name
            assert record["checkpoint"]["train_seconds"] == manifests[name]["train_seconds"]
            assert Path(record["reference"]["no_rep"]).name in names
            assert record["points"] and record["summary"]
        assert not list((results / "records").glob("*/.tmp-*"))
        return written, loaded

    results = tmp_path / "same-results"
    done = run_together(tmp_path, "same", [[*RUN, "--workdir", str(workdir), "--results", str(results)]] * 4,
                        workdir)
    written, loaded = check_batch(done, results)
    stderr = "".join(d.stderr for d in done)
    assert stderr.count("BUILDING SETTING") == 1, stderr                       # the setting: built once
    assert "waiting: another process is building setting ts-canary" in stderr, stderr
    assert "waiting: another process is training standard on ts-canary" in stderr, stderr
    assert len(set(written)) == 1 and records(results) == [Path(written[0])]   # same args, same record

    results = tmp_path / "seed-results"
    seeds = [[*RUN, "--workdir", str(workdir), "--results", str(results), "--seed", str(s)] for s in range(4)]
    written, loaded = check_batch(run_together(tmp_path, "seeds", seeds, workdir), results)
    assert len(set(written)) == 4 and records(results) == sorted(Path(w) for w in written)
    assert [r["seeds"]["method"] for r in loaded] == [0, 1, 2, 3]
    assert len({json.dumps(r["points"]) for r in loaded}) == 4


# --- determinism -----------------------------------------------------------------------------------

def _finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def test_same_command_gives_identical_metrics_and_seeds_change_random_controls(shared, tmp_path, capsys):
    results = tmp_path / "results"
    base = ["run", "--method", "random-neurons", *FAST, "--set", "sweep.ratios=[0.05,0.2]",
            "--workdir", str(shared), "--results", str(results)]
    assert main([*base, "--seed", "3"]) == 0
    [path] = records(results)
    first = json.loads(path.read_text())
    assert main([*base, "--seed", "3", "--force"]) == 0
    again = json.loads(path.read_text())
    assert "wrote" in capsys.readouterr().err
    assert first["created"] <= again["created"]
    for key in ("points", "before", "no_rep", "summary", "grid", "extras", "hyperparameters"):
        assert first[key] == again[key], key
    assert first["seeds"] == {"method": 3, "train": 0, "data": 0}

    assert main([*base, "--seed", "4"]) == 0
    [other] = [p for p in records(results) if p != path]
    different = json.loads(other.read_text())
    assert different["seeds"]["method"] == 4
    assert different["before"] == first["before"]
    assert different["extras"]["scores_top_per_layer"] != first["extras"]["scores_top_per_layer"]
    assert [p["repeated_loss"] for p in different["points"]] != [p["repeated_loss"] for p in first["points"]]
    for point in different["points"]:
        assert all(_finite(v) for v in point.values()) and point["forgetting"] is not None


def test_hard_concrete_is_reproducible(shared, tmp_path):
    results = tmp_path / "results"
    base = ["run", "--method", "hard-concrete", *FAST, "--set", "sweep.ratios=[0.1]", "--set", "method.steps=5",
            "--workdir", str(shared), "--results", str(results), "--seed", "1"]
    assert main(base) == 0
    [path] = records(results)
    first = json.loads(path.read_text())
    assert main([*base, "--force"]) == 0
    again = json.loads(path.read_text())
    assert first["points"] == again["points"] and first["extras"] == again["extras"]


# --- safety ----------------------------------------------------------------------------------------

def test_no_code_path_loads_a_pickle():
    """AST scan of the package: no pickle-family imports, every torch.load has weights_only=True,
    no allow_pickle=True, and models load with use_safetensors=True."""
    package = Path(memsink_bench.__file__).parent
    unsafe_modules = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}
    problems = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(package.parent)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                problems += [f"{where} imports {a.name}" for a in node.names if a.name.split(".")[0] in unsafe_modules]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in unsafe_modules:
                problems.append(f"{where} imports from {node.module}")
            elif isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                keywords = {k.arg: k.value for k in node.keywords}
                is_true = lambda name: isinstance(keywords.get(name), ast.Constant) and keywords[name].value is True
                if func == "torch.load" and not is_true("weights_only"):
                    problems.append(f"{where} torch.load without weights_only=True")
                if "allow_pickle" in keywords and not (isinstance(keywords["allow_pickle"], ast.Constant)
                                                       and keywords["allow_pickle"].value is False):
                    problems.append(f"{where} allow_pickle")
                if func.endswith(("read_pickle", "torch.jit.load")):
                    problems.append(f"{where} {func}")
                if (func.endswith(".from_pretrained") and re.search(r"(Model|LM)", func.split(".")[-2])
                        and not is_true("use_safetensors")):
                    problems.append(f"{where} {func} without use_safetensors=True")
    assert problems == []


class _Payload:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('unpickled')",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickles_in_checkpoints_and_snapshots_are_never_unpickled(shared, tmp_path, capsys):
    from memsink_bench.checkpoints import checkpoint_name
    from memsink_bench.config import load_config
    from memsink_bench.setting import get_setting
    from memsink_bench.train import train

    probe = tmp_path / "probe-marker"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists(), "the payload must be live for this test to mean anything"
    marker = tmp_path / "MARKER"
    evil = pickle.dumps(_Payload(marker))

    workdir = tmp_path / "workdir"
    shutil.copytree(shared, workdir)
    [standard] = checkpoints(workdir)
    for directory in (workdir / "checkpoints" / "ts-canary").iterdir():        # the reused cache
        for name in ("optimizer.pt", "pytorch_model.bin", "training_args.bin"):
            (directory / name).write_bytes(evil)
    given = tmp_path / "given-checkpoint"                                       # --checkpoint PATH
    shutil.copytree(standard, given)
    no_weights = tmp_path / "pickle-only-checkpoint"
    shutil.copytree(standard, no_weights)
    (no_weights / "model.safetensors").unlink()

    common = ["--workdir", str(workdir), "--results", str(tmp_path / "results")]
    assert main([*RUN, *common]) == 0
    assert main(["train", *FAST, "--kind", "standard", "--workdir", str(workdir)]) == 0
    assert main([*RUN, *common, "--checkpoint", str(given)]) == 0
    assert main([*RUN, *common, "--checkpoint", str(no_weights)]) == 2
    assert "lacks model.safetensors" in capsys.readouterr().err

    # an interrupted run's snapshot: `train --resume` reads its optimizer.pt (weights_only)
    config = load_config("ts-canary", "smoke", ["train.epochs=2"])
    setting = get_setting(config.setting, config.data, workdir)
    run_dir = workdir / "runs" / "ts-canary" / checkpoint_name("standard", config)
    train(setting, "standard", config, run_dir, stop_after=12, progress=False)
    (run_dir / "snapshot" / "optimizer.pt").write_bytes(evil)
    argv = ["train", *SMOKE, "--set", "train.epochs=2", "--kind", "standard", "--workdir", str(workdir)]
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "snapshot" in err and "without --resume" in err, err
    assert not marker.exists()
    assert main(argv) == 0                                  # starting over works
    assert not marker.exists()


def test_plugins_load_only_from_entry_points_or_an_explicit_path(shared, tmp_path, monkeypatch, capsys):
    from memsink_bench.methods import registry as registry_module

    marker = tmp_path / "IMPORTED"
    results = tmp_path / "results"
    (results / "records").mkdir(parents=True)
    body = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for directory in (tmp_path, results, results / "records"):
        for name in ("stray_method.py", "random_neurons.py", "memsink_bench_plugin.py"):
            (directory / name).write_text(body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(registry_module, "_REGISTRY", None)
    assert main(["ls", "methods", "--workdir", str(shared)]) == 0
    assert "stray_method" not in capsys.readouterr().out
    assert main([*RUN, "--workdir", str(shared), "--results", str(results)]) == 0
    assert main([*RUN, "--workdir", str(shared), "--results", str(results), "--method", "stray_method"]) == 2
    assert "unknown method 'stray_method'" in capsys.readouterr().err
    assert not marker.exists(), marker.read_text()
    # the explicit path is the one way in
    assert main([*RUN, "--workdir", str(shared), "--results", str(results), "--method", "stray_method.py"]) == 2
    assert marker.exists()


def test_names_cannot_escape_the_results_directory(shared, tmp_path, monkeypatch, capsys):
    plugin = tmp_path / "plugin_file.py"
    plugin.write_text(textwrap.dedent('''
        import torch
        from memsink_bench.methods.base import NeuronLocalizer
        from memsink_bench.models import mlp_shape

        class Evil(NeuronLocalizer):
            name = "../../evil"
            def score(self, model, context):
                return torch.rand(mlp_shape(model), generator=context.generator())
    '''))
    results = tmp_path / "a" / "b" / "results"
    before = {p for p in tmp_path.rglob("*")}
    base = ["run", *FAST, "--set", "sweep.ratios=[0.1]", "--workdir", str(shared), "--results", str(results)]
    assert main([*base, "--method", f"{plugin}:Evil"]) == 0
    [standard] = checkpoints(shared)
    monkeypatch.chdir(results.parent)
    sneaky = Path(os.path.relpath(standard))                 # a checkpoint label full of ../
    assert sneaky.parts[:2] == ("..", "..")
    assert main([*base, "--method", "random-neurons", "--checkpoint", str(sneaky)]) == 0
    created = {p for p in tmp_path.rglob("*")} - before
    outside = [p for p in created if p.is_file() and results not in p.parents]
    assert outside == []
    written = records(results)
    assert len(written) == 2 and all(p.parent.parent == results / "records" for p in written)
    assert not list(tmp_path.parent.glob("*evil*")) and not list(tmp_path.glob("*evil*"))
    # a task file whose setting name would climb out of the workdir and results is refused
    task = tmp_path / "task.yaml"
    task.write_text((Path(__file__).resolve().parents[2] / "tasks" / "ts-canary.yaml").read_text()
                    .replace("name: ts-canary", "name: ../../evil"))
    capsys.readouterr()
    assert main(["run", "--method", "random-neurons", "--setting", str(task), "--preset", "smoke", "--quiet",
                 "--workdir", str(shared), "--results", str(results)]) == 2
    assert "not a plain name" in capsys.readouterr().err
    assert not list(shared.parent.glob("*evil*")) and not list(results.parent.parent.glob("*evil*"))


# --- unwritable output -----------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["results-under-a-file", "workdir-under-a-file", "disk-full-run",
                                  "disk-full-train"])
def test_unwritable_output_fails_before_any_work(tmp_path, monkeypatch, capsys, case):
    workdir, results = tmp_path / "workdir", tmp_path / "results"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    if case == "results-under-a-file":
        results = blocker / "results"
    if case == "workdir-under-a-file":
        workdir = blocker / "workdir"
    if case.startswith("disk-full"):
        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(shutil, "disk_usage",
                            lambda path: usage._replace(free=4096))          # ~0 bytes free
    if case.endswith("train") or case == "workdir-under-a-file":
        argv = ["train", *FAST, "--kind", "standard", "--workdir", str(workdir)]
    else:
        argv = [*RUN, "--workdir", str(workdir), "--results", str(results)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.search(r"cannot write to|MB free under", err) and re.search(r"choose|free at least", err), err
    assert not (workdir / "checkpoints").exists() and not (workdir / "settings").exists()
    assert not records(results)


def test_a_disk_filling_up_mid_run_is_a_one_line_error(monkeypatch, capsys):
    import errno

    from memsink_bench.cli import ls

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/checkpoints/x/model.safetensors")

    monkeypatch.setattr(ls, "handle", full)
    assert main(["ls", "settings"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "disk is full" in err and "model.safetensors" in err and "--workdir" in err
