"""A sweep file -> the jobs it asks for, each with the one file whose existence means "done".

```yaml
name: smoke                          # logs go to <workdir>/sweeps/<name>/ (default: the file's stem)
defaults: {presets: [smoke]}         # any group key; a group's own value replaces it (set/grid: merged)
engine: {workers: 2, threads: 1, retries: 1, ray: {...}, slurm: {...}}   # flags override these
trainings:                           # checkpoints to train even if no run below needs them
  - {settings: [ts-repetition], kinds: [memsinks], grid: {memsinks.sink_fraction: [0.1, 0.5]}}
runs:                                # method runs; the checkpoints they need are added as trainings
  - settings: [ts-canary, ts-repetition]
    methods: [ig, hard-concrete]     # `all`: every built-in method
    checkpoints: [standard]          # KIND[:VIEW]; default: the method's own
    set: {sweep.ratios: [0.1]}       # one value per key, passed as --set key=value
    grid: {method.lr: [1e-4, 1e-3]}  # every combination of the lists
    tuning: true                     # also every configuration of each method's `tuning_grid` (baselines/);
                                     # `selected`: every configuration on the selection seeds of
                                     # results/protocol.yaml, then only the chosen one on `seeds`
    seeds: [0, 1]                    # seed s: --set train.seed=s and --seed s (paired)
    seed_fields: [train.seed, data.seed]   # what else a seed sets (default [train.seed]): its own forget set
analyses:
  - {settings: [ts-canary], analyses: [rare-tokens], checkpoints: [standard]}
collect: ["report"]                  # commands run once every job is done (report, plot, leaderboard)
```

Expansion resolves every config and method with the same functions `train` and `run` use, so a
bad key fails here with the line's location, and a job's output path is exactly the path the
command writes. Nothing heavy is imported or computed.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import METHOD_SECTIONS, SAFE_NAME, load_config
from ..errors import UserError, did_you_mean

ACTIONS = ("train", "run", "analyze")
COMMON_KEYS = ("settings", "presets", "set", "grid", "seeds", "seed_fields")
SEED_FIELDS = ("train.seed", "data.seed")     # config fields a sweep seed may set (besides the method seed)
GROUP_KEYS = {
    "trainings": (*COMMON_KEYS, "kinds"),
    "runs": (*COMMON_KEYS, "methods", "checkpoints", "method_seeds", "tuning"),
    "analyses": (*COMMON_KEYS, "analyses", "checkpoints"),
}
TOP_KEYS = ("name", "description", "defaults", "engine", *GROUP_KEYS, "collect")
ENGINE_KEYS = {
    "": ("workers", "threads", "retries", "ray", "slurm"),
    "ray": ("address", "num_cpus", "num_gpus"),
    "slurm": ("cluster", "partition", "time", "gpus", "cpus", "mem_gb", "array_parallelism", "account", "qos",
              "additional"),
}
# fields a job may set but that decide nothing a sweep plans: they never enter a key
RUN_TIME_FIELDS = ("train.log_with", "train.device")
COLLECT_COMMANDS = ("report", "plot", "leaderboard", "localize")


@dataclass(frozen=True)
class Job:
    """One command of the sweep; `output` exists exactly when it has been done."""

    action: str                              # train | run | analyze
    name: str                                # unique and file-name safe: the job's log file
    setting: str                             # as passed to --setting (a name or a task YAML path)
    setting_name: str                        # the setting's own name
    preset: str
    overrides: tuple[str, ...]               # config `--set section.key=value`
    output: Path
    kind: str | None = None                  # train
    method: str | None = None                # run
    checkpoint: str | None = None            # run, analyze: KIND[:VIEW] or a directory
    method_overrides: tuple[str, ...] = ()   # run: method.* / sweep.*
    seed: int = 0                            # run: the method seed
    analysis: str | None = None              # analyze
    needs: tuple[str, ...] = ()              # names of the trainings whose checkpoints it uses
    log_with: str = "none"                   # the job's experiment tracker (train.log_with)
    tracking_dir: Path | None = None         # run: where its tracker writes the record's metrics
    explicit: bool = True                    # train: listed under `trainings:` (else only needed by runs)

    @property
    def done(self) -> bool:
        return self.output.is_file()

    def argv(self, workdir: Path, results: Path, threads: int | None = None) -> list[str]:
        """The `memsink-bench` arguments that do this job (threads: per job, never in a key)."""
        sets = [*self.overrides, *([f"train.threads={threads}"] if threads else [])]
        common = ["--setting", self.setting, "--preset", self.preset,
                  *[arg for text in sets for arg in ("--set", text)], "--workdir", str(workdir), "--quiet"]
        if self.action == "train":
            return ["train", "--kind", self.kind, *common, "--resume"]
        method_sets = [arg for text in self.method_overrides for arg in ("--set", text)]
        checkpoint = ["--checkpoint", self.checkpoint] if self.checkpoint else []
        if self.action == "run":
            return ["run", "--method", self.method, *checkpoint, "--seed", str(self.seed), *common, *method_sets,
                    "--results", str(results)]
        return ["analyze", self.analysis, *checkpoint, *common, "--results", str(results)]

    def describe(self) -> str:
        what = {"train": f"{self.kind}", "analyze": f"{self.analysis} on {self.checkpoint}",
                "run": f"{self.method}" + (f" on {self.checkpoint}" if self.checkpoint else "")
                       + (f" seed {self.seed}" if self.seed else "")}[self.action]
        sets = " ".join([*self.overrides, *self.method_overrides])
        return f"{self.action:7s} {self.setting_name}/{self.preset} {what}" + (f"  {sets}" if sets else "")


@dataclass
class Plan:
    """Every job of a sweep file in order (trainings, runs, analyses) and its collect steps."""

    name: str
    path: Path
    jobs: list[Job]
    collect: list[list[str]] = field(default_factory=list)
    engine: dict = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)   # evaluation runs planned once their selection runs exist

    def by_name(self) -> dict[str, Job]:
        return {job.name: job for job in self.jobs}

    def states(self) -> dict[str, str]:
        """job name -> done | missing | unneeded (a training added for runs whose outputs all exist)."""
        done = {job.name: job.done for job in self.jobs}
        needed = {need for job in self.jobs if job.action != "train" and not done[job.name] for need in job.needs}
        return {job.name: "done" if done[job.name] else
                "missing" if job.action != "train" or job.explicit or job.name in needed else "unneeded"
                for job in self.jobs}

    def missing(self) -> list[Job]:
        """The jobs still to do, in plan order."""
        states = self.states()
        return [job for job in self.jobs if states[job.name] == "missing"]

    def counts(self) -> dict[str, dict[str, int]]:
        """action -> {done, missing, unneeded, total}."""
        states = self.states()
        out = {}
        for action in ACTIONS:
            names = [states[job.name] for job in self.jobs if job.action == action]
            out[action] = {state: names.count(state) for state in ("done", "missing", "unneeded")} | {"total": len(names)}
        return out


# --- reading the file ------------------------------------------------------------------------

def read_sweep(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sweep file {path} does not exist", "give the path of a sweep YAML, e.g. sweeps/smoke.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise UserError(f"malformed YAML in {path}" + (f" at line {mark.line + 1}" if mark else ""),
                        "fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"sweep file {path} is not a mapping", "see sweeps/smoke.yaml for the layout")
    _known(raw, TOP_KEYS, str(path))
    if not any(raw.get(key) for key in GROUP_KEYS):
        raise UserError(f"sweep file {path} has no jobs", "add a `runs:`, `trainings:` or `analyses:` list")
    return raw


def _known(mapping: dict, allowed, where: str) -> None:
    for key in mapping:
        if key not in allowed:
            raise UserError(f"{where}: unknown key '{key}'", did_you_mean(str(key), allowed))


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where} must be a mapping", "write it as `key: value` lines")
    return value


def _method_key(key: str) -> bool:
    """Is a sweep `set`/`grid` key the method's (method.* or sweep.*) rather than the config's?"""
    return key.split(".", 1)[0] in METHOD_SECTIONS


def _tuned_kind(kind: str, where: str) -> bool:
    """Is checkpoint kind `kind` also a training-time method with a declared tuning grid (memsinks,
    gradient-masked), so that its configuration is chosen by the protocol?"""
    from ..methods.registry import BUILTINS
    from ..run import baseline_file

    if kind not in BUILTINS or baseline_file(kind) is None:
        return False
    return bool(tuning_grid(kind, where))


def tuning_grid(method: str, where: str) -> dict:
    """A built-in method's declared tuning grid (baselines/<name>.yaml `tuning_grid`) as sweep grid
    keys: a plain name is a hyperparameter (method.NAME), a dotted one a config field (memsinks.*)."""
    from ..run import baseline_file

    path = baseline_file(method)
    if path is None:
        raise UserError(f"{where}: method '{method}' declares no tuning grid (tuning: true needs a built-in)",
                        "give its grid under `grid:` instead")
    raw = yaml.safe_load(path.read_text()) or {}
    grid = raw.get("tuning_grid") or {}
    return {(key if "." in key else f"method.{key}"): values for key, values in grid.items()}


def _list(value, where: str, kind=str) -> list:
    """A scalar or a list of scalars of one type (`str` names, `int` seeds), as a list."""
    values = value if isinstance(value, list) else [value]
    if not values or any(not isinstance(v, kind) or isinstance(v, bool) for v in values):
        noun = "name" if kind is str else "integer"
        raise UserError(f"{where} must be a {noun} or a non-empty list of them", f"e.g. [{'0, 1' if kind is int else 'a, b'}]")
    return values


def _grid_values(value, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise UserError(f"{where} must be a non-empty list of values", "a single value goes under `set:`")
    return value


def format_value(value) -> str:
    """A YAML value as `--set` text that `config.parse_value` reads back to the same value."""
    return value if isinstance(value, str) else json.dumps(value)


def engine_options(raw: dict, where: str) -> dict:
    """The file's `engine:` section, checked (types are checked where they are used)."""
    engine = dict(_mapping(raw, f"{where}: engine"))
    _known(engine, ENGINE_KEYS[""], f"{where}: engine")
    for section in ("ray", "slurm"):
        engine[section] = dict(_mapping(engine.get(section), f"{where}: engine.{section}"))
        _known(engine[section], ENGINE_KEYS[section], f"{where}: engine.{section}")
    return engine


