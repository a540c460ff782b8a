"""Plain training, and its deduplicated reference."""

from __future__ import annotations

from ..config import ExperimentConfig
from .base import Kind


class Standard(Kind):
    name = "standard"
    description = "plain training on the setting"


class StandardNoRep(Kind):
    name = "standard-no-rep"
    description = "the repeated stories seen once (dedup reference: a model that never memorized)"

    def repetitions(self, config: ExperimentConfig) -> int:
        return 1
