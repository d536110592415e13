"""Running the `nextworld` command in a subprocess, and what its user errors must look like."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m nextworld ARGS`` from the repository root, output captured."""
    return subprocess.run([sys.executable, "-m", "nextworld", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2 and exactly one stderr line, ``nextworld: error: ...``, holding every fragment."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nextworld: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
