"""`memsink-bench sweep plan | run | status FILE`: the parser beside its handler."""

from __future__ import annotations

import json
import os
import shlex
import sys
from argparse import RawDescriptionHelpFormatter
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError, did_you_mean

EPILOG = """examples:
  memsink-bench sweep plan sweeps/reproduction.yaml --results results   # every job, done or missing
  memsink-bench sweep run sweeps/smoke.yaml --engine local --workers 2 --threads 1
  memsink-bench sweep run sweeps/smoke.yaml --engine ray --address auto --num-gpus 0.25
  memsink-bench sweep run sweeps/reproduction.yaml --engine slurm --partition gpu --time 60 --gpus 1 --dry-run
  memsink-bench sweep status sweeps/reproduction.yaml
a sweep run skips every checkpoint, record and analysis that exists, so a stopped sweep resumes
where it stopped; job logs: <workdir>/sweeps/<name>/logs/"""


def register(sub, common=None) -> None:
    from ..cli import default_workdir

    sweep = sub.add_parser("sweep", help="plan, run (local, Ray or Slurm) and summarise a sweep file",
                           formatter_class=RawDescriptionHelpFormatter, epilog=EPILOG)
    actions = sweep.add_subparsers(dest="sweep_action", required=True, metavar="ACTION")
    parsers = {"plan": actions.add_parser("plan", help="print the expanded jobs and which are done"),
               "run": actions.add_parser("run", help="run the jobs that are missing"),
               "status": actions.add_parser("status", help="done / missing per setting, and the last run's failures")}
    for parser in parsers.values():
        parser.add_argument("file", type=Path, help="the sweep YAML, e.g. sweeps/smoke.yaml")
        parser.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: ./results)")
        parser.add_argument("--workdir", type=Path, default=default_workdir(),
                            help="checkpoint cache, also where job logs go (default: $MEMSINK_BENCH_CACHE)")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="train.log_with=...",
                            help="a field in no key, for every job: train.log_with or train.device")
    parsers["plan"].add_argument("--missing", action="store_true", help="list only the jobs still to do")
    parsers["plan"].add_argument("--commands", action="store_true", help="print each job's memsink-bench command")
    run = parsers["run"]
    run.add_argument("--engine", default="local", help="local (default) | ray | slurm")
    run.add_argument("--workers", type=int, default=None, help="local: jobs at a time (default: cores / threads)")
    run.add_argument("--threads", type=int, default=None,
                     help="CPU threads per job (default: local cores / workers; ray and slurm: 1)")
    run.add_argument("--retries", type=int, default=None, help="retries of a failing job (default: 1)")
    run.add_argument("--dry-run", action="store_true", help="print what would be submitted, run nothing")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    ray = run.add_argument_group("ray")
    ray.add_argument("--address", default=None, help="cluster address (auto, HOST:PORT, ray://...); default: "
                                                     "$RAY_ADDRESS, else start a local cluster")
    ray.add_argument("--num-cpus", type=float, default=None, help="CPUs per job (default: --threads)")
    ray.add_argument("--num-gpus", type=float, default=None, help="GPUs per job, fractional to share one (e.g. 0.25)")
    slurm = run.add_argument_group("slurm")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--time", type=int, default=None, help="minutes per job (default: 60)")
    slurm.add_argument("--gpus", type=int, default=None, help="GPUs per job")
    slurm.add_argument("--mem-gb", type=float, default=None)
    slurm.add_argument("--array-parallelism", type=int, default=None, help="jobs of an array running at once")
    slurm.add_argument("--slurm-cluster", default=None, help="slurm (default) | local: submitit's local executor")


def handle(args) -> int:
    from .spec import load_plan

    plan = load_plan(args.file, args.results, args.workdir, args.overrides)
    if args.sweep_action == "run":
        while True:                    # a protocol's evaluation runs are planned once its selection runs exist
            code = run_sweep(plan, args)
            if code != 0 or not plan.waiting or args.dry_run:
                return code
            again = load_plan(args.file, args.results, args.workdir, args.overrides)
            if not again.missing():
                return code
            print(f"sweep {plan.name}: the selection runs are done; planning the chosen configurations' "
                  "evaluation runs", file=sys.stderr)
            plan = again
    try:
        if args.sweep_action == "plan":
            return print_plan(plan, args)
        return print_status(plan, Path(args.workdir).resolve())
    except BrokenPipeError:            # `sweep plan FILE | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _counts_line(plan) -> str:
    parts = []
    for action, count in plan.counts().items():
        if count["total"]:
            unneeded = f", {count['unneeded']} not needed" if count["unneeded"] else ""
            parts.append(f"{action} {count['done']}/{count['total']} done{unneeded}")
    return ", ".join(parts)


