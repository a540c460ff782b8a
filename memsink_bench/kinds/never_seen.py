"""The never-seen reference: the standard data with the forget (repeated) sequences removed, so
the model never saw them at all. Membership inference measures PrivLeak against it, and
relearning compares with how fast it learns the forget set from nothing."""

from __future__ import annotations

from ..config import ExperimentConfig
from .base import Kind


class NeverSeen(Kind):
    name = "never-seen"
    description = "the standard data without the repeated stories (reference: a model that never saw them)"

    def repetitions(self, config: ExperimentConfig) -> int:
        return 0
