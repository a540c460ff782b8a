"""The cpu preset shows the phenomenon the benchmark is about (README, "Results"): standard training
memorizes the repeated ts-repetition stories, and the no-rep reference, which sees them once,
does not. Each test trains one cpu-preset checkpoint from nothing in a temporary workdir
(minutes on 2 CPU cores), so they are marked slow: `python -m pytest -m slow`.

Losses are the harness's own (`metrics.evaluate_state`: mean next-token loss per sequence);
exact match is measured by literally greedy-decoding each 32-token continuation after its
32-token prefix (`evaluate.greedy_exact_match`). Thresholds sit well inside the committed
records (standard: repeated 0.10 vs validation 0.90-0.92, 94-100% of continuations reproduced,
0% of single-seen control ones; no-rep: repeated 1.04 vs validation 1.13, 0% reproduced).
"""

from __future__ import annotations

import pytest
import torch

from memsink_bench.checkpoints import get_checkpoint
from memsink_bench.config import load_config
from memsink_bench.evaluate import greedy_exact_match
from memsink_bench.metrics import evaluate_state
from memsink_bench.setting import get_setting

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cpu_preset(tmp_path_factory):
    """(config, setting, workdir): ts-repetition at the cpu preset, built in a fresh workdir, on
    2 threads (threads are not part of a checkpoint's key: the weights do not depend on them)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    config = load_config("ts-repetition", "cpu", ["train.device=cpu", "train.threads=2"])
    workdir = tmp_path_factory.mktemp("cpu-preset")
    yield config, get_setting(config.setting, config.data, workdir), workdir
    torch.set_num_threads(threads)


def _measure(cpu_preset, kind: str) -> tuple[dict, dict, dict]:
    """(losses and EM of the harness, greedy EM on repeated, greedy EM on control) of one kind."""
    config, setting, workdir = cpu_preset
    model = get_checkpoint(workdir, setting, kind, config, progress=False).model
    state = evaluate_state(model, setting)
    return (state, greedy_exact_match(model, setting.repeated).summary(),
            greedy_exact_match(model, setting.control).summary())


def test_standard_memorizes_the_repeated_stories(cpu_preset):
    state, repeated, control = _measure(cpu_preset, "standard")
    assert state["repeated_loss"] <= 0.25 * state["val_loss"], state
    assert state["val_loss"] < 1.5, state                # it also learned the stories in general
    assert repeated["exact_match_full"] > 0.5, repeated  # most continuations reproduced verbatim
    # single-seen training stories are not: exact match measures memorization, not templates
    assert control["exact_match_full"] <= 0.1, control


def test_no_rep_does_not_memorize_them(cpu_preset):
    state, repeated, _ = _measure(cpu_preset, "standard-no-rep")
    assert state["repeated_loss"] >= 0.75 * state["val_loss"], state
    assert repeated["exact_match_full"] <= 0.1, repeated
    assert repeated["exact_match"] < 8, repeated         # tokens matched before the first miss, of 32
