"""Sweep files -> jobs, without running any: expansion, output paths, dependencies, bad input, and
the driver's retry / failure logic on an in-memory engine."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from memsink_bench.checkpoints import checkpoint_dir
from memsink_bench.cli import build_parser, main
from memsink_bench.config import load_config, parse_value
from memsink_bench.errors import UserError
from memsink_bench.run import plan_run
from memsink_bench.sweep.engines import RunState, drive, split_cores
from memsink_bench.sweep.spec import format_value, load_plan
from memsink_bench.sweep.worker import error_line

REPO = Path(__file__).resolve().parents[2]

GRID = """
name: grid
defaults: {presets: [smoke]}
runs:
  - settings: [ts-canary, ts-repetition]
    methods: [ig, memsinks]
    set: {train.epochs: 1}
    grid: {data.id_noise: [0.0, 0.1]}
    seeds: [0, 1]
  - settings: [ts-canary]
    methods: [sparse-ft]
    set: {train.epochs: 1, sweep.steps: [1, 5]}
    grid: {method.lr: [1.0e-4, 1.0e-3]}
"""


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture()
def grid_plan(tmp_path):
    return load_plan(write(tmp_path, GRID), tmp_path / "results", tmp_path / "work")


def test_expansion_counts_order_and_shared_trainings(grid_plan):
    jobs = grid_plan.jobs
    runs = [job for job in jobs if job.action == "run"]
    trainings = [job for job in jobs if job.action == "train"]
    # 2 settings x 2 noise x 2 seeds x 2 methods, plus 2 lr of sparse-ft
    assert len(runs) == 18
    # per (setting, noise, seed): standard, standard-no-rep, never-seen, memsinks; sparse-ft reuses
    # seed-0 noise-0 ones
    assert len(trainings) == 2 * 2 * 2 * 4
    assert [job.action for job in jobs] == ["train"] * 32 + ["run"] * 18          # trainings first
    assert len({job.name for job in jobs}) == len(jobs) == len({job.output for job in jobs})
    names = {job.name for job in trainings}
    assert all(set(job.needs) <= names for job in runs)


def test_needs_follow_the_method(grid_plan):
    by_name = grid_plan.by_name()
    kinds = {job.method: sorted(by_name[need].kind for need in job.needs)
             for job in grid_plan.jobs if job.action == "run"}
    assert kinds["ig"] == ["never-seen", "standard", "standard-no-rep"]
    assert kinds["memsinks"] == ["memsinks", "never-seen", "standard", "standard-no-rep"]   # scored against standard
    assert kinds["sparse-ft"] == ["never-seen", "standard", "standard-no-rep"]


def test_outputs_are_the_paths_the_commands_write(grid_plan, tmp_path):
    results, workdir = (tmp_path / "results").resolve(), (tmp_path / "work").resolve()
    job = next(j for j in grid_plan.jobs if j.method == "ig" and j.seed == 1 and "data.id_noise=0.1" in j.overrides
               and j.setting == "ts-repetition")
    config = load_config("ts-repetition", "smoke", ["train.epochs=1", "data.id_noise=0.1", "train.seed=1"])
    assert job.output == plan_run("ig", config, results, None, [], 1).path
    assert job.seed == 1 and "train.seed=1" in job.overrides                # seeds are paired
    train = grid_plan.by_name()[job.needs[0]]
    assert train.output == checkpoint_dir(workdir, train.kind, config) / "manifest.json"


def test_job_argv_parses_and_resolves_to_the_same_config(grid_plan, tmp_path):
    job = next(j for j in grid_plan.jobs if j.method == "sparse-ft" and "method.lr=0.001" in j.method_overrides)
    argv = job.argv(tmp_path / "work", tmp_path / "results", threads=3)
    args = build_parser().parse_args(argv)
    assert (args.command, args.method, args.seed) == ("run", "sparse-ft", 0)
    config_sets = [s for s in args.overrides if s.split(".")[0] not in ("method", "sweep")]
    assert "train.threads=3" in config_sets
    plan = plan_run("sparse-ft", load_config("ts-canary", "smoke", config_sets), (tmp_path / "results").resolve(),
                    None, [s for s in args.overrides if s not in config_sets], 0)
    assert plan.path == job.output                    # threads are in no key
    assert plan.grid == [1, 5] and plan.method.hyperparameters()["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize("value", [1e-4, 0.001, 100, 2000, 0.5, True, False, "counter", [1, 5, 10], [0.05, 0.2]])
def test_values_survive_the_trip_through_set(value):
    assert parse_value(format_value(value)) == value


def test_log_with_changes_no_output(tmp_path):
    path = write(tmp_path, GRID)
    plain = load_plan(path, tmp_path / "results", tmp_path / "work")
    tracked = load_plan(path, tmp_path / "results", tmp_path / "work", ["train.log_with=tensorboard"])
    assert [job.output for job in plain.jobs] == [job.output for job in tracked.jobs]
    assert {job.log_with for job in tracked.jobs} == {"tensorboard"}
    assert all("train.log_with=tensorboard" in job.overrides for job in tracked.jobs)


def test_trainings_only_runs_need_are_skipped_once_their_records_exist(tmp_path):
    path = write(tmp_path, """
        defaults: {settings: [ts-canary], presets: [smoke]}
        trainings: [{kinds: [memsinks]}]
        runs: [{methods: [random-neurons], set: {sweep.ratios: [0.1]}}]
        """)
    plan = load_plan(path, tmp_path / "results", tmp_path / "work")
    assert [(job.action, job.kind) for job in plan.missing()] == [
        ("train", "memsinks"), ("train", "standard"), ("train", "standard-no-rep"), ("train", "never-seen"),
        ("run", None)]
    [run] = [job for job in plan.jobs if job.action == "run"]
    run.output.parent.mkdir(parents=True)
    run.output.write_text("{}")
    assert [(job.action, job.kind) for job in plan.missing()] == [("train", "memsinks")]    # listed: still wanted
    assert plan.counts()["train"] == {"done": 0, "missing": 1, "unneeded": 3, "total": 4}


def test_reproduction_sweep_marks_every_committed_record_done(tmp_path):
    """sweeps/reproduction.yaml is the loop that made results/: it plans exactly the committed records."""
    results = REPO / "results"
    plan = load_plan(REPO / "sweeps" / "reproduction.yaml", results, tmp_path / "work")
    committed = {path.resolve() for path in (results / "records").glob("*/*.json")}
    planned = {job.output for job in plan.jobs if job.action == "run"}
    assert len(committed) == 134
    assert planned == committed
    analyses = [job for job in plan.jobs if job.action == "analyze"]
    assert len(analyses) == 8 and all(job.done for job in analyses)
    # 24 main (3 seeds x 2 settings x 4 kinds), 6 never-seen (3 seeds x 2 settings), 3 p, 2 noise, 2 dynamics
    assert sum(job.action == "train" for job in plan.jobs) == 37


def test_forget_size_sweep_plans_exactly_its_committed_records(tmp_path):
    """results/forget-size is what sweeps/forget-size.yaml makes: 3 methods x 3 forget-set sizes x 3 seeds."""
    results = REPO / "results" / "forget-size"
    plan = load_plan(REPO / "sweeps" / "forget-size.yaml", results, tmp_path / "work")
    committed = {path.resolve() for path in (results / "records").glob("*/*.json")}
    assert len(committed) == 27
    assert {job.output for job in plan.jobs if job.action == "run"} == committed


def test_protocol_sweep_plans_exactly_the_committed_protocol_records(tmp_path):
    """results/protocol is what sweeps/protocol.yaml makes, both stages complete: it plans exactly the committed records.

    The evaluation stage is planned from the committed selection records, so equality means every selection
    run is there, every row's chosen configuration was run on all five evaluation seeds, and no record is
    hand-made or from a stale configuration."""
    results = REPO / "results" / "protocol"
    plan = load_plan(REPO / "sweeps" / "protocol.yaml", results, tmp_path / "work")
    committed = {path.resolve() for path in (results / "records").glob("*/*.json")}
    planned = {job.output for job in plan.jobs if job.action == "run"}
    assert planned == committed
    rows: dict[tuple, set[int]] = {}
    for job in plan.jobs:
        if job.action == "run" and job.seed in range(5):
            rows.setdefault((job.setting_name, job.method, job.checkpoint), set()).add(job.seed)
    assert len(rows) == 2 * 11  # a setting's 9 built-in methods, and ig and random-neurons on its MemSinks checkpoint
    assert all(seeds == {0, 1, 2, 3, 4} for seeds in rows.values()), rows


def test_scaling_sweep_plans_every_committed_scaling_record(tmp_path):
    """results/scaling is sweeps/scaling.yaml's, committed as it runs (a resumable sweep spanning sessions):
    every committed record is one the sweep plans, and its cpu-preset rows are the scoring protocol's
    evaluation records of the same configurations, copied unchanged, so the sweep does not rerun them."""
    results = REPO / "results" / "scaling"
    plan = load_plan(REPO / "sweeps" / "scaling.yaml", results, tmp_path / "work")
    committed = {path.resolve() for path in (results / "records").glob("*/*.json")}
    planned = {job.output for job in plan.jobs if job.action == "run"}
    assert committed <= planned, committed - planned
    cpu = sorted((results / "records" / "ts-repetition-cpu").glob("*.json"))
    assert len(cpu) == 9  # co-unlearn, ig and memsinks at seeds 0-2
    for path in cpu:
        assert path.read_bytes() == (REPO / "results" / "protocol" / "records" / "ts-repetition-cpu" / path.name).read_bytes()
    # the rare-token head analysis at the largest size is the sweep's too
    analyses = {path.resolve() for path in (results / "analyses").glob("*/*/*.json")}
    assert analyses <= {job.output for job in plan.jobs if job.action == "analyze"}, analyses


def test_prose_scaling_sweep_plans_every_committed_prose_record(tmp_path):
    """results/scaling/prose is sweeps/scaling-prose.yaml's: every committed record is one it plans, so a
    resumed sweep skips them and no record of another configuration or corpus is pooled into the ladder."""
    results = REPO / "results" / "scaling" / "prose"
    plan = load_plan(REPO / "sweeps" / "scaling-prose.yaml", results, tmp_path / "work")
    committed = {path.resolve() for path in (results / "records").glob("*/*.json")}
    planned = {job.output for job in plan.jobs if job.action == "run"}
    assert committed, "results/scaling/prose has no records"
    assert committed <= planned, committed - planned


def test_smoke_sweep_has_enough_jobs_for_the_benchmark(tmp_path):
    plan = load_plan(REPO / "sweeps" / "smoke.yaml", tmp_path / "results", tmp_path / "work")
    assert len(plan.jobs) >= 8
    assert {job.preset for job in plan.jobs} == {"smoke"}


# --- bad input: one line, exit 2 -------------------------------------------------------------

BAD = [
    ("runz: []", "unknown key 'runz'", "did you mean 'runs'"),
    ("runs: [{methods: [ig], settings: [ts-canary], seed: [1]}]", "unknown key 'seed'", "did you mean 'seeds'"),
    ("runs: [{methods: [ig], settings: [ts-canary], presets: [smoke], set: {train.lrr: 1}}]",
     "runs[0]: unknown key 'train.lrr'", "train.lr"),
    ("runs: [{methods: [igg], settings: [ts-canary]}]", "unknown method 'igg'", "did you mean 'ig'"),
    ("runs: [{methods: [ig], settings: [ts-canary], grid: {method.steps: 20}}]", "must be a non-empty list", "set:"),
    ("runs: [{methods: [ig], settings: [ts-canary], set: {train.threads: 2}}]", "set by the engine", "--threads"),
    ("runs: [{methods: [all], settings: [ts-canary], set: {method.lr: 1}}]", "methods: all", "by name"),
    ("trainings: [{kinds: [standrd], settings: [ts-canary]}]", "unknown checkpoint kind 'standrd'", "standard"),
    ("analyses: [{analyses: [rare-tokens], settings: [ts-canary], grid: {train.seed: [0, 1]}}]",
     "two configs write the same analysis", "give one config"),
    ("runs: [{methods: [ig]}]", "settings must be a name", "e.g."),
    ("runs: [{methods: [ig], settings: [ts-canary]}]\nengine: {wrkers: 2}", "unknown key 'wrkers'", "workers"),
    ("runs: [{methods: [ig], settings: [ts-canary]}]\ncollect: [train --setting ts-canary]", "is not one of",
     "put them in their groups"),
    ("runs: [{methods: [ig], settings: [ts-canary]}]\ncollect: [plot nonsense]", "collect[0]", "fix the command"),
    ("runs: [{methods: [ig], settings: ts-canary", "malformed YAML", "fix the YAML"),
    ("name: test", "has no jobs", "runs:"),
    ("runs: [{methods: [ig], settings: [ts-canary], seeds: [0], seed_fields: [data.sed]}]",
     "seed_fields 'data.sed' is not a seed field", "did you mean 'data.seed'"),
    ("runs: [{methods: [ig], settings: [ts-canary], seeds: [0], seed_fields: [train.seed, data.seed], "
     "set: {data.seed: 3}}]", "data.seed is given by `seeds`", "drop it from set/grid"),
]


@pytest.mark.parametrize("text, problem, fix", BAD, ids=[b[1] for b in BAD])
def test_bad_sweep_files_are_one_line_errors(tmp_path, capsys, text, problem, fix):
    path = write(tmp_path, text)
    code = main(["sweep", "plan", str(path), "--workdir", str(tmp_path / "work"), "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("memsink-bench: error:")
    assert problem in err and fix in err


def _sweep(tmp_path) -> list[str]:
    path = write(tmp_path, "runs: [{methods: [ig], settings: [ts-canary], presets: [smoke]}]")
    return [str(path), "--workdir", str(tmp_path / "work"), "--results", str(tmp_path / "r")]


@pytest.mark.parametrize("extra, problem, fix", [
    (["--engine", "rey"], "unknown engine 'rey'", "did you mean 'ray'"),
    (["--set", "train.lr=1e-3"], "would change what the sweep computes", "train.log_with"),
    (["--set", "train.log_with=tensorbord"], "unknown tracker", "did you mean 'tensorboard'"),
    (["--workers", "0"], "workers=0 is not valid", ">= 1"),
])
def test_bad_run_flags_are_one_line_errors(tmp_path, capsys, extra, problem, fix):
    code = main(["sweep", "run", *_sweep(tmp_path), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("memsink-bench: error:") and problem in err[-1] and fix in err[-1]
    assert not (tmp_path / "r").exists()               # nothing ran


def test_missing_sweep_file(tmp_path, capsys):
    assert main(["sweep", "status", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("engine, module, extra", [("ray", "ray", "memsink-bench[ray]"),
                                                   ("slurm", "submitit", "memsink-bench[slurm]")])
def test_missing_extra_names_it(tmp_path, capsys, monkeypatch, engine, module, extra):
    monkeypatch.setitem(__import__("sys").modules, module, None)          # `import module` raises ImportError
    code = main(["sweep", "run", *_sweep(tmp_path), "--engine", engine])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and extra in err[-1] and err[-1].startswith("memsink-bench: error:")


def test_missing_tracker_package_names_the_extra(tmp_path, capsys, monkeypatch):
    from memsink_bench import tracking

    monkeypatch.setitem(tracking.PACKAGES, "tensorboard", "tensorboard_that_is_not_installed")
    code = main(["sweep", "run", *_sweep(tmp_path), "--set", "train.log_with=tensorboard"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "memsink-bench[tensorboard]" in err[-1]


def test_no_sbatch_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))           # no sbatch anywhere
    code = main(["sweep", "run", *_sweep(tmp_path), "--engine", "slurm"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "sbatch is not on PATH" in err[-1] and "--slurm-cluster local" in err[-1]


def test_slurm_dry_run_prints_what_it_would_submit(tmp_path, capsys):
    code = main(["sweep", "run", *_sweep(tmp_path), "--engine", "slurm", "--partition", "gpu", "--time", "30",
                 "--gpus", "1", "--array-parallelism", "4", "--threads", "2", "--dry-run"])
    captured = capsys.readouterr()
    assert code == 0
    for text in ("slurm_partition=gpu", "timeout_min=30", "gpus_per_node=1", "slurm_array_parallelism=4",
                 "cpus_per_task=2"):
        assert text in captured.err
    commands = [line for line in captured.out.splitlines() if line.strip().startswith("memsink-bench ")]
    assert len(commands) == 4 and "--set train.threads=2" in commands[0]      # 3 trainings, then the run
    assert not (tmp_path / "work" / "sweeps").exists()


# --- the pieces the engines share ------------------------------------------------------------

@pytest.mark.parametrize("workers, threads, cores, expected", [
    (None, None, 2, (2, 1)), (1, None, 2, (1, 2)), (None, 2, 4, (2, 2)), (3, None, 2, (3, 1)), (2, 2, 8, (2, 2))])
def test_workers_times_threads_fill_the_cores(workers, threads, cores, expected):
    assert split_cores(workers, threads, cores) == expected


@pytest.mark.parametrize("tail, code, expected", [
    ("memsink-bench: error: unknown method 'x'; did you mean 'ig'?\n", 2, "error: unknown method 'x'; did you mean 'ig'?"),
    ("Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: planted failure\n", 1,
     "RuntimeError: planted failure"),
    ("Traceback (most recent call last):\nmemsink_bench.record.RecordError: torn\n", 1, "memsink_bench.record.RecordError: torn"),
    ("memsink-bench: interrupted; rerun with --resume to continue training\n", 130, "interrupted"),
    ("step 3\n", -9, "killed by signal SIGKILL"),
    ("some output\n", 3, "exit code 3: some output"),
])
def test_error_line_of_a_job_log(tmp_path, tail, code, expected):
    log = tmp_path / "job.log"
    log.write_text("== memsink-bench sweep job r1 attempt 1 on host at t\ncommand: memsink-bench run\n"
                   "memsink-bench: error: an earlier attempt's error\n== exit code 2 after 1.0 s\n"
                   "== memsink-bench sweep job r1 attempt 2 on host at t\ncommand: memsink-bench run\n" + tail)
    assert error_line(log, code) == expected


class ScriptedEngine:
    """An engine whose jobs finish at once with outcomes scripted per job name (drive's logic only)."""

    poll_seconds = None

    def __init__(self, failures: dict[str, int]):
        self.failures, self.submitted, self.pending = dict(failures), [], []

    def submit(self, tasks):
        self.submitted.append([task["name"] for task in tasks])
        handles = [object() for _ in tasks]
        self.pending += list(zip(handles, tasks))
        return handles

    def wait(self, handles, timeout):
        out = []
        for handle, task in self.pending:
            left = self.failures.get(task["name"], 0)
            self.failures[task["name"]] = left - 1
            ok = left <= 0
            out.append((handle, {"name": task["name"], "ok": ok, "seconds": 1.0, "log": f"/logs/{task['name']}.log",
                                 "error": None if ok else f"RuntimeError: {task['name']} failed"}))
        self.pending = []
        return out

    def cancel(self, handles):
        pass


def test_driver_retries_reports_and_skips_dependents(grid_plan, tmp_path):
    jobs = grid_plan.jobs
    trainings = [job for job in jobs if job.action == "train"]
    broken = trainings[0]                                 # always fails: its runs must not start
    flaky = trainings[1]                                  # fails once, then succeeds
    engine = ScriptedEngine({broken.name: 99, flaky.name: 1})
    tasks = {job.name: {"name": job.name} for job in jobs}
    state = drive(engine, jobs, tasks, retries=2, state=RunState(tmp_path / "state.json", "r1", "scripted", len(jobs)),
                  progress=False)
    dependents = {job.name for job in jobs if broken.name in job.needs}
    assert dependents and set(state.blocked) == dependents
    assert state.failed == {broken.name: {"error": f"RuntimeError: {broken.name} failed",
                                          "log": f"/logs/{broken.name}.log", "attempts": 3}}
    assert state.retried == {flaky.name: 1}
    assert len(state.succeeded) == len(jobs) - 1 - len(dependents)
    assert set(engine.submitted[0]) == {job.name for job in trainings}      # first wave: every training
    order = [name for batch in engine.submitted for name in batch]
    for job in jobs:
        if job.action == "run" and job.name not in dependents:
            assert all(order.index(need) < order.index(job.name) for need in job.needs)
    stored = json.loads((tmp_path / "state.json").read_text())
    assert stored["status"] == "finished" and stored["failed"] == state.failed


def test_driver_with_few_slots_takes_ready_runs_before_more_trainings(grid_plan, tmp_path):
    """The local engine's order: a sweep stopped half-way keeps whole records, not bare checkpoints."""
    jobs = grid_plan.jobs
    engine = ScriptedEngine({})
    engine.slots = 2                                      # ScriptedEngine finishes a batch before the next
    drive(engine, jobs, {job.name: {"name": job.name} for job in jobs}, retries=0,
          state=RunState(tmp_path / "state.json", "r1", "scripted", len(jobs)), progress=False)
    by_name = {job.name: job for job in jobs}
    assert all(len(batch) <= 2 for batch in engine.submitted)
    assert sorted(name for batch in engine.submitted for name in batch) == sorted(by_name)
    for k, batch in enumerate(engine.submitted):
        done = {name for earlier in engine.submitted[:k] for name in earlier}
        later = {name for after in engine.submitted[k + 1:] for name in after}
        if any(by_name[name].action == "train" for name in batch):
            runnable = [name for name in later if by_name[name].action == "run" and set(by_name[name].needs) <= done]
            assert not runnable, f"batch {k} trains while {runnable} could run"
    order = [name for batch in engine.submitted for name in batch]
    first_run = next(i for i, name in enumerate(order) if by_name[name].action == "run")
    last_training = max(i for i, name in enumerate(order) if by_name[name].action == "train")
    assert first_run < last_training


def test_user_error_carries_location(tmp_path):
    path = write(tmp_path, "runs: [{methods: [ig], settings: [ts-canary], presets: [tiny]}]")
    with pytest.raises(UserError, match=r"runs\[0\]: unknown preset 'tiny'"):
        load_plan(path, tmp_path / "r", tmp_path / "w")


def test_driver_does_not_rerun_a_job_another_process_finished(grid_plan, tmp_path):
    jobs = grid_plan.jobs
    made_elsewhere = next(job for job in jobs if job.action == "run")
    made_elsewhere.output.parent.mkdir(parents=True, exist_ok=True)
    made_elsewhere.output.write_text("{}")
    engine = ScriptedEngine({})
    state = drive(engine, jobs, {job.name: {"name": job.name} for job in jobs}, retries=0,
                  state=RunState(tmp_path / "state.json", "r1", "scripted", len(jobs)), progress=False)
    submitted = [name for batch in engine.submitted for name in batch]
    assert made_elsewhere.name not in submitted and made_elsewhere.name in state.succeeded
    assert sorted(submitted) == sorted(job.name for job in jobs if job is not made_elsewhere)


def test_defaults_set_merges_with_a_groups_set(tmp_path):
    path = write(tmp_path, """
        defaults: {settings: [ts-canary], presets: [smoke], set: {train.epochs: 1, train.lr: 0.01}}
        runs: [{methods: [random-neurons], settings: [ts-repetition], set: {train.lr: 0.001, sweep.ratios: [0.1]}}]
        """)
    plan = load_plan(path, tmp_path / "r", tmp_path / "w")
    [run] = [job for job in plan.jobs if job.action == "run"]
    assert run.setting == "ts-repetition"                             # replaced
    assert run.overrides == ("train.epochs=1", "train.lr=0.001")      # merged, the group's value wins
    assert run.method_overrides == ("sweep.ratios=[0.1]",)


def test_seed_fields_give_every_seed_its_own_data_seed(tmp_path):
    path = write(tmp_path, """
        defaults: {settings: [ts-canary], presets: [smoke]}
        runs: [{methods: [random-neurons], seeds: [3, 4], seed_fields: [train.seed, data.seed]}]
        """)
    plan = load_plan(path, tmp_path / "r", tmp_path / "w")
    runs = [job for job in plan.jobs if job.action == "run"]
    assert sorted(job.overrides for job in runs) == [("train.seed=3", "data.seed=3"), ("train.seed=4", "data.seed=4")]
    assert sorted(job.seed for job in runs) == [3, 4]
    trainings = [job for job in plan.jobs if job.action == "train"]
    assert {job.overrides for job in trainings} == {("train.seed=3", "data.seed=3"), ("train.seed=4", "data.seed=4")}


def test_tuning_expands_each_methods_declared_grid(tmp_path):
    path = write(tmp_path, """
        defaults: {settings: [ts-canary], presets: [smoke]}
        runs: [{methods: [co-unlearn, memsinks], tuning: true, seeds: [100]}]
        """)
    plan = load_plan(path, tmp_path / "r", tmp_path / "w")
    runs = [job for job in plan.jobs if job.action == "run"]
    co = sorted(job.method_overrides for job in runs if job.method == "co-unlearn")
    assert len(co) == 6 and ("method.lr=0.001", "method.nll_weight=1.0") in co
    memsinks = sorted(job.overrides for job in runs if job.method == "memsinks")
    assert len(memsinks) == 6 and ("memsinks.shared_fraction=0.5", "memsinks.sink_fraction=0.1",
                                   "train.seed=100") in memsinks
    trained = {job.overrides for job in plan.jobs if job.action == "train" and job.kind == "memsinks"}
    assert len(trained) == 6                                              # each configuration is a training


def test_every_methods_tuning_grid_has_at_most_six_configurations():
    import itertools

    from memsink_bench.methods.registry import BUILTINS
    from memsink_bench.sweep.spec import tuning_grid

    for method in BUILTINS:
        grid = tuning_grid(method, "test")
        configurations = len(list(itertools.product(*grid.values())))
        assert configurations <= 6, (method, configurations)


def test_tuning_selected_plans_the_chosen_configuration_once_the_selection_runs_exist(tmp_path):
    from tests.scoring.test_plots_report import make_record

    results = tmp_path / "r"
    results.mkdir()
    (results / "protocol.yaml").write_text("selection_seeds: [100, 101]\n")
    path = write(tmp_path, """
        defaults: {settings: [ts-canary], presets: [smoke], seed_fields: [train.seed, data.seed]}
        runs: [{methods: [ig], tuning: selected, seeds: [0, 1, 2]}]
        """)
    plan = load_plan(path, results, tmp_path / "w")
    selection = [job for job in plan.jobs if job.action == "run"]
    assert len(selection) == 4 and {job.seed for job in selection} == {100, 101}      # 2 configurations x 2 seeds
    assert len(plan.waiting) == 1 and "waits for 4 selection runs" in plan.waiting[0]
    for job in selection:                        # steps=20 is the better configuration on the selection seeds
        gap = 0.4 if "method.steps=20" in job.method_overrides else 0.1
        record = make_record("ig", "localizer", "standard", [gap * 4], [0.01])
        job.output.parent.mkdir(parents=True, exist_ok=True)
        job.output.write_text(json.dumps(record.to_dict()))
    again = load_plan(path, results, tmp_path / "w")
    assert not again.waiting
    evaluation = [job for job in again.jobs if job.action == "run" and job.seed in (0, 1, 2)]
    assert len(evaluation) == 3 and all(job.method_overrides == ("method.steps=20",) for job in evaluation)
    assert {job.overrides for job in evaluation} == {(f"train.seed={s}", f"data.seed={s}") for s in (0, 1, 2)}


def test_tuning_selected_needs_a_protocol_and_disjoint_seeds(tmp_path, capsys):
    path = write(tmp_path, "runs: [{methods: [ig], settings: [ts-canary], presets: [smoke], tuning: selected}]")
    assert main(["sweep", "plan", str(path), "--workdir", str(tmp_path / "w"), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "tuning: selected needs" in err and "protocol.yaml" in err
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "protocol.yaml").write_text("selection_seeds: [0]\n")
    assert main(["sweep", "plan", str(path), "--workdir", str(tmp_path / "w"), "--results", str(tmp_path / "r")]) == 2
    assert "are selection seeds" in capsys.readouterr().err