# --- expansion -------------------------------------------------------------------------------

class _Expander:
    """Builds the job list, deduplicated by output (a checkpoint several runs need is one job)."""

    def __init__(self, path: Path, results: Path, workdir: Path, extra_sets: list[str]):
        self.base = path.resolve().parent
        self.results, self.workdir, self.extra_sets = results, workdir, extra_sets
        self.trainings: dict[Path, Job] = {}
        self.others: dict[Path, Job] = {}
        self.analysis_configs: dict[Path, str] = {}
        self.waiting: list[str] = []

    def local_path(self, spec: str) -> str:
        """A setting YAML or method file named relative to the sweep file, made absolute."""
        head, colon, tail = spec.partition(".py:")
        if colon or spec.endswith(".py"):
            head = head if colon else spec[:-3]
            head = head if Path(head).is_absolute() else str((self.base / head).resolve())
            return f"{head}.py" + (f":{tail}" if colon else "")
        if spec.endswith((".yaml", ".yml")) and not Path(spec).is_absolute():
            return str((self.base / spec).resolve())
        return spec

    def combinations(self, group: dict, where: str):
        """(setting, preset, config overrides, method overrides, seed) for every grid point."""
        fixed = _mapping(group.get("set"), f"{where}.set")
        grid = _mapping(group.get("grid"), f"{where}.grid")
        for key in set(fixed) & set(grid):
            raise UserError(f"{where}: '{key}' is in both set and grid", "give it in one of them")
        for key in [*fixed, *grid]:
            if not isinstance(key, str) or "." not in key:
                raise UserError(f"{where}: '{key}' is not a section.key name", "e.g. train.lr or method.lr")
            if key == "train.threads":
                raise UserError(f"{where}: train.threads is set by the engine", "use engine.threads or --threads")
        seed_fields = _list(group.get("seed_fields", ["train.seed"]), f"{where} seed_fields")
        for key in seed_fields:
            if key not in SEED_FIELDS:
                raise UserError(f"{where}: seed_fields '{key}' is not a seed field", did_you_mean(key, SEED_FIELDS))
        for key in [*fixed, *grid]:
            if key in seed_fields and "seeds" in group:
                raise UserError(f"{where}: {key} is given by `seeds`", "drop it from set/grid")
        grid_values = [_grid_values(values, f"{where}.grid {key}") for key, values in grid.items()]
        seeds = _list(group["seeds"], f"{where} seeds", int) if "seeds" in group else [None]
        for setting in _list(group.get("settings"), f"{where} settings"):
            for preset in _list(group.get("presets", "cpu"), f"{where} presets"):
                for point in itertools.product(*grid_values):
                    pairs = [*fixed.items(), *zip(grid, point)]
                    sets = [f"{key}={format_value(value)}" for key, value in pairs]
                    method = tuple(s for s in sets if _method_key(s))
                    config_sets = [s for s in sets if s not in method]
                    for seed in seeds:
                        seed_set = [] if seed is None else [f"{key}={seed}" for key in seed_fields]
                        yield (self.local_path(setting), preset, (*config_sets, *seed_set, *self.extra_sets),
                               method, seed or 0)

    def config(self, setting: str, preset: str, overrides, where: str):
        try:
            return load_config(setting, preset, list(overrides))
        except UserError as error:
            raise UserError(f"{where}: {error}") from None

    def training(self, setting: str, preset: str, overrides: tuple, kind: str, config, explicit: bool = False) -> Job:
        from ..checkpoints import checkpoint_dir
        from ..kinds import check_kind

        check_kind(kind)
        directory = checkpoint_dir(self.workdir, kind, config)
        output = directory / "manifest.json"
        if output not in self.trainings:     # the first definition wins (its NOT_IN_KEY fields too)
            self.trainings[output] = Job(
                "train", f"train__{config.setting}-{config.preset}__{directory.name}", setting, config.setting, preset,
                overrides, output, kind=kind, log_with=config.train.log_with, explicit=explicit)
        return self.trainings[output]

    def add_trainings(self, group: dict, where: str) -> None:
        kinds = _list(group.get("kinds"), f"{where} kinds")
        for setting, preset, overrides, method, _ in self.combinations(group, where):
            if method:
                raise UserError(f"{where}: trainings take no method.*/sweep.* keys", "put them in a `runs:` group")
            config = self.config(setting, preset, overrides, where)
            for kind in kinds:
                try:
                    self.training(setting, preset, overrides, kind, config, explicit=True)
                except UserError as error:
                    raise UserError(f"{where}: {error}") from None

    def add_runs(self, group: dict, where: str) -> list[Path]:
        """Plan a `runs:` group; returns the record paths it asks for (also those already planned)."""
        from ..kinds import KINDS, NEVER_SEEN, NO_REP
        from ..methods.registry import BUILTINS
        from ..run import plan_run

        methods = _list(group.get("methods"), f"{where} methods")
        if group.get("tuning"):
            if group["tuning"] not in (True, "selected"):
                raise UserError(f"{where}: tuning must be true, false or selected", "write `tuning: true`")
            planned = []
            for method in (list(BUILTINS) if methods == ["all"] else methods):
                grid = {**(group.get("grid") or {}), **tuning_grid(method, where)}
                if group["tuning"] == "selected":
                    planned += self.add_selected(group, method, grid, where)
                else:
                    planned += self.add_runs({**group, "methods": [method], "tuning": False, "grid": grid}, where)
            return planned
        checkpoints = _list(group["checkpoints"], f"{where} checkpoints") if "checkpoints" in group else [None]
        method_seeds = _list(group["method_seeds"], f"{where} method_seeds", int) if "method_seeds" in group else None
        if "all" in methods:
            if len(methods) > 1 or group.get("checkpoints") or any(
                    _method_key(k) for k in [*(group.get("set") or {}), *(group.get("grid") or {})]):
                raise UserError(f"{where}: `methods: all` takes no other methods, checkpoints or method.*/sweep.* keys",
                                "list the methods by name to change their settings")
            methods = list(BUILTINS)
        planned = []
        for setting, preset, overrides, method_sets, seed in self.combinations(group, where):
            config = self.config(setting, preset, overrides, where)
            for method in methods:
                for checkpoint in checkpoints:
                    for method_seed in (method_seeds or [seed]):
                        spec = self.local_path(method)
                        try:
                            plan = plan_run(spec, config, self.results, checkpoint, list(method_sets), method_seed)
                            # its target, the no-rep and never-seen references, and the kind a
                            # training-time method replaces (run.checkpoint_bases)
                            kinds = [plan.checkpoint_spec.partition(":")[0], NO_REP, NEVER_SEEN,
                                     plan.method.scored_against()]
                            kinds = [kind for kind in kinds if kind in KINDS]
                            needs = tuple(dict.fromkeys(
                                self.training(setting, preset, overrides, k, config).name for k in kinds))
                        except UserError as error:
                            raise UserError(f"{where}: {error}") from None
                        self.others.setdefault(plan.path, Job(
                            "run", f"run__{config.setting}-{config.preset}__{plan.path.stem}", setting, config.setting,
                            preset, overrides, plan.path, method=spec, checkpoint=checkpoint, method_overrides=method_sets,
                            seed=method_seed, needs=needs, log_with=config.train.log_with,
                            tracking_dir=self.workdir / "runs" / config.setting / plan.path.stem / "tracking"))
                        planned.append(plan.path)
        return planned

    def add_selected(self, group: dict, method: str, grid: dict, where: str) -> list[Path]:
        """Every configuration of `grid` on the protocol's selection seeds; once all of those
        records exist, the chosen configuration (protocol.py's criterion) on the group's seeds.
        The choice is made per setting and preset, as the leaderboard makes it. A run on a
        checkpoint kind that is itself tuned (`checkpoints: [memsinks]`) runs on that kind's
        chosen configuration, in both stages, so its rows describe the model the kind's row reports."""
        from ..protocol import load_protocol

        protocol = load_protocol(self.results)
        if protocol is None:
            raise UserError(f"{where}: tuning: selected needs {self.results / 'protocol.yaml'}",
                            "write `selection_seeds: [100, 101]` there (see memsink_bench/protocol.py)")
        evaluation = _list(group.get("seeds", 0), f"{where} seeds", int)
        if set(evaluation) & set(protocol.selection_seeds):
            raise UserError(f"{where}: seeds {sorted(set(evaluation) & set(protocol.selection_seeds))} are "
                            "selection seeds", "report on seeds the protocol does not select on")
        planned = []
        for setting in _list(group.get("settings"), f"{where} settings"):
            for preset in _list(group.get("presets", "cpu"), f"{where} presets"):
                one = {**group, "settings": [setting], "presets": [preset]}
                paths, fixed = self._checkpoint_choices(one, method, protocol, where)
                planned += paths
                if fixed is None:
                    continue
                paths, point = self._choice({**one, "set": fixed}, method, grid, protocol, where)
                planned += paths
                if point is None:
                    missing = sum(not path.is_file() for path in paths)
                    self.waiting.append(f"{where}: {method} ({setting}, {preset}) on seeds {evaluation} waits "
                                        f"for {missing} selection runs")
                    continue
                planned += self.add_runs({**one, "methods": [method], "tuning": False, "grid": {},
                                          "set": {**fixed, **point}, "seeds": evaluation}, where)
        return planned

    def _checkpoint_choices(self, group: dict, method: str, protocol, where: str) -> tuple[list[Path], dict | None]:
        """(the selection runs of the tuned checkpoint kinds `group` runs on, its `set` with each
        such kind's chosen configuration merged in, or None while a kind's choice is still open)."""
        fixed, planned = dict(group.get("set") or {}), []
        checkpoints = _list(group["checkpoints"], f"{where} checkpoints") if "checkpoints" in group else []
        for checkpoint in checkpoints:
            kind = checkpoint.partition(":")[0]
            if not _tuned_kind(kind, where):
                continue
            own = {key: value for key, value in (group.get("set") or {}).items()
                   if not _method_key(key)}                    # the kind's settings, not the method's
            paths, point = self._choice({**group, "set": own}, kind, tuning_grid(kind, where), protocol, where,
                                        without=("checkpoints",))
            planned += paths
            if point is None:
                self.waiting.append(f"{where}: {method} on {checkpoint} ({group['settings'][0]}, "
                                    f"{group['presets'][0]}) waits for {kind}'s selection runs")
                return planned, None
            fixed.update(point)
        return planned, fixed

    def _choice(self, group: dict, method: str, grid: dict, protocol, where: str,
                without: tuple = ()) -> tuple[list[Path], dict | None]:
        """(the selection runs of every configuration of `grid` for `method` in `group`'s one
        setting and preset, the chosen configuration or None while any of them is missing)."""
        from ..protocol import choose
        from ..record import ResultRecord

        points = [dict(zip(grid, values)) for values in itertools.product(*[_grid_values(v, f"{where}.grid {k}")
                                                                            for k, v in grid.items()])]
        base = {key: value for key, value in group.items() if key not in without}
        base = {**base, "methods": [method], "tuning": False, "grid": {}}
        chosen_from = {json.dumps(point, sort_keys=True): self.add_runs(
            {**base, "set": {**(group.get("set") or {}), **point}, "seeds": list(protocol.selection_seeds)}, where)
            for point in points}
        planned = [path for paths in chosen_from.values() for path in paths]
        if any(not path.is_file() for path in planned):
            return planned, None
        best = choose({key: [ResultRecord.read(path) for path in paths] for key, paths in chosen_from.items()},
                      protocol.criterion)
        return planned, json.loads(best)

    def add_analyses(self, group: dict, where: str) -> None:
        from ..analyses import ANALYSES
        from ..analyses.store import analysis_path
        from ..checkpoints import NOT_IN_KEY
        from ..kinds import KINDS

        names = _list(group.get("analyses"), f"{where} analyses")
        for name in names:
            if name not in ANALYSES:
                raise UserError(f"{where}: unknown analysis '{name}'", did_you_mean(name, ANALYSES))
        checkpoints = _list(group.get("checkpoints", "standard"), f"{where} checkpoints")
        for setting, preset, overrides, method, _ in self.combinations(group, where):
            if method:
                raise UserError(f"{where}: analyses take no method.*/sweep.* keys", "put them in a `runs:` group")
            config = self.config(setting, preset, overrides, where)
            identity = config.to_dict()
            for key in NOT_IN_KEY:
                identity["train"].pop(key, None)
            for checkpoint in checkpoints:
                kind, _, view = checkpoint.partition(":")
                if kind not in KINDS:
                    raise UserError(f"{where}: analyses need a checkpoint kind, not '{checkpoint}'",
                                    did_you_mean(kind, KINDS))
                label = kind if view in ("", "default") else f"{kind}:{view}"
                for name in names:
                    output = analysis_path(self.results, config.setting, config.preset, label, name)
                    known = self.analysis_configs.setdefault(output, json.dumps(identity, sort_keys=True))
                    if known != json.dumps(identity, sort_keys=True):
                        raise UserError(f"{where}: two configs write the same analysis {output}",
                                        "an analysis is stored per setting, preset and checkpoint: give one config")
                    needs = (self.training(setting, preset, overrides, kind, config).name,)
                    self.others.setdefault(output, Job(
                        "analyze", f"analyze__{config.setting}-{config.preset}__{output.parent.name}__{name}", setting,
                        config.setting, preset, overrides, output, checkpoint=checkpoint, analysis=name, needs=needs,
                        log_with=config.train.log_with))


