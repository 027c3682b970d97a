"""``--calib random``: deterministic synthetic samples when no data is at hand.

Ranges from random data only say the pipeline runs, not that the model will be accurate;
`CalibrationData.random` is set so that reports flag it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgec.calibration._common import batch_size, fmt_shape
from edgec.errors import CalibrationDataError

if TYPE_CHECKING:
    from edgec.compiler.model import TensorSpec

DEFAULT_VOCAB = 1000


def vocab_size(tokenizer_dir: Path | None) -> int | None:
    """Vocabulary size from a model folder's ``config.json`` or ``tokenizer.json``, if readable.

    Read as JSON rather than through transformers so ``random`` stays cheap.
    """
    if tokenizer_dir is None:
        return None
    folder = Path(tokenizer_dir)
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if isinstance(cfg.get("vocab_size"), int) and cfg["vocab_size"] > 0:
            return int(cfg["vocab_size"])
    except (OSError, ValueError, AttributeError):
        pass
    try:
        tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        vocab = tok.get("model", {}).get("vocab")
        if vocab:
            return len(vocab)
    except (OSError, ValueError, AttributeError):
        pass
    return None


# One synthetic sample larger than this is a mistyped --input-shape, not a model to calibrate.
MAX_SAMPLE_BYTES = 2 * 1024**3


def check_sample_size(inputs: "list[TensorSpec]") -> None:
    """Refuse inputs whose one sample would not fit in memory, before allocating anything."""
    total = 0
    for s in inputs:
        n = batch_size(s) * int(np.prod([int(d) for d in s.shape[1:]], dtype=np.float64)) if s.shape else 1
        total += n * s.np_dtype.itemsize
        if total > MAX_SAMPLE_BYTES:
            raise CalibrationDataError(
                f"one sample of input '{s.name}' with shape {fmt_shape(s.shape)} needs {total / 1024**3:.1f} GiB "
                f"(limit {MAX_SAMPLE_BYTES // 1024**3} GiB); check --input-shape")


def random_samples(inputs: "list[TensorSpec]", n: int, *, seed: int = 0,
                   tokenizer_dir: Path | None = None) -> list[dict[str, np.ndarray]]:
    """`n` samples: floats standard normal, ``*ids*`` integers random ids, masks ones.

    ``token_type_ids`` are zeros (models with a single segment type reject 1) and
    ``position_ids`` count up, so that transformer inputs stay valid.
    """
    for s in inputs:
        symbolic = [d for d in s.shape[1:] if not (isinstance(d, int) and d > 0)]
        if symbolic:
            raise CalibrationDataError(
                f"model input '{s.name}' has shape {fmt_shape(s.shape)} with symbolic dim(s) "
                f"{', '.join(map(str, symbolic))}; random calibration data needs static shapes (fix them with --input-shape)"
            )
    check_sample_size(inputs)
    vocab = vocab_size(tokenizer_dir) or DEFAULT_VOCAB
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(int(n)):
        sample = {}
        for s in inputs:
            shape = tuple([batch_size(s), *s.shape[1:]]) if s.shape else ()
            dt = s.np_dtype
            lname = s.name.lower()
            if dt.kind == "f":  # drawn in the model's dtype: no float64 copy of a large input
                draw = dt if dt in (np.float32, np.float64) else np.float32
                arr = rng.standard_normal(shape, dtype=draw).astype(dt, copy=False)
            elif dt.kind == "b" or "mask" in lname:
                arr = np.ones(shape, dtype=dt)
            elif "token_type" in lname or "segment" in lname:
                arr = np.zeros(shape, dtype=dt)
            elif "position" in lname and shape:
                arr = np.broadcast_to(np.arange(shape[-1], dtype=dt), shape).copy()
            elif "ids" in lname:
                arr = rng.integers(0, min(vocab, int(np.iinfo(dt).max) + 1), size=shape).astype(dt)
            else:
                arr = np.zeros(shape, dtype=dt)
            sample[s.name] = arr
        samples.append(sample)
    return samples
