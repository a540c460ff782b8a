"""Shared timing helper of the benchmark scripts (run as `python benchmarks/<script>.py`)."""

from __future__ import annotations

import statistics
import time


def timed(function, repeats: int) -> tuple[float, object]:
    """Median wall seconds of `repeats` calls after one warm-up call, and the last call's result."""
    function()
    times, result = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result
