"""The README's two set-up commands and what `.ci/run` executes cannot drift apart."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    """The first two fenced bash blocks of the README: the main command, then the test command."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [block.strip() for block in blocks[:2]]


def ci_assignment(name: str) -> str:
    """The value `.ci/run` assigns to NAME (single-quoted, one line), as bash would read it."""
    text = (ROOT / ".ci" / "run").read_text()
    found = re.findall(rf"^{name}=('[^'\n]*')$", text, re.M)
    assert len(found) == 1, f".ci/run must assign {name} exactly once"
    [value] = shlex.split(found[0])
    return value


def test_readme_has_exactly_two_one_line_setup_commands():
    main, tests = readme_commands()
    assert "\n" not in main and "\n" not in tests
    assert main.startswith("pip install ") and "memsink-bench run" in main
    assert tests.startswith("pip install ") and tests.endswith("python -m pytest -q")


def test_ci_runs_exactly_the_readme_commands():
    main, tests = readme_commands()
    assert ci_assignment("MAIN_COMMAND") == main
    assert ci_assignment("TEST_COMMAND") == tests
    script = (ROOT / ".ci" / "run").read_text()
    # each is executed, not just declared: the test command whole, the main one split at its first &&
    assert re.search(r'phase "tests" "\$clone" \S+ "\$TEST_COMMAND"', script)
    assert 'main_install=${MAIN_COMMAND%% && *}' in script and 'main_run=${MAIN_COMMAND#* && }' in script
    assert re.search(r'phase "main install" "\$clone" \S+ "\$main_install"', script)
    assert re.search(r'phase "main run" "\$scratch/work" \S+ "\$main_run"', script)
    assert 'export MEMSINK_BENCH_CACHE="$scratch/cache"' in script


def test_ci_uses_fresh_virtual_environments_with_their_bundled_pip():
    script = (ROOT / ".ci" / "run").read_text()
    assert script.count("python3 -m venv ") == 2 and "--system-site-packages" not in script
    assert "pip install --upgrade pip" not in script and "ensurepip" not in script


def test_the_record_the_readme_says_is_reused_is_the_main_commands_own():
    """Inside the clone the main command reuses the committed record the README names."""
    from memsink_bench.config import load_config
    from memsink_bench.run import plan_run

    [named] = set(re.findall(r"ig__standard__[0-9a-f]{10}\.json", (ROOT / "README.md").read_text()))
    path = plan_run("ig", load_config("ts-canary", "cpu"), ROOT / "results").path
    assert path.name == named and path.is_file()
