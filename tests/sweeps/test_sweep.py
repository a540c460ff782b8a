"""Sweeps on real engines at the smoke preset: the local process pool, a real local Ray cluster
(`ray.init` with 2 CPUs), submitit's local executor for the Slurm path; a sweep killed mid-way
and rerun; a job that always fails; concurrent sweeps needing one checkpoint; TensorBoard
tracking offline; how close results made with different thread counts are.

Each job is a real `memsink-bench` process with one thread (2 busy cores). Waiting for a file to
appear polls the file system; no test reads the clock for speed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from memsink_bench.cli import main
from memsink_bench.record import ResultRecord, load_records
from memsink_bench.sweep.spec import load_plan

TINY = """
name: tiny
defaults: {settings: [ts-canary], presets: [smoke], set: {train.epochs: 1}}
runs:
  - methods: [random-neurons]
    set: {sweep.ratios: [0.1, 0.2]}
    method_seeds: [0, 1]
"""
SAME = ("before", "no_rep", "points", "summary", "hyperparameters", "grid", "seeds")   # what a result is


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def sweep(action: str, path: Path, workdir: Path, results: Path, *extra: str) -> list[str]:
    return ["sweep", action, str(path), "--workdir", str(workdir), "--results", str(results), *extra]


def records(results: Path) -> dict[str, ResultRecord]:
    return {record.path.name: record for record in load_records(results)}


def result_of(record: ResultRecord) -> dict:
    raw = record.to_dict()
    return {key: raw[key] for key in SAME}


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1"}


def wait_for(condition, what: str, tries: int = 2400, interval: float = 0.25) -> None:
    for _ in range(tries):
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The tiny sweep (2 trainings, 2 runs) run once on the local engine, 2 workers x 1 thread."""
    root = tmp_path_factory.mktemp("sweep-local")
    path = write(root / "tiny.yaml", TINY)
    workdir, results = root / "work", root / "results"
    threads = torch.get_num_threads()
    code = main(sweep("run", path, workdir, results, "--engine", "local", "--workers", "2", "--threads", "1",
                      "--quiet"))
    torch.set_num_threads(threads)
    assert code == 0
    return path, workdir, results


def test_local_engine_runs_every_job_once_and_the_leaderboard_reads_them(local, capsys):
    path, workdir, results = local
    plan = load_plan(path, results, workdir)
    assert [job.action for job in plan.jobs] == ["train", "train", "train", "run", "run"]   # standard, no-rep, never-seen
    assert all(job.done for job in plan.jobs)
    found = records(results)
    assert sorted(found) == sorted(job.output.name for job in plan.jobs if job.action == "run")
    assert {record.seeds.method for record in found.values()} == {0, 1}
    assert {record.config["train"]["threads"] for record in found.values()} == {1}          # workers x threads
    for job in plan.jobs:                                    # each job logged its command
        log = (workdir / "sweeps" / "tiny" / "logs" / f"{job.name}.log").read_text()
        assert f"command: memsink-bench {shlex.join(job.argv(workdir.resolve(), results.resolve(), 1))}\n" in log
    state = json.loads((workdir / "sweeps" / "tiny" / "last-run.json").read_text())
    assert state["status"] == "finished" and len(state["succeeded"]) == 5 and not state["failed"]
    assert "2 workers x 1 thread" in state["engine"]

    capsys.readouterr()
    assert main(["leaderboard", "--results", str(results), "--preset", "smoke"]) == 0
    assert "random-neurons" in capsys.readouterr().out

    stamps = {name: record.path.stat().st_mtime_ns for name, record in found.items()}
    assert main(sweep("run", path, workdir, results, "--quiet")) == 0                    # idempotent
    assert "all 5 jobs are done" in capsys.readouterr().err
    assert {name: record.path.stat().st_mtime_ns for name, record in records(results).items()} == stamps
    assert main(sweep("status", path, workdir, results)) == 0
    assert "0 jobs to do" in capsys.readouterr().out


