"""Every script in examples/ runs: each test starts one in a subprocess (as a user would)
with its fast flags and checks its output. Adding an example's test is one function:
``out = run_example("name.py", "--flag", tmp_path=tmp_path)`` and asserts on ``out``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(script: str, *args: str, tmp_path: Path, timeout: float = 120) -> str:
    """Run ``examples/<script> *args --out <tmp_path>``; fail with its output unless it
    exits 0; return its stdout."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"


def test_optimizers_linear_regression(tmp_path):
    out = run_example("optimizers_linear_regression.py", "--quick", tmp_path=tmp_path)
    names = [
        "gd (full batch)",
        "sgd (batch 1)",
        "sgd (batch 32)",
        "momentum 0.9 (batch 32)",
        "adam (batch 32)",
        "rmsprop (batch 32)",
    ]
    rows = {}
    for line in out.splitlines():
        for name in names:
            if line.startswith(name):
                rows[name] = line[len(name) :].split()
    assert list(rows) == names, out
    # full-batch GD at lr ~ 1/L on a condition-number-11 bowl: tens of steps, not hundreds
    lr, steps, secs, final = rows["gd (full batch)"]
    assert 5 <= int(steps) <= 100 and float(secs) > 0, out
    floor = float(re.search(r"noise floor \(least-squares MSE\) ([\d.]+)", out).group(1))
    assert floor < float(final) <= 1.01 * floor + 1e-5, out
    assert_png(tmp_path / "optimizers_linear_regression.png")
