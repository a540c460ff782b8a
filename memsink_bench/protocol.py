"""Selection seeds and evaluation seeds: a row's configuration is chosen on runs it does not report.

A results directory may declare its protocol in `protocol.yaml`:

```yaml
selection_seeds: [100, 101, 102]   # runs with these seeds choose each row's configuration
criterion: gap closed @0.05        # a leaderboard statistic: the mean over the selection seeds decides
```

With a protocol, the leaderboard splits the records by seed (the training seed; a pretrained
model's runs, which have none, by their method seed). For every row (setting, preset, group,
method, checkpoint) each configuration that has selection runs is scored by the criterion's mean
over them (ties: the Pareto AUC, then the configuration's text), and the row shows the chosen
configuration's evaluation runs only, so a larger tuning grid cannot win by picking on the
numbers it reports. A row whose configurations have no selection runs falls back to the best
mean on its reported seeds and says so in its `selected on` column. Without a protocol every
row is selected on its reported seeds, as the column says.

A sweep that follows the protocol gives every seed its own data seed (`seed_fields: [train.seed,
data.seed]`), so each evaluation seed has its own forget set, canaries and tokenizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import UserError

PROTOCOL_FILE = "protocol.yaml"
REPORTED = "reported seeds"


@dataclass(frozen=True)
class Protocol:
    selection_seeds: tuple[int, ...]
    criterion: str

    def selects(self, record) -> bool:
        return seed_of(record) in self.selection_seeds

    def label(self) -> str:
        return "seeds " + ",".join(str(s) for s in self.selection_seeds)


def seed_of(record) -> int:
    return record.seeds.train if record.seeds.train >= 0 else record.seeds.method


def load_protocol(results: Path) -> Protocol | None:
    """The protocol declared in `results/protocol.yaml`, or None."""
    from .leaderboard import RANK_BY, STATISTICS

    path = Path(results) / PROTOCOL_FILE
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise UserError(f"malformed YAML in {path}", "fix the YAML syntax") from None
    if not isinstance(raw, dict) or set(raw) - {"selection_seeds", "criterion"}:
        raise UserError(f"{path} must be a mapping of selection_seeds and criterion",
                        "write `selection_seeds: [100, 101]` and optionally `criterion: gap closed @0.05`")
    seeds = raw.get("selection_seeds")
    if not isinstance(seeds, list) or not seeds or any(not isinstance(s, int) or isinstance(s, bool) for s in seeds):
        raise UserError(f"selection_seeds in {path} is not a non-empty list of integers", "e.g. [100, 101, 102]")
    criterion = raw.get("criterion", RANK_BY)
    if criterion not in STATISTICS:
        raise UserError(f"criterion '{criterion}' in {path} is not a leaderboard statistic",
                        f"use one of: {', '.join(STATISTICS)}")
    return Protocol(tuple(seeds), criterion)


def protocol_of(records) -> Protocol | None:
    """The protocol of the results directory the records were read from (all from one directory)."""
    directories = {Path(r.path).parents[2] for r in records if getattr(r, "path", None)}
    if len(directories) != 1:
        return None
    return load_protocol(directories.pop())


def choose(candidates: dict[str, list], criterion: str) -> str:
    """The key of the best configuration: the highest mean of `criterion` over its selection
    records, ties to the larger Pareto AUC, then to the key's text (never to file order)."""
    from .intervals import point_value
    from .leaderboard import STATISTICS

    def score(key):              # a missing score (NaN) ranks last, as in the leaderboard
        records = candidates[key]
        values = (point_value(records, STATISTICS[criterion]), point_value(records, STATISTICS["Pareto AUC"]))
        return tuple(float("-inf") if math.isnan(v) else v for v in values)

    return sorted(candidates, key=lambda key: (*(-v for v in score(key)), key))[0]