def print_plan(plan, args) -> int:
    states = plan.states()
    workdir, results = Path(args.workdir).resolve(), Path(args.results).resolve()
    print(f"sweep {plan.name} ({plan.path}): {_counts_line(plan)}")
    for job in plan.jobs:
        state = states[job.name]
        if args.missing and state != "missing":
            continue
        print(f"{state:8s} {job.describe()}  -> {_shown(job.output)}")
        if args.commands:
            print(f"           memsink-bench {shlex.join(job.argv(workdir, results))}")
    for step in plan.collect:
        print(f"collect  memsink-bench {shlex.join(step)}")
    for note in plan.waiting:
        print(f"waiting  {note} (planned by `sweep run` once they are done)")
    if any(state == "unneeded" for state in states.values()):
        print("(not needed: a checkpoint only method runs use, and all of their records exist)")
    return 0


def state_path(workdir: Path, name: str) -> Path:
    return workdir / "sweeps" / name / "last-run.json"


def print_status(plan, workdir: Path) -> int:
    states = plan.states()
    rows: dict = {}
    for job in plan.jobs:
        row = rows.setdefault((job.action, f"{job.setting_name}/{job.preset}"), {"done": 0, "missing": 0, "unneeded": 0})
        row[states[job.name]] += 1
    print(f"sweep {plan.name} ({plan.path}): {_counts_line(plan)}")
    print(f"{'action':8s} {'setting/preset':28s} {'done':>5s} {'missing':>8s} {'not needed':>11s}")
    for (action, where), row in rows.items():
        print(f"{action:8s} {where:28s} {row['done']:5d} {row['missing']:8d} {row['unneeded']:11d}")
    missing = plan.missing()
    print(f"{len(missing)} job{'s' * (len(missing) != 1)} to do" + (f": memsink-bench sweep run {plan.path}" if missing else ""))
    path = state_path(workdir, plan.name)
    if path.is_file():
        state = json.loads(path.read_text())
        names = {job.name for job in missing}
        print(f"last run {state['run_id']} on {state['engine']}: {state['status']} at {state['updated']}, "
              f"{len(state['succeeded'])} done, {len(state['failed'])} failed, {len(state['blocked'])} not run")
        _print_failures({k: v for k, v in state["failed"].items() if k in names},
                        {k: v for k, v in state["blocked"].items() if k in names})
    return 0


def _print_failures(failed: dict, blocked: dict, file=None) -> None:
    file = file or sys.stdout
    if failed:
        print("failed:", file=file)
        for name, failure in failed.items():
            print(f"  {name}: {failure['error']}\n      log: {failure['log']} ({failure['attempts']} attempts)", file=file)
    if blocked:
        print(f"not run, because a training they need failed: {len(blocked)}", file=file)
        for name, reason in blocked.items():
            print(f"  {name} (needs {reason})", file=file)


def _engine(args, plan, threads_default):
    """The engine the flags and the file's `engine:` section ask for, and (threads, retries)."""
    from .engines import ENGINES, LocalEngine, RayEngine, SlurmEngine, SlurmOptions, available_cores, split_cores

    options = plan.engine
    if args.engine not in ENGINES:
        raise UserError(f"unknown engine '{args.engine}'", did_you_mean(args.engine, ENGINES))
    workers = _number(args.workers, options.get("workers"), "workers", int)
    threads = _number(args.threads, options.get("threads"), "threads", int)
    retries = _number(args.retries, options.get("retries"), "retries", int, minimum=0)
    retries = 1 if retries is None else retries
    if args.engine == "local":
        workers, threads = split_cores(workers, threads, available_cores())
        return LocalEngine(workers, threads), threads, retries
    threads = threads or threads_default
    if args.engine == "ray":
        ray = options["ray"]
        num_cpus = _number(args.num_cpus, ray.get("num_cpus"), "num_cpus", (int, float)) or threads
        num_gpus = _number(args.num_gpus, ray.get("num_gpus"), "num_gpus", (int, float), minimum=0) or 0
        if args.dry_run:
            return _DryRun(f"ray ({num_cpus:g} CPU, {num_gpus:g} GPU per job, {threads} threads; address "
                           f"{args.address or ray.get('address') or os.environ.get('RAY_ADDRESS') or 'a new local cluster'})"), \
                threads, retries
        return RayEngine(args.address or ray.get("address"), num_cpus, num_gpus, threads, retries), threads, retries
    slurm = dict(options["slurm"])
    for key, value in (("partition", args.partition), ("time", args.time), ("gpus", args.gpus),
                       ("mem_gb", args.mem_gb), ("array_parallelism", args.array_parallelism),
                       ("cluster", args.slurm_cluster)):
        if value is not None:
            slurm[key] = value
    try:
        slurm_options = SlurmOptions(**slurm)
    except TypeError as error:
        raise UserError(f"{plan.path}: bad engine.slurm value ({error})", "see `memsink-bench sweep run --help`") from None
    folder = Path(args.workdir).resolve() / "sweeps" / plan.name / "submitit"
    return SlurmEngine(slurm_options, threads, folder, f"memsink-{plan.name}", dry_run=args.dry_run), threads, retries


