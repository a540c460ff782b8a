"""Sweeps: a YAML file of settings, presets, kinds, methods, `--set` grids and seeds, expanded into
jobs (checkpoint trainings first, then the method runs and analyses that need them) and run on an
existing engine: a local process pool, a Ray cluster, or Slurm through submitit.

- `spec.py`    the sweep file -> a `Plan` of `Job`s, each with the file that marks it done
- `worker.py`  one job on whatever node the engine picked: a fresh `memsink-bench` process, its log
- `job.py`     the entry point of that process (the CLI, then the optional tracker upload)
- `engines.py` the engines and the driver that submits ready jobs, retries and reports failures
- `command.py` `memsink-bench sweep plan | run | status`
"""
