"""Helpers for the security and bad-input tests: the real `edgec` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CliResult

EDGEC = [sys.executable, "-m", "edgec.cli"]


def run_edgec(*args, cwd: Path | None = None, env: dict | None = None, timeout: int = 600) -> CliResult:
    """Run ``edgec ARGS`` as a separate process (third-party logging goes to the real stderr)."""
    proc = subprocess.run([*EDGEC, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(res: CliResult, *needles: str) -> str:
    """The CLI contract: non-zero exit, exactly one ``error:`` line on stderr, no traceback."""
    assert res.code != 0, res
    lines = [ln for ln in res.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.err
    assert lines[0].startswith("error: "), res.err
    assert "internal error" not in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]