@pytest.fixture()
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_engine_gives_the_local_engines_results(local, ray_cluster, tmp_path):
    path, _, local_results = local
    workdir, results = tmp_path / "work", tmp_path / "results"
    assert main(sweep("run", path, workdir, results, "--engine", "ray", "--threads", "1", "--quiet")) == 0
    state = json.loads((workdir / "sweeps" / "tiny" / "last-run.json").read_text())
    assert state["engine"].startswith("ray (1 CPU per job") and len(state["succeeded"]) == 5
    assert "cluster of 2 CPUs" in state["engine"]
    ours, theirs = records(results), records(local_results)
    assert sorted(ours) == sorted(theirs)
    for name in ours:                  # trained and run on Ray workers: the same numbers, to the bit
        assert result_of(ours[name]) == result_of(theirs[name])


def test_slurm_path_through_submitit_local_executor(local, tmp_path):
    pytest.importorskip("submitit")
    path, workdir, local_results = local
    results = tmp_path / "results"
    code = main(sweep("run", path, workdir, results, "--engine", "slurm", "--slurm-cluster", "local",
                      "--time", "20", "--threads", "1", "--quiet"))
    assert code == 0
    submitted = sorted((workdir / "sweeps" / "tiny" / "submitit").glob("*_submitted.pkl"))
    assert len(submitted) == 2                              # the two method runs (the trainings are done)
    ours, theirs = records(results), records(local_results)
    assert sorted(ours) == sorted(theirs)
    assert all(result_of(ours[name]) == result_of(theirs[name]) for name in ours)


KILLABLE = """
name: killable
defaults: {settings: [ts-canary], presets: [smoke], set: {train.epochs: 1}}
runs:
  - methods: [random-neurons]
    set: {sweep.ratios: [0.1]}
    method_seeds: [0, 1, 2, 3]
"""


def test_sweep_killed_midway_and_rerun_has_every_record_exactly_once(tmp_path):
    path = write(tmp_path / "killable.yaml", KILLABLE)
    workdir, results = tmp_path / "work", tmp_path / "results"
    command = [sys.executable, "-m", "memsink_bench.cli", *sweep("run", path, workdir, results, "--workers", "1",
                                                                 "--threads", "1")]
    driver = subprocess.Popen(command, env=env(), start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    record_dir = results / "records" / "ts-canary-smoke"

    def some_records():
        return record_dir.is_dir() and any(p.suffix == ".json" and not p.name.startswith(".")
                                           for p in record_dir.iterdir())
    try:
        wait_for(some_records, "the first record")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)           # the driver and its running job, like a lost node
        driver.wait()
    before = {p.name: p.read_bytes() for p in record_dir.glob("*.json")}
    assert 1 <= len(before) < 4, "the kill should land mid-way"
    for content in before.values():
        ResultRecord.from_dict(json.loads(content))         # nothing partial is visible

    rerun = subprocess.run(command + ["--quiet"], env=env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{3 + len(before)} already done" in rerun.stderr       # the three trainings and the finished runs
    plan = load_plan(path, results, workdir)
    planned = sorted(job.output.name for job in plan.jobs if job.action == "run")
    visible = sorted(p.name for p in record_dir.iterdir() if not p.name.startswith("."))
    assert visible == planned                               # each record exactly once, no leftovers
    for name, content in before.items():
        assert (record_dir / name).read_bytes() == content  # finished work is kept, not recomputed
    assert [job for job in plan.jobs if not job.done] == []


FAILING_METHOD = '''
from memsink_bench.methods.base import NeuronLocalizer


class AlwaysFails(NeuronLocalizer):
    name = "always-fails"
    summary = "raises in score(): a job that fails on every attempt"

    def score(self, model, context):
        raise RuntimeError("planted failure")
'''


def test_always_failing_job_is_retried_reported_and_the_rest_finish(local, tmp_path, capsys):
    _, workdir, _ = local
    write(tmp_path / "always_fails.py", FAILING_METHOD)
    path = write(tmp_path / "failing.yaml", """
        name: failing
        defaults: {settings: [ts-canary], presets: [smoke], set: {train.epochs: 1, sweep.ratios: [0.1]}}
        runs:
          - methods: [always_fails.py:AlwaysFails, random-neurons]
        """)
    results = tmp_path / "results"
    code = main(sweep("run", path, workdir, results, "--workers", "2", "--threads", "1", "--retries", "2", "--quiet"))
    err = capsys.readouterr().err
    assert code == 1
    plan = load_plan(path, results, workdir)
    failing = next(job for job in plan.jobs if (job.method or "").endswith("AlwaysFails"))
    good = next(job for job in plan.jobs if job.method == "random-neurons")
    assert good.done and not failing.done                  # the others went on
    log = workdir / "sweeps" / "failing" / "logs" / f"{failing.name}.log"
    state = json.loads((workdir / "sweeps" / "failing" / "last-run.json").read_text())
    failure = state["failed"][failing.name]
    assert failure["attempts"] == 3 and failure["log"] == str(log)
    assert "raised RuntimeError: planted failure" in failure["error"] and "\n" not in failure["error"]
    assert log.read_text().count(f"sweep job {state['run_id']} attempt") == 3
    assert f"  {failing.name}: {failure['error']}\n      log: {log} (3 attempts)" in err
    assert "1 done, 1 failed, 0 not run" in err

    assert main(sweep("status", path, workdir, results)) == 0
    out = capsys.readouterr().out
    assert "1 job to do" in out and str(log) in out and "planted failure" in out


def _event_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("events.out.tfevents.*"))


