"""tasks/, baselines/ and the story data ship inside the wheel, so a non-editable install finds them."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# sha256 of "\n".join(generate_stories(50, 0)): GOLDEN_SHA256[50, 0] of tests/data/test_synthetic.py
STORIES_50_SEED_0_SHA256 = "d5b9699c7517e054c9a20e5393c1bf4dda0756d86da85e27cc0227b09c09d5b4"
GENERATE = """import hashlib, memsink_bench.corpus.synthetic as synthetic
print(synthetic.__file__)
print(hashlib.sha256("\\n".join(synthetic.generate_stories(50, 0)).encode()).hexdigest())"""


def test_wheel_carries_the_task_baseline_and_story_yamls(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(tmp_path), "--no-deps",
                           "--no-build-isolation", "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [wheel] = list(tmp_path.glob("memsink_bench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("tasks", "baselines"):
        shipped = {Path(n).name for n in names if n.startswith(f"memsink_bench/{folder}/")}
        assert shipped == {p.name for p in (ROOT / folder).glob("*.yaml")}
    stories = ROOT / "memsink_bench" / "corpus" / "stories"
    shipped = {n for n in names if n.startswith("memsink_bench/corpus/stories/")}
    expected = {f"memsink_bench/corpus/stories/{p.relative_to(stories).as_posix()}" for p in stories.rglob("*.yaml")}
    assert shipped == expected and len(expected) == 14   # words, story and 12 arcs
    assert any(n.endswith("entry_points.txt") for n in names)

    installed = tmp_path / "installed"          # a pure-Python wheel installs by unpacking
    zipfile.ZipFile(wheel).extractall(installed)
    done = subprocess.run([sys.executable, "-c", GENERATE], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed)})
    assert done.returncode == 0, done.stderr[-2000:]
    module_file, digest = done.stdout.splitlines()
    assert Path(module_file).is_relative_to(installed)
    assert digest == STORIES_50_SEED_0_SHA256   # the packaged data makes the same corpus