def _with_defaults(group: dict, defaults: dict, allowed, where: str) -> dict:
    """`set` and `grid` merge key by key (the group's value wins); any other key is replaced."""
    merged = {key: value for key, value in defaults.items() if key in allowed}
    for key, value in group.items():
        if key in ("set", "grid") and key in merged:
            value = {**_mapping(merged[key], f"defaults.{key}"), **_mapping(value, f"{where}.{key}")}
        merged[key] = value
    return merged


def collect_steps(raw, where: str, results: Path, workdir: Path) -> list[list[str]]:
    """Each `collect:` line parsed by the CLI's own parser; --results/--workdir point at the sweep's."""
    from ..cli import build_parser

    steps = []
    for index, line in enumerate(raw or []):
        if not isinstance(line, str):
            raise UserError(f"{where}: collect[{index}] must be a command line", "e.g. - report")
        argv = shlex.split(line)
        if argv[:1] == ["memsink-bench"]:
            argv = argv[1:]
        if not argv or argv[0] not in COLLECT_COMMANDS:
            raise UserError(f"{where}: collect[{index}] '{line}' is not one of {', '.join(COLLECT_COMMANDS)}",
                            "trainings, runs and analyses are jobs: put them in their groups")
        with contextlib.redirect_stderr(io.StringIO()) as errors:
            try:
                parsed = build_parser().parse_args(argv)
            except SystemExit:
                message = (errors.getvalue().strip().splitlines() or ["invalid arguments"])[-1]
                raise UserError(f"{where}: collect[{index}] '{line}': {message}", "fix the command line") from None
        if hasattr(parsed, "results"):
            argv += ["--results", str(results)]
        if hasattr(parsed, "workdir"):
            argv += ["--workdir", str(workdir)]
        steps.append(argv)
    return steps