class _DryRun:
    def __init__(self, text: str):
        self.text = text

    def describe(self) -> str:
        return self.text


def _number(flag, from_file, name: str, kind, minimum=1):
    value = flag if flag is not None else from_file
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) or value < minimum:
        raise UserError(f"{name}={value!r} is not valid", f"give a number >= {minimum}")
    return value


def run_sweep(plan, args) -> int:
    from .. import tracking
    from ..storage import check_writable
    from .engines import RunState, drive
    from .worker import task_payload

    workdir, results = Path(args.workdir).resolve(), Path(args.results).resolve()
    todo = plan.missing()
    for log_with in sorted({job.log_with for job in todo}):
        tracking.check_available(log_with)
    log_dir = workdir / "sweeps" / plan.name / "logs"
    done_before = len(plan.jobs) - len(todo)
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}"
    state = RunState(state_path(workdir, plan.name), run_id, args.engine, len(todo))
    threads = 1
    if todo:
        engine, threads, retries = _engine(args, plan, threads_default=1)
        state.engine = engine.describe()
        print(f"sweep {plan.name}: {len(todo)} jobs to run on {state.engine}, {done_before} already done; "
              f"retries {retries}; logs in {log_dir}", file=sys.stderr)
        if args.dry_run:
            return _print_dry_run(todo, plan, workdir, results, threads)
        check_writable(workdir, "--workdir")
        check_writable(results, "--results")
        tasks = {job.name: task_payload(job, workdir, results, log_dir, threads, run_id) for job in todo}
        try:
            drive(engine, todo, tasks, retries, state, progress=not args.quiet)
        finally:
            engine.close()
    else:
        print(f"sweep {plan.name}: all {done_before} jobs are done", file=sys.stderr)
        if args.dry_run:
            return _print_dry_run(todo, plan, workdir, results, threads)
        state.status = "finished"
    if state.status == "finished" and not (state.failed or state.blocked) and not plan.waiting:
        _collect(plan, state, log_dir, run_id, threads)
    print(f"sweep {plan.name} on {state.engine}: {len(state.succeeded)} done, {len(state.failed)} failed, "
          f"{len(state.blocked)} not run, {done_before} already done"
          + (f", {len(state.retried)} succeeded after a retry" if state.retried else ""), file=sys.stderr)
    _print_failures(state.failed, state.blocked, file=sys.stderr)
    if state.status == "interrupted":
        print(f"memsink-bench: interrupted; rerun `memsink-bench sweep run {plan.path}` to continue "
              "(finished jobs are kept and skipped)", file=sys.stderr)
        return 130
    return 1 if state.failed or state.blocked else 0


def _collect(plan, state, log_dir: Path, run_id: str, threads: int) -> None:
    """The collect steps, here and in order, once every job is done (they read stored outputs)."""
    from .worker import execute

    for index, step in enumerate(plan.collect):
        outcome = execute({"name": f"collect-{index}", "argv": step, "output": None, "threads": threads,
                           "log": str(log_dir / f"collect-{index}-{step[0]}.log"), "run_id": run_id, "track": None})
        if not outcome["ok"]:
            state.failed[f"collect-{index}"] = {"error": outcome["error"], "log": outcome["log"], "attempts": 1}
            state.save()
            return
        print(f"collected: memsink-bench {shlex.join(step)}", file=sys.stderr)
    state.save()


def _print_dry_run(todo, plan, workdir: Path, results: Path, threads: int) -> int:
    trainings = [job for job in todo if job.action == "train"]
    others = [job for job in todo if job.action != "train"]
    print(f"would submit {len(trainings)} trainings first, then {len(others)} runs and analyses as the "
          "checkpoints they need appear:")
    for job in [*trainings, *others]:
        print(f"  memsink-bench {shlex.join(job.argv(workdir, results, threads))}")
    for step in plan.collect:
        print(f"then, on this machine: memsink-bench {shlex.join(step)}")
    return 0
