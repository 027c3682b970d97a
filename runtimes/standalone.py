"""Standalone bench harnesses that targets copy into bundles.

Each target owns its ``bench_<runtime>.py`` (``targets/<t>/harness/``); it needs only numpy
and its runtime, shares ``edgec_benchlib.py`` (``runtimes/harnesses/``, copied beside it), verifies the bundle against its manifest before running, and prints
one ``edgec.bench/1`` object: what remote devices (``ssh://``) and test farms run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent / "harnesses"
LIBRARY = "edgec_benchlib.py"
STATS = Path(__file__).resolve().parent / "bench_stats.py"  # the statistics `edgec bench` itself uses


def install_harness(out_dir: Path, script: Path) -> list[str]:
    """Copy a target's ``script`` (e.g. ``.../bench_openvino.py``), the library and bench_stats.py into ``out_dir``.

    Returns:
        The names of the copied files.
    """
    script = Path(script)
    shutil.copyfile(script, Path(out_dir) / script.name)
    shutil.copyfile(HARNESS_DIR / LIBRARY, Path(out_dir) / LIBRARY)
    shutil.copyfile(STATS, Path(out_dir) / STATS.name)
    return [script.name, LIBRARY, STATS.name]
