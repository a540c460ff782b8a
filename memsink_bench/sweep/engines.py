"""Where the jobs run: a local process pool, Ray tasks, or Slurm job arrays through submitit; and the
driver that feeds any of them.

An engine only starts jobs and reports their outcomes (`worker.execute` runs each one as a fresh
`memsink-bench` process, on whichever machine the engine picked). The driver submits each job once
the trainings it needs have finished (so trainings go first and runs follow as their checkpoints
appear), retries a failing job up to `retries` times while the others go on, does not start jobs
whose training failed for good, and writes `last-run.json` after every event so `sweep status` can
report a run that is still going or was killed.

- local: `workers` job processes at a time, each with `threads` intra-op threads (by default
  workers x threads = the cores this process may use).
- ray:   one Ray task per job with `num_cpus` / `num_gpus` (fractional GPUs let several small
  models share one); connects to a cluster by address (or $RAY_ADDRESS), else starts a local one.
  Ray itself re-runs a job whose worker or node died (`max_retries`).
- slurm: submitit job arrays (one array per batch of ready jobs; partition, time, CPUs, GPUs, memory
  and array parallelism as options); `cluster: local` runs the same path on this machine.
"""

from __future__ import annotations

import concurrent.futures as futures
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError
from ..storage import atomic_write_json
from .worker import execute, stop_all

ENGINES = ("local", "ray", "slurm")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:        # not on Linux
        return os.cpu_count() or 1


