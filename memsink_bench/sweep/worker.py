"""One job, wherever the engine runs it: a fresh `memsink-bench` process whose output goes to the job's
log file, with a fixed number of CPU threads.

A fresh interpreter per job means a job's numbers never depend on what ran before it in the same
worker (torch's global random state, thread pools, cached modules), and a crash or a kill costs
only that job. Every write a job makes is atomic (record, checkpoint, analysis), so a job stopped
at any point leaves nothing partial: rerunning it starts over (trainings resume from their last
snapshot).

`execute(task)` returns an outcome dict and never raises for a failing job, so every engine
(process pool, Ray, submitit) hands back the same picklable value; only the engine's own failures
(a lost node, a Slurm timeout) arrive as exceptions.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

HEADER = "== memsink-bench sweep job"
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()
GRACE_SECONDS = 20
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Interrupt|Exit|Failed|Failure)(?::|$)")


def task_payload(job, workdir: Path, results: Path, log_dir: Path, threads: int, run_id: str) -> dict:
    """What a worker needs to do `job` (plain data: it crosses process and machine boundaries)."""
    return {"name": job.name, "argv": job.argv(workdir, results, threads), "output": str(job.output),
            "log": str(log_dir / f"{job.name}.log"), "threads": threads, "run_id": run_id,
            "track": {"log_with": job.log_with, "record": str(job.output), "directory": str(job.tracking_dir)}
            if job.action == "run" and job.log_with != "none" else None}


def execute(task: dict) -> dict:
    """Run the job's command in a fresh process, its output appended to its log."""
    log = Path(task["log"])
    log.parent.mkdir(parents=True, exist_ok=True)
    threads = str(task["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
           "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "memsink_bench.sweep.job"]
    if task.get("track"):
        track = task["track"]
        command += ["--log-with", track["log_with"], "--record", track["record"], "--tracking-dir", track["directory"]]
    command += ["--", *task["argv"]]
    attempt = _attempt(log, task["run_id"])
    began = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"{HEADER} {task['run_id']} attempt {attempt} on {socket.gethostname()} "
                  f"at {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
                  f"command: memsink-bench {shlex.join(task['argv'])}\n")
        out.flush()
        code = _run(command, out, env)
        seconds = time.perf_counter() - began
        out.write(f"== exit code {code} after {seconds:.1f} s\n")
    outcome = {"name": task["name"], "ok": code == 0, "seconds": seconds, "attempt": attempt,
               "host": socket.gethostname(), "log": str(log), "error": None}
    if code != 0:
        outcome["error"] = error_line(log, code)
    elif task["output"] and not Path(task["output"]).is_file():
        outcome.update(ok=False, error=f"the command succeeded but wrote no {task['output']}")
    return outcome


def _run(command: list[str], out, env: dict) -> int:
    """The child's exit code; if this worker is stopped (Ctrl-C, Ray cancel, scancel), so is the child."""
    previous = None
    if threading.current_thread() is threading.main_thread():     # submitit: SIGTERM on scancel
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    with _LIVE_LOCK:
        _LIVE.add(process)
    try:
        return process.wait()
    except BaseException:
        _stop(process)
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(process)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _stop(process: subprocess.Popen) -> None:
    """SIGINT (the CLI stops cleanly on it), then SIGKILL if it is still there after a grace period."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_all() -> None:
    """Stop every job process this worker started (the local engine's Ctrl-C)."""
    with _LIVE_LOCK:
        processes = list(_LIVE)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        _stop(process)


def _attempt(log: Path, run_id: str) -> int:
    """1 + the attempts this sweep run already made at the job (their headers are in its log)."""
    if not log.is_file():
        return 1
    marker = f"{HEADER} {run_id} attempt"
    with open(log, errors="replace") as handle:
        return 1 + sum(line.startswith(marker) for line in handle)


def error_line(log: Path, code: int) -> str:
    """The one line that says why the job's last attempt failed."""
    lines = Path(log).read_text(errors="replace").splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith(HEADER)), default=0)
    body = [line.strip() for line in lines[start:] if line.strip() and not line.startswith(("==", "command:"))]
    for line in reversed(body):
        if line.startswith("memsink-bench: error:"):
            return line[len("memsink-bench: "):]
    for line in reversed(body):                  # a traceback's last line: `SomeError: message`
        if EXCEPTION_LINE.match(line):
            return line
    if code == 130:
        return "interrupted"
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit code {code}" + (f": {body[-1]}" if body else "")

