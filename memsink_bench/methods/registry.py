"""Method registry: built-ins first, then installed plugins (entry-point group
`memsink_bench.methods`), then `path/to/file.py:ClassName` given explicitly on the command line.

Built-ins are lazy `module:Class` strings, so listing methods imports nothing heavy. A plugin
that fails to import is recorded as a problem and shown by `memsink-bench ls methods`; the other
methods keep working. Plugins are never discovered from arbitrary paths: only installed entry
points, or a file path the user typed.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError, did_you_mean
from .base import ModelEditor, NeuronLocalizer
from .training_time import TrainingTimeMethod

ENTRY_POINT_GROUP = "memsink_bench.methods"

BUILTINS = {
    "hard-concrete": "memsink_bench.methods.hard_concrete:HardConcretePruning",
    "ig": "memsink_bench.methods.ig:IntegratedGradients",
    "sparse-ft": "memsink_bench.methods.sparse_ft:SparseFineTuning",
    "co-unlearn": "memsink_bench.methods.co_unlearn:ContrastiveUnlearning",
    "co-edit": "memsink_bench.methods.co_edit:ContrastiveEditing",
    "random-neurons": "memsink_bench.methods.random_neurons:RandomNeurons",
    "random-sparse-ft": "memsink_bench.methods.sparse_ft:RandomSparseFineTuning",
    "memsinks": "memsink_bench.methods.training_time:MemSinksDrop",
    "gradient-masked": "memsink_bench.methods.training_time:GradientMaskedDrop",
}


@dataclass
class Entry:
    name: str
    target: str | type          # "module:Class" or the class itself
    source: str                 # "built-in", "plugin <distribution>", "file <path>"
    _cls: type | None = field(default=None, repr=False)

    def load(self) -> type:
        if self._cls is None:
            self._cls = self.target if isinstance(self.target, type) else _import_target(self.target)
            _check_method_class(self._cls, self.name)
        return self._cls


def _import_target(target: str) -> type:
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute)


def _check_method_class(cls, name: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, (NeuronLocalizer, ModelEditor, TrainingTimeMethod))):
        raise UserError(f"method '{name}' is not a NeuronLocalizer or ModelEditor subclass",
                        "subclass memsink_bench.methods.base.NeuronLocalizer or ModelEditor")


class Registry:
    def __init__(self):
        self.entries: dict[str, Entry] = {}
        self.problems: list[str] = []
        for name, target in BUILTINS.items():
            self.entries[name] = Entry(name, target, "built-in")
        self._load_entry_points()

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        for point in entry_points(group=ENTRY_POINT_GROUP):
            source = f"plugin {point.dist.name if point.dist else point.value}"
            if point.name in self.entries:
                self.problems.append(f"plugin '{point.name}' from {source} ignored: the name is taken "
                                     f"by {self.entries[point.name].source}")
                continue
            try:
                cls = point.load()
                _check_method_class(cls, point.name)
            except Exception as error:  # a broken plugin must not break the others
                self.problems.append(f"plugin '{point.name}' ({point.value}) failed to load: "
                                     f"{type(error).__name__}: {error}")
                continue
            self.entries[point.name] = Entry(point.name, cls, source, cls)

    def get(self, name: str) -> Entry:
        if name.endswith(".py") or ".py:" in name:
            return load_file_method(name)
        if name not in self.entries:
            broken = [p for p in self.problems if f"'{name}'" in p]
            if broken:
                raise UserError(broken[0], "fix or reinstall the plugin")
            raise UserError(f"unknown method '{name}'", did_you_mean(name, self.entries))
        return self.entries[name]

    def describe(self) -> list[dict]:
        rows = []
        for entry in self.entries.values():
            try:
                cls = entry.load()
                rows.append({"name": entry.name, "type": cls.method_type, "source": entry.source,
                             "summary": cls.summary})
            except Exception as error:
                rows.append({"name": entry.name, "type": "?", "source": entry.source,
                             "summary": f"failed to import: {type(error).__name__}: {error}"})
        if self.problems:
            rows.append({"name": "(problems)", "type": "", "source": "", "summary": "", "problems": self.problems})
        return rows


def load_file_method(spec: str) -> Entry:
    """`path/to/file.py:ClassName` (or `file.py` with exactly one method class in it)."""
    path_text, _, class_name = spec.partition(".py:")
    path = Path(path_text + ".py" if class_name else spec)
    if not path.is_file():
        raise UserError(f"method file {path} does not exist", "give --method path/to/file.py:ClassName")
    module_name = f"memsink_bench_user_method_{abs(hash(str(path.resolve())))}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    try:
        loader_spec.loader.exec_module(module)
    except Exception as error:
        raise UserError(f"method file {path} failed to import: {type(error).__name__}: {error}",
                        "fix the error in that file") from None
    if not class_name:
        candidates = [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module_name
                      and issubclass(v, (NeuronLocalizer, ModelEditor))]
        if len(candidates) != 1:
            raise UserError(f"{path} defines {len(candidates)} method classes", "name one: --method FILE.py:ClassName")
        cls = candidates[0]
    else:
        if not hasattr(module, class_name):
            raise UserError(f"{path} has no class '{class_name}'",
                            did_you_mean(class_name, [k for k, v in vars(module).items() if isinstance(v, type)]))
        cls = getattr(module, class_name)
    name = getattr(cls, "name", "") or cls.__name__
    entry = Entry(name, cls, f"file {path}")
    entry.load()
    return entry


_REGISTRY: Registry | None = None


def registry() -> Registry:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY

