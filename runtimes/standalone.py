"""Standalone bench harnesses that targets copy into bundles (``runtimes/harnesses/``).

Each ``bench_<runtime>.py`` needs only numpy and its runtime, shares ``edgec_benchlib.py``
(copied beside it), verifies the bundle against its manifest before running, and prints
one ``edgec.bench/1`` object: what remote devices (``ssh://``) and test farms run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent / "harnesses"
LIBRARY = "edgec_benchlib.py"


def install_harness(out_dir: Path, script: str) -> list[str]:
    """Copy ``script`` (e.g. ``bench_openvino.py``) and its library into ``out_dir``; return the file names."""
    for name in (script, LIBRARY):
        shutil.copyfile(HARNESS_DIR / name, Path(out_dir) / name)
    return [script, LIBRARY]
