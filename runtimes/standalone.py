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
STATS = Path(__file__).resolve().parent / "bench_stats.py"  # the statistics `edgec bench` itself uses


def install_harness(out_dir: Path, script: str) -> list[str]:
    """Copy ``script`` (e.g. ``bench_openvino.py``), its library and bench_stats.py into ``out_dir``; return the names."""
    for name in (script, LIBRARY):
        shutil.copyfile(HARNESS_DIR / name, Path(out_dir) / name)
    shutil.copyfile(STATS, Path(out_dir) / STATS.name)
    return [script, LIBRARY, STATS.name]