def test_concurrent_sweeps_train_each_checkpoint_once_and_track_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = write(tmp_path / "shared.yaml", """
        name: shared
        defaults: {settings: [ts-canary], presets: [smoke], set: {train.epochs: 1, sweep.ratios: [0.1, 0.2]}}
        runs: [{methods: [random-neurons]}]
        """)
    workdir, results = tmp_path / "work", tmp_path / "results"
    command = [sys.executable, "-m", "memsink_bench.cli", *sweep("run", path, workdir, results, "--workers", "1",
                                                                 "--threads", "1", "--quiet",
                                                                 "--set", "train.log_with=tensorboard")]
    drivers = [subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(3)]
    outcomes = [(driver.wait(), driver.stderr.read()) for driver in drivers]
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    plan = load_plan(path, results, workdir)
    logs = "".join(p.read_text() for p in (workdir / "sweeps" / "shared" / "logs").glob("*.log"))
    assert "waiting: another process is training" in logs          # the workers did need it at once
    for job in [j for j in plan.jobs if j.action == "train"]:
        run_dir = workdir / "runs" / "ts-canary" / job.output.parent.name
        events = _event_files(run_dir / "tracking")
        assert len(events) == 1, f"{job.kind} was trained {len(events)} times"
        accumulator = EventAccumulator(str(run_dir / "tracking"))
        accumulator.Reload()
        logged = [(e.step, e.value) for e in accumulator.Scalars("val_loss")]
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert logged == [(m["step"], pytest.approx(m["val_loss"])) for m in metrics]
    [run] = [j for j in plan.jobs if j.action == "run"]
    record = ResultRecord.read(run.output)
    uploads = _event_files(run.tracking_dir)       # one per sweep that computed the run (records have no lock)
    assert 1 <= len(uploads) <= 3
    for upload in uploads:
        accumulator = EventAccumulator(str(upload))
        accumulator.Reload()
        assert [(e.step, e.value) for e in accumulator.Scalars("point/forgetting")] == [
            (index, pytest.approx(point.forgetting, abs=1e-6)) for index, point in enumerate(record.points)]
    assert record.config["train"]["log_with"] == "tensorboard"


