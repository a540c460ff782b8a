"""Shared fixtures: a smoke-preset setting built once per test session, on a private cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def session_workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("workdir")


@pytest.fixture(scope="session")
def smoke_config():
    from memsink_bench.config import load_config
    return load_config("ts-canary", "smoke")


@pytest.fixture(scope="session")
def smoke_setting(smoke_config, session_workdir):
    from memsink_bench.setting import get_setting
    return get_setting(smoke_config.setting, smoke_config.data, session_workdir)
