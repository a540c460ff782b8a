"""tasks/ and baselines/ ship inside the wheel, so a non-editable install finds them."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_carries_the_task_and_baseline_yamls(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "-w", str(tmp_path), "--no-deps",
                           "--no-build-isolation", "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [wheel] = list(tmp_path.glob("memsink_bench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("tasks", "baselines"):
        shipped = {Path(n).name for n in names if n.startswith(f"memsink_bench/{folder}/")}
        assert shipped == {p.name for p in (ROOT / folder).glob("*.yaml")}
    assert any(n.endswith("entry_points.txt") for n in names)