def test_thread_counts_change_results_far_below_the_tables_precision(tmp_path):
    """threads are in no key; 1 and 2 threads give records equal to 1e-4 (measured: ~1e-6)."""
    threads = torch.get_num_threads()
    made = {}
    try:
        for count in (1, 2):
            results = tmp_path / f"results-{count}"
            assert main(["run", "--method", "ig", "--setting", "ts-canary", "--preset", "smoke", "--quiet",
                         "--set", f"train.threads={count}", "--set", "sweep.ratios=[0.05,0.2]",
                         "--workdir", str(tmp_path / f"work-{count}"), "--results", str(results)]) == 0
            [made[count]] = load_records(results)
    finally:
        torch.set_num_threads(threads)
    one, two = made[1], made[2]
    assert one.path.name == two.path.name                  # the same run
    assert one.config["train"]["threads"] == 1 and two.config["train"]["threads"] == 2
    compared = 0
    for a, b in zip([one.before, one.no_rep, *one.points], [two.before, two.no_rep, *two.points]):
        for field in dataclasses.fields(a):
            value, other = getattr(a, field.name), getattr(b, field.name)
            if isinstance(value, float):
                assert abs(value - other) <= 1e-4, field.name
                compared += 1
    assert compared >= 40
    for key, value in one.summary.items():
        if isinstance(value, float):
            assert abs(value - two.summary[key]) <= 1e-4, key


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_ctrl_c_stops_every_job_cleanly_and_a_rerun_finishes(tmp_path):
    path = write(tmp_path / "interrupted.yaml", """
        name: interrupted
        defaults: {settings: [ts-canary], presets: [smoke], set: {sweep.ratios: [0.1]}}
        runs: [{methods: [random-neurons]}]
        """)
    workdir, results = tmp_path / "work", tmp_path / "results"
    command = [sys.executable, "-m", "memsink_bench.cli", *sweep("run", path, workdir, results, "--workers", "2",
                                                                 "--threads", "1")]
    driver = subprocess.Popen(command, env=env(), start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    logs = workdir / "sweeps" / "interrupted" / "logs"
    wait_for(lambda: logs.is_dir() and len(list(logs.glob("train__*.log"))) == 2, "both trainings to start")
    os.killpg(driver.pid, signal.SIGINT)                     # Ctrl-C: the terminal signals the whole group
    err = driver.communicate()[1]
    assert driver.returncode == 130
    assert "interrupted; rerun `memsink-bench sweep run" in err
    assert _processes_mentioning(str(workdir)) == []          # no job process left behind
    checkpoints = workdir / "checkpoints" / "ts-canary"
    for directory in (checkpoints.iterdir() if checkpoints.is_dir() else []):
        assert directory.name.startswith(".") or (directory / "manifest.json").is_file()   # complete or hidden
    assert not (results / "records").exists()
    state = json.loads((workdir / "sweeps" / "interrupted" / "last-run.json").read_text())
    assert state["status"] == "interrupted" and not state["failed"]

    rerun = subprocess.run(command + ["--quiet"], env=env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert all(job.done for job in load_plan(path, results, workdir).jobs)


def test_a_protocol_sweep_selects_on_its_selection_seeds_then_runs_the_chosen_configuration(tmp_path):
    """One `sweep run`: both of ig's tuning configurations on selection seed 100, then only the
    chosen one on evaluation seed 0, each seed with its own data seed; the leaderboard reports seed 0."""
    from memsink_bench.leaderboard import leaderboard_frame

    results, workdir = tmp_path / "results", tmp_path / "work"
    write(results / "protocol.yaml", "selection_seeds: [100]\n")
    path = write(tmp_path / "protocol.yaml", """
        name: protocol-test
        defaults: {settings: [ts-canary], presets: [smoke], set: {train.epochs: 1, sweep.ratios: [0.1]},
                   seed_fields: [train.seed, data.seed]}
        runs: [{methods: [ig], tuning: selected, seeds: [0]}]
        """)
    threads = torch.get_num_threads()
    code = main(sweep("run", path, workdir, results, "--engine", "local", "--workers", "2", "--threads", "1",
                      "--quiet"))
    torch.set_num_threads(threads)
    assert code == 0
    from memsink_bench.protocol import choose

    found = load_records(results)
    selection = {json.dumps({"method.steps": r.hyperparameters["steps"]}): [r] for r in found if r.seeds.train == 100}
    assert sorted(selection) == ['{"method.steps": 16}', '{"method.steps": 20}']
    assert all(r.seeds.data == 100 for [r] in selection.values())
    [evaluated] = [r for r in found if r.seeds.train == 0]
    assert evaluated.seeds.data == 0 and evaluated.config["data"]["seed"] == 0
    assert {"method.steps": evaluated.hyperparameters["steps"]} == json.loads(choose(selection, "gap closed @0.05"))
    [row] = leaderboard_frame(found).to_dict("records")
    assert row["selected on"] == "seeds 100" and [r.seeds.train for r in row["_records"]] == [0]
    assert row["configs"] == 2                 # the configurations the selection seeds tried, not the one reported
    assert load_plan(path, results, workdir).missing() == []


def test_progress_lines_say_how_long_the_rest_takes_at_the_pace_so_far(tmp_path, capsys, monkeypatch):
    """Each job takes 60 s of (fake) wall-clock: after 1 of 3 the rest is about 2 minutes, after
    2 of 3 about 1, and the last line has no estimate."""
    from types import SimpleNamespace

    from memsink_bench.sweep import engines

    clock = {"now": 0.0}
    monkeypatch.setattr(engines.time, "monotonic", lambda: clock["now"])

    class OneAtATime:
        poll_seconds = 0.0

        def submit(self, tasks):
            return list(tasks)

        def wait(self, handles, timeout):
            clock["now"] += 60.0
            return [(handles[0], {"ok": True, "seconds": 60.0})]

        def cancel(self, handles):
            pass

    jobs = [SimpleNamespace(name=f"job{i}", needs=(), done=False, describe=lambda i=i: f"job {i}") for i in range(3)]
    state = engines.RunState(tmp_path / "last-run.json", "run", "fake", 3)
    engines.drive(OneAtATime(), jobs, {job.name: job.name for job in jobs}, 0, state)
    lines = [line for line in capsys.readouterr().err.splitlines() if "done" in line]
    assert len(lines) == 3 and state.status == "finished"
    assert lines[0].endswith("(60.0 s; about 2m left at this pace)")
    assert lines[1].endswith("(60.0 s; about 1m left at this pace)")
    assert lines[2].endswith("(60.0 s)")


def test_protocol_chooses_per_setting_and_runs_on_a_tuned_checkpoint_its_chosen_configuration(tmp_path, monkeypatch):
    """Two settings: each chooses MemSinks' configuration from its own selection runs only; the
    random control on the MemSinks checkpoint runs, in both stages, on the configuration MemSinks'
    own row reports."""
    from memsink_bench import protocol

    calls = []
    real = protocol.choose

    def spy(candidates, criterion):
        calls.append({r.setting for records in candidates.values() for r in records})
        return real(candidates, criterion)

    monkeypatch.setattr(protocol, "choose", spy)
    results, workdir = tmp_path / "results", tmp_path / "work"
    write(results / "protocol.yaml", "selection_seeds: [100]\n")
    path = write(tmp_path / "protocol.yaml", """
        name: protocol-kinds
        defaults: {settings: [ts-canary, ts-repetition], presets: [smoke], set: {train.epochs: 1},
                   seed_fields: [train.seed, data.seed]}
        runs:
          - {methods: [memsinks], tuning: selected, seeds: [0]}
          - {methods: [random-neurons], checkpoints: [memsinks], tuning: selected, seeds: [0],
             set: {sweep.ratios: [0.1]}}
        """)
    threads = torch.get_num_threads()
    code = main(sweep("run", path, workdir, results, "--engine", "local", "--workers", "2", "--threads", "1",
                      "--quiet"))
    torch.set_num_threads(threads)
    assert code == 0
    assert calls and all(len(settings) == 1 for settings in calls)          # never a mix of settings
    found = load_records(results)

    def sinks(record):
        return record.config["memsinks"]["shared_fraction"], record.config["memsinks"]["sink_fraction"]

    for setting in ("ts-canary", "ts-repetition"):
        selection = {json.dumps(dict(zip(["memsinks.shared_fraction", "memsinks.sink_fraction"], sinks(r))),
                                sort_keys=True): [r]
                     for r in found if r.setting == setting and r.method == "memsinks" and r.seeds.train == 100}
        assert len(selection) == 6                                       # the declared grid, on this setting
        chosen = tuple(json.loads(real(selection, "gap closed @0.05")).values())
        [memsinks] = [r for r in found if r.setting == setting and r.method == "memsinks" and r.seeds.train == 0]
        control = [r for r in found if r.setting == setting and r.method == "random-neurons"]
        assert sorted(sinks(memsinks)) == sorted(chosen) or sinks(memsinks) == chosen
        assert control and all(sinks(r) == sinks(memsinks) for r in control)   # both stages, the chosen model
    assert load_plan(path, results, workdir).missing() == []
