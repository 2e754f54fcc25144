"""The code passes ruff with the rules in pyproject.toml ([tool.ruff]), so the style holds by itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    # The interpreter running the suite has ruff as a dev dependency (requirements.lock). Without it
    # `python -m ruff` exits non-zero and this test fails: it is never skipped.
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format=concise", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"ruff check (exit {result.returncode}):\n{result.stdout}{result.stderr}"