def split_cores(workers: int | None, threads: int | None, cores: int) -> tuple[int, int]:
    """(workers, threads per worker): whichever is not given makes workers x threads = cores."""
    if workers is None and threads is None:
        return cores, 1
    if workers is None:
        return max(1, cores // threads), threads
    if threads is None:
        return workers, max(1, cores // workers)
    return workers, threads


def one_line(error: BaseException) -> str:
    """An engine's exception (a lost worker, a Slurm timeout) as its last meaningful line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:500]


def _failed(task: dict, error: BaseException) -> dict:
    return {"name": task["name"], "ok": False, "seconds": None, "attempt": None, "host": None,
            "log": task["log"], "error": f"engine: {one_line(error)}"}


# --- engines ---------------------------------------------------------------------------------

class LocalEngine:
    """A pool of `workers` job processes on this machine."""

    name = "local"
    poll_seconds = None

    def __init__(self, workers: int, threads: int):
        self.workers, self.threads = workers, threads
        self.pool = futures.ThreadPoolExecutor(workers, thread_name_prefix="sweep-job")   # each job: a process
        self.tasks: dict = {}

    @property
    def slots(self) -> int:
        """drive() hands this engine a job only when one of its workers is free."""
        return self.workers

    def describe(self) -> str:
        return f"local ({self.workers} worker{'s' * (self.workers != 1)} x {self.threads} thread{'s' * (self.threads != 1)})"

    def submit(self, tasks: list[dict]) -> list:
        handles = [self.pool.submit(execute, task) for task in tasks]
        self.tasks.update(zip(handles, tasks))
        return handles

    def wait(self, handles: list, timeout: float | None) -> list[tuple[object, dict]]:
        done, _ = futures.wait(handles, timeout=timeout, return_when=futures.FIRST_COMPLETED)
        out = []
        for handle in done:
            try:
                out.append((handle, handle.result()))
            except Exception as error:       # a bug in the worker itself, not a failing job
                out.append((handle, _failed(self.tasks[handle], error)))
        return out

    def cancel(self, handles: list) -> None:
        for handle in handles:
            handle.cancel()
        stop_all()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayEngine:
    """One Ray task per job, on an existing cluster or a local one started here."""

    name = "ray"
    poll_seconds = None

    def __init__(self, address: str | None, num_cpus: float, num_gpus: float, threads: int, retries: int,
                 local_cpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise UserError("the ray engine needs Ray, which is not installed",
                            "pip install 'memsink-bench[ray]'") from None
        self.ray, self.started = ray, False
        self.num_cpus, self.num_gpus, self.threads = num_cpus, num_gpus, threads
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS")
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(num_cpus=local_cpus or available_cores(), include_dashboard=False, log_to_driver=False)
                    self.started = True
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise UserError(f"cannot connect to the Ray cluster at {address!r} ({one_line(error)})",
                                "start it (`ray start --head`) or give its address with --address") from None
        resources = ray.cluster_resources()
        if resources.get("CPU", 0) < num_cpus:
            raise UserError(f"a job asks for {num_cpus} CPUs but the Ray cluster has {resources.get('CPU', 0):g}",
                            "lower --threads / engine.ray.num_cpus")
        if num_gpus and resources.get("GPU", 0) <= 0:
            raise UserError(f"jobs ask for {num_gpus} GPU each but the Ray cluster has none",
                            "drop --num-gpus, or connect to a cluster with GPUs")
        # Ray re-runs a task whose worker or node died; a job that fails is retried by the driver
        cpus, gpus = resources.get("CPU", 0), (f", {num_gpus:g} GPU" if num_gpus else "")
        self.description = (f"ray ({num_cpus:g} CPU{gpus} per job, {threads} thread{'s' * (threads != 1)} each, "
                            f"cluster of {cpus:g} CPUs)")
        self.remote = ray.remote(execute)
        self.options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": retries}
        self.tasks: dict = {}

    def describe(self) -> str:
        return self.description

    def submit(self, tasks: list[dict]) -> list:
        refs = [self.remote.options(name=task["name"][:120], **self.options).remote(task) for task in tasks]
        self.tasks.update(zip(refs, tasks))
        return refs

    def wait(self, handles: list, timeout: float | None) -> list[tuple[object, dict]]:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(handles, num_returns=len(handles), timeout=0)
        out = []
        for ref in ready:
            try:
                out.append((ref, self.ray.get(ref)))
            except self.ray.exceptions.RayError as error:
                out.append((ref, _failed(self.tasks[ref], error)))
        return out

    def cancel(self, handles: list) -> None:
        for ref in handles:
            self.ray.cancel(ref)             # KeyboardInterrupt in the task: it stops its job process
        if handles:
            self.ray.wait(handles, num_returns=len(handles), timeout=30)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


@dataclass
class SlurmOptions:
    cluster: str = "slurm"                 # slurm | local (submitit's local executor, same code path)
    partition: str | None = None
    time: int = 60                         # minutes per job
    gpus: int = 0                          # per job
    cpus: int | None = None                # per job (default: threads)
    mem_gb: float | None = None
    array_parallelism: int = 32
    account: str | None = None
    qos: str | None = None
    additional: dict = field(default_factory=dict)   # more sbatch options, e.g. {constraint: a100}


class SlurmEngine:
    """Slurm job arrays through submitit: each batch of ready jobs is one array."""

    name = "slurm"

    def __init__(self, options: SlurmOptions, threads: int, folder: Path, job_name: str, dry_run: bool = False):
        self.options, self.threads, self.folder = options, threads, folder
        if options.cluster not in ("slurm", "local"):
            raise UserError(f"unknown slurm cluster '{options.cluster}'", "use slurm, or local to test on this machine")
        self.parameters = {"name": job_name, "timeout_min": int(options.time), "cpus_per_task": options.cpus or threads,
                           "gpus_per_node": int(options.gpus), "slurm_array_parallelism": int(options.array_parallelism)}
        if options.mem_gb:
            self.parameters["mem_gb"] = options.mem_gb
        for key in ("partition", "account", "qos"):
            if getattr(options, key):
                self.parameters[f"slurm_{key}"] = getattr(options, key)
        if options.additional:
            self.parameters["slurm_additional_parameters"] = dict(options.additional)
        self.poll_seconds = 1.0 if options.cluster == "local" else 15.0
        if dry_run:
            return
        try:
            import submitit
        except ImportError:
            raise UserError("the slurm engine needs submitit, which is not installed",
                            "pip install 'memsink-bench[slurm]'") from None
        if options.cluster == "slurm" and shutil.which("sbatch") is None:
            raise UserError("no Slurm on this machine (sbatch is not on PATH)",
                            "run on a Slurm login node, or use --engine local / --slurm-cluster local")
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=options.cluster)
        self.executor.update_parameters(**self.parameters)
        self.tasks: dict = {}

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.parameters.items() if k != "name")
        return f"slurm via submitit, cluster {self.options.cluster} ({shown})"

    def submit(self, tasks: list[dict]) -> list:
        jobs = []
        with self.executor.batch():          # one job array
            for task in tasks:
                jobs.append(self.executor.submit(execute, task))
        self.tasks.update(zip(jobs, tasks))
        return jobs

    def wait(self, handles: list, timeout: float | None) -> list[tuple[object, dict]]:
        done = [job for job in handles if job.done()]
        if not done:
            time.sleep(self.poll_seconds)
            done = [job for job in handles if job.done()]
        out = []
        for job in done:
            try:
                out.append((job, job.result()))
            except Exception as error:       # timeout, preemption, node failure: submitit's own errors
                out.append((job, _failed(self.tasks[job], error)))
        return out

    def cancel(self, handles: list) -> None:
        for job in handles:
            job.cancel(check=False)

    def close(self) -> None:
        pass


# --- the driver ------------------------------------------------------------------------------

@dataclass
class RunState:
    """What one `sweep run` did, rewritten atomically after every event (last-run.json)."""

    path: Path
    run_id: str
    engine: str
    total: int
    succeeded: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)         # name -> {error, log, attempts}
    blocked: dict = field(default_factory=dict)        # name -> the failed training it needs
    retried: dict = field(default_factory=dict)        # name -> attempts that failed before it succeeded
    status: str = "running"                            # running | finished | interrupted
    seconds: dict = field(default_factory=dict)        # name -> seconds of its last attempt's process

    def save(self) -> None:
        atomic_write_json(self.path, {
            "run_id": self.run_id, "engine": self.engine, "status": self.status, "total": self.total,
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"), "succeeded": self.succeeded,
            "failed": self.failed, "blocked": self.blocked, "retried": self.retried, "seconds": self.seconds})


def drive(engine, jobs: list, tasks: dict[str, dict], retries: int, state: RunState, progress: bool = True) -> RunState:
    """Run `jobs` (the plan's missing ones, in plan order) on `engine`; `tasks[name]` is each job's
    worker payload. A job found done when it becomes ready (another sweep made it) is not run.
    An engine with `slots` gets a job only when a slot is free, ready runs before trainings, so
    records are finished as early as their checkpoints allow and a sweep stopped half-way keeps
    whole records, not only checkpoints no run has read; any other engine gets every ready job at once."""
    by_name = {job.name: job for job in jobs}
    position = {job.name: i for i, job in enumerate(jobs)}
    waiting = list(jobs)                  # in plan order: trainings first
    queued: list = []                     # ready, waiting for a free slot
    slots = getattr(engine, "slots", None)
    in_flight: dict = {}
    failures: dict[str, int] = {}
    finished, ran, started = 0, 0, time.monotonic()

    def left() -> str:
        """The time the rest needs at the pace of the jobs run so far (jobs differ: a rough guide)."""
        remaining = len(jobs) - finished
        if not ran or not remaining:
            return ""
        seconds = (time.monotonic() - started) / ran * remaining
        hours, minutes = divmod(round(seconds / 60), 60)
        if not hours and not minutes:
            return "; under a minute left at this pace"
        return f"; about {f'{hours}h{minutes:02d}m' if hours else f'{minutes}m'} left at this pace"

    def say(text: str) -> None:
        if progress:
            print(f"[{finished:{len(str(len(jobs)))}d}/{len(jobs)}] {text}", file=sys.stderr, flush=True)

    def block(name: str, reason: str) -> None:
        nonlocal finished
        for job in [j for j in waiting if name in j.needs]:
            waiting.remove(job)
            state.blocked[job.name] = reason
            finished += 1
            say(f"not run  {job.describe()}: needs {reason}, which failed")
            block(job.name, reason)

    try:
        while waiting or queued or in_flight:
            settled = set(state.succeeded)
            ready = [job for job in waiting if all(need in settled or need not in by_name for need in job.needs)]
            for job in ready:
                waiting.remove(job)
            found = {job.name for job in ready if job.done}     # made meanwhile by another sweep or worker
            for job in ready:
                if job.name in found:
                    finished += 1
                    state.succeeded.append(job.name)
                    say(f"found    {job.describe()}  (made by another process)")
            queued = sorted([*queued, *(job for job in ready if job.name not in found)],
                            key=lambda job: (getattr(job, "action", None) == "train", position[job.name]))
            free = len(queued) if slots is None else max(0, slots - len(in_flight))
            batch, queued = queued[:free], queued[free:]
            if batch:
                handles = engine.submit([tasks[job.name] for job in batch])
                in_flight.update(zip(handles, batch))
            if not in_flight:
                if found:                     # their dependents may be ready now
                    continue
                raise RuntimeError(f"sweep jobs wait on each other: {[job.name for job in waiting]}")
            for handle, outcome in engine.wait(list(in_flight), timeout=engine.poll_seconds):
                job = in_flight.pop(handle)
                if outcome["ok"]:
                    finished += 1
                    ran += 1
                    state.succeeded.append(job.name)
                    state.seconds[job.name] = outcome["seconds"]
                    if job.name in failures:
                        state.retried[job.name] = failures[job.name]
                    say(f"done     {job.describe()}  ({outcome['seconds']:.1f} s{left()})")
                elif failures.get(job.name, 0) < retries:
                    failures[job.name] = failures.get(job.name, 0) + 1
                    say(f"retrying {job.describe()}: {outcome['error']} "
                        f"(attempt {failures[job.name]} of {retries + 1} failed)")
                    waiting.insert(0, job)
                else:
                    finished += 1
                    attempts = failures.get(job.name, 0) + 1
                    state.failed[job.name] = {"error": outcome["error"], "log": outcome["log"], "attempts": attempts}
                    say(f"FAILED   {job.describe()}: {outcome['error']} (log: {outcome['log']})")
                    block(job.name, job.name)
                state.save()
        state.status = "finished"
    except KeyboardInterrupt:
        state.status = "interrupted"
        print("memsink-bench: interrupted; stopping the running jobs (nothing partial is kept)", file=sys.stderr,
              flush=True)
        engine.cancel(list(in_flight))
    finally:
        if state.status == "running":         # an unexpected error in the driver itself
            engine.cancel(list(in_flight))
            state.status = "interrupted"
        state.save()
    return state