def load_plan(path: Path, results: Path, workdir: Path, extra_sets: list[str] = ()) -> Plan:
    """Expand a sweep file. `extra_sets` (from `sweep run --set`) may only set fields in no key."""
    path = Path(path)
    raw = read_sweep(path)
    for text in extra_sets:
        if text.partition("=")[0] not in RUN_TIME_FIELDS:
            raise UserError(f"sweep --set '{text}' would change what the sweep computes",
                            f"only {', '.join(RUN_TIME_FIELDS)} can be set for a whole sweep; "
                            "put other keys in the sweep file")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or ".." in name:
        raise UserError(f"{path}: sweep name {name!r} is not a plain name", "use letters, digits, '-', '_' and '.'")
    results, workdir = Path(results).resolve(), Path(workdir).resolve()
    expander = _Expander(path, results, workdir, list(extra_sets))
    defaults = _mapping(raw.get("defaults"), f"{path}: defaults")
    _known(defaults, sorted({key for keys in GROUP_KEYS.values() for key in keys}), f"{path}: defaults")
    add = {"trainings": expander.add_trainings, "runs": expander.add_runs, "analyses": expander.add_analyses}
    for section, function in add.items():
        groups = raw.get(section) or []
        if not isinstance(groups, list):
            raise UserError(f"{path}: `{section}` must be a list of groups", "write each group as `- {...}`")
        for index, group in enumerate(groups):
            where = f"{path}: {section}[{index}]"
            group = _with_defaults(_mapping(group, where), defaults, GROUP_KEYS[section], where)
            _known(group, GROUP_KEYS[section], where)
            function(group, where)
    jobs = [*expander.trainings.values(), *sorted(expander.others.values(), key=lambda job: ACTIONS.index(job.action))]
    return Plan(name, path, jobs, collect_steps(raw.get("collect"), str(path), results, workdir),
                engine_options(raw.get("engine"), str(path)), expander.waiting)
