"""The CLI end to end at the smoke preset: run, plugins, leaderboard, and bad input."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from memsink_bench.cli import main
from memsink_bench.methods import registry as registry_module

SMOKE = ["--setting", "ts-canary", "--preset", "smoke", "--quiet"]


@pytest.fixture()
def cli(session_workdir, tmp_path, capsys):
    results = tmp_path / "results"

    def invoke(*args, results_dir: Path | None = results):
        argv = list(args)
        if args[0] in ("run", "train", "ls"):
            argv += ["--workdir", str(session_workdir)]
        if args[0] in ("run",) and results_dir is not None:
            argv += ["--results", str(results_dir)]
        code = main(argv)
        out, err = capsys.readouterr()
        return code, out, err

    invoke.results = results
    invoke.workdir = session_workdir
    return invoke


def _records(results: Path) -> list[Path]:
    return sorted((results / "records").glob("*/*.json"))


def test_run_writes_one_complete_record_and_reuses_it(cli):
    code, out, err = cli("run", "--method", "random-neurons", *SMOKE, "--set", "sweep.ratios=[0.05,0.2]")
    assert code == 0, err
    [path] = _records(cli.results)
    record = json.loads(path.read_text())
    assert [p["knob"] for p in record["points"]] == [0.05, 0.2]
    for key in ("hyperparameters", "corpus_hash", "setting_hash", "seeds", "versions", "git_commit",
                "timings", "directions", "summary", "before", "no_rep"):
        assert key in record
    assert record["directions"]["degradation"] == "lower" and record["directions"]["forgetting"] == "higher"
    # membership inference and sampled extraction per state, PrivLeak against the never-seen model
    assert set(record["before"]["mia_auroc"]) == {"loss", "zlib", "min_k", "min_k_plus_plus"}
    assert set(record["before"]["extraction"]) == {"rate@1", "rate@10", "rate@100", "mean_p_z"}
    assert record["directions"]["privleak"] == "closer to 0" and record["directions"]["mia_auroc"] == "lower"
    assert record["never_seen"]["mia_auroc"]["loss"] < record["before"]["mia_auroc"]["loss"]
    assert all(-1 <= p["privleak"] for p in record["points"])
    assert len(record["before"]["per_sequence"]["log_p_z"]) == len(record["before"]["per_sequence"]["repeated_loss"])
    assert "gap closed @0.05" in out
    mtime = path.stat().st_mtime_ns
    code, _, err = cli("run", "--method", "random-neurons", *SMOKE, "--set", "sweep.ratios=[0.05,0.2]")
    assert code == 0 and path.stat().st_mtime_ns == mtime
    assert f"reused the existing record {path}" in err and "--force recomputes it" in err


def test_training_time_method_runs_on_its_own_checkpoint(cli):
    code, out, err = cli("run", "--method", "memsinks", *SMOKE, "--set", "method.drop_grid=[1.0]")
    assert code == 0, err
    record = json.loads(_records(cli.results)[0].read_text())
    assert record["checkpoint"]["kind"] == "memsinks" and record["reference"]["before"] == "standard"
    assert "own_sinks_dropped_repeated_loss" in record["extras"]


def _write_plugin(directory: Path) -> None:
    package = directory / "toy_plugin"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent('''
        import torch
        from memsink_bench.methods.base import NeuronLocalizer
        from memsink_bench.models import mlp_shape

        class LastNeurons(NeuronLocalizer):
            name = "last-neurons"
            summary = "toy plugin: prefers high-index neurons"
            def __init__(self, power: float = 1.0):
                self.power = power
            def score(self, model, context):
                layers, d_mlp = mlp_shape(model)
                return torch.arange(d_mlp, dtype=torch.float32).pow(self.power).repeat(layers, 1)
    '''))
    (package / "broken.py").write_text("raise ImportError('this plugin is broken on purpose')\n")
    dist = directory / "toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[memsink_bench.methods]\nlast-neurons = toy_plugin:LastNeurons\nbroken-one = toy_plugin.broken:Nope\n")


@pytest.fixture()
def installed_plugin(tmp_path, monkeypatch):
    _write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_module, "_REGISTRY", None)
    yield
    registry_module._REGISTRY = None
    for name in [m for m in sys.modules if m.startswith("toy_plugin")]:
        del sys.modules[name]


def test_entry_point_plugin_is_listed_and_runs_while_a_broken_one_is_reported(cli, installed_plugin):
    code, out, _ = cli("ls", "methods", results_dir=None)
    assert code == 0
    assert "last-neurons" in out and "plugin toy-plugin" in out
    assert "broken-one" in out and "broken on purpose" in out
    assert "ig" in out                                              # built-ins still there
    code, out, err = cli("run", "--method", "last-neurons", *SMOKE, "--set", "sweep.ratios=[0.1]")
    assert code == 0, err
    record = json.loads(_records(cli.results)[0].read_text())
    assert record["method"] == "last-neurons" and record["method_source"] == "plugin toy-plugin"
    code, _, err = cli("run", "--method", "broken-one", *SMOKE)
    assert code == 2 and "broken on purpose" in err


def test_file_plugin_runs_through_the_cli(cli, tmp_path):
    path = tmp_path / "my_method.py"
    path.write_text(textwrap.dedent('''
        import copy
        from memsink_bench.methods.base import ModelEditor

        class ShrinkEmbeddings(ModelEditor):
            name = "shrink-embeddings"
            summary = "toy editor: scales the token embeddings"
            knob = "strength"
            def __init__(self, factor: float = 0.5):
                self.factor = factor
            def edit(self, model, context, knob):
                edited = copy.deepcopy(model)
                edited.get_input_embeddings().weight.data.mul_(1 - self.factor * knob / 10)
                return edited
    '''))
    code, out, err = cli("run", "--method", f"{path}:ShrinkEmbeddings", *SMOKE, "--set", "sweep.steps=[1,2]")
    assert code == 0, err
    record = json.loads(_records(cli.results)[0].read_text())
    assert record["method_source"].startswith("file ") and len(record["points"]) == 2


def test_leaderboard_formats(cli):
    assert cli("run", "--method", "random-neurons", *SMOKE, "--set", "sweep.ratios=[0.1]")[0] == 0
    for fmt, marker in [("md", "| method"), ("csv", "method,checkpoint"), ("latex", "\\begin{tabular}"),
                        ("html", "<table")]:
        code, out, err = cli("leaderboard", "--results", str(cli.results), "--format", fmt, results_dir=None)
        assert code == 0, err
        assert marker in out and "random-neurons" in out


WRONG_SHAPE = '''
import torch
from memsink_bench.methods.base import NeuronLocalizer
class Bad(NeuronLocalizer):
    name = "bad"
    def score(self, model, context):
        return {body}
'''


@pytest.mark.parametrize("argv, message", [
    (["run", "--method", "igg", *SMOKE], "did you mean 'ig'"),
    (["run", "--method", "ig", "--setting", "ts-canari", "--preset", "smoke"], "did you mean 'ts-canary'"),
    (["run", "--method", "ig", "--setting", "ts-canary", "--preset", "gpu"], "unknown preset 'gpu'"),
    (["run", "--method", "ig", *SMOKE, "--set", "sweep.ratios=[0.5,1.5]"], "fractions in (0, 1)"),
    (["run", "--method", "ig", *SMOKE, "--set", "sweep.ratios=[0]"], "fractions in (0, 1)"),
    (["run", "--method", "ig", *SMOKE, "--set", "method.stepz=3"], "did you mean 'steps'"),
    (["run", "--method", "ig", *SMOKE, "--set", "train.lrr=1"], "unknown key 'train.lrr'"),
    (["run", "--method", "ig", *SMOKE, "--set", "trian.lr=1"], "unknown --set section 'trian'"),
    (["run", "--method", "ig", *SMOKE, "--set", "train.lr"], "malformed --set"),
    (["run", "--method", "ig", *SMOKE, "--checkpoint", "standart"], "unknown checkpoint 'standart'"),
    (["run", "--method", "memsinks", *SMOKE, "--checkpoint", "standard"], "runs only on its own"),
    (["train", *SMOKE, "--kind", "memsink"], "did you mean 'memsinks'"),
    (["train", *SMOKE, "--kind", "standard", "--set", "data.id_noise=2"], "data.id_noise=2"),
    (["train", *SMOKE, "--kind", "standard", "--set", "memsinks.mask_fn=md5"], "unknown memsinks.mask_fn"),
    (["run", "--method", "missing.py:Cls", *SMOKE], "does not exist"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(cli, argv, message):
    code, out, err = cli(*argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (cli.results / "records").exists()


@pytest.mark.parametrize("body, message", [
    ("torch.zeros(3, 3)", "shape"),
    ("torch.full(__import__('memsink_bench.models', fromlist=['x']).mlp_shape(model), float('nan'))", "NaN"),
    ("[1, 2]", "not a tensor"),
])
def test_plugin_with_wrong_output_is_refused(cli, tmp_path, body, message):
    path = tmp_path / "bad.py"
    path.write_text(WRONG_SHAPE.format(body=body))
    code, _, err = cli("run", "--method", f"{path}:Bad", *SMOKE)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (cli.results / "records").exists()


def test_malformed_task_yaml(cli, tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("name: x\npresets: {smoke: [unclosed\n")
    code, _, err = cli("train", "--setting", str(path), "--kind", "standard", "--preset", "smoke")
    assert code == 2 and "malformed YAML" in err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "memsink-bench run --method ig --setting ts-canary" in capsys.readouterr().out


def test_the_example_plugin_runs_through_the_cli(cli, monkeypatch):
    """CI installs examples/example-plugin; this runs it the way the README says."""
    pytest.importorskip("memsink_bench_example")
    monkeypatch.setattr(registry_module, "_REGISTRY", None)
    code, out, _ = cli("ls", "methods", results_dir=None)
    assert "activation-contrast" in out and "plugin memsink-bench-example-plugin" in out
    code, out, err = cli("run", "--method", "activation-contrast", *SMOKE, "--set", "sweep.ratios=[0.05]")
    assert code == 0, err
    assert json.loads(_records(cli.results)[0].read_text())["method"] == "activation-contrast"


def test_memsinks_sweep_figure_and_report_rebuild(cli, tmp_path):
    results = tmp_path / "sweep-results"
    for p in ("0.1", "0.3"):
        assert cli("train", *SMOKE, "--kind", "memsinks", "--set", f"memsinks.sink_fraction={p}")[0] == 0
    code, out, err = cli("plot", "sweep", *SMOKE, "--results", str(results), "--values", "0.1,0.3,0.5",
                         "--workdir", str(cli.workdir), results_dir=None)
    assert code == 0, err
    stored = json.loads((results / "analyses" / "ts-canary-smoke" / "sweep-memsinks.sink_fraction.json").read_text())
    assert [pair[0] for pair in stored["pairs"]] == [0.1, 0.3]             # 0.5 was never trained
    assert (results / "figures" / "sweep-memsinks.sink_fraction_ts-canary-smoke.png").is_file()
    assert main(["report", "--results", str(results)]) == 0
    assert "sweep over memsinks.sink_fraction" in (results / "index.html").read_text()


def test_dynamics_figure_from_traced_training(cli, tmp_path):
    results = tmp_path / "dynamics-results"
    traced = ["--set", "data.n_repeated=1", "--set", "train.trace_repeated=true"]
    for kind in ("standard", "memsinks"):
        assert cli("train", *SMOKE, "--kind", kind, *traced)[0] == 0
    code, _, err = cli("plot", "dynamics", *SMOKE, "--set", "data.n_repeated=1", "--results", str(results),
                       "--workdir", str(cli.workdir), results_dir=None)
    assert code == 0, err
    stored = json.loads((results / "analyses" / "ts-canary-smoke" / "dynamics.json").read_text())
    assert set(stored["traces"]) == {"standard", "memsinks"}
    assert len(stored["traces"]["standard"]) == 3 * 8                          # epochs x repetitions
    assert (results / "figures" / "dynamics_ts-canary-smoke.png").is_file()
