"""Helpers shared by the calibration data readers: shapes, dtypes and messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from edgec.errors import CalibrationDataError

if TYPE_CHECKING:
    from edgec.compiler.model import TensorSpec

# Per model input, arrays of the per-sample shape (no batch axis), in data order.
Rows = dict[str, list[np.ndarray]]


def fmt_shape(shape: Sequence[object]) -> str:
    """``[1, 3, 32, 32]``: a shape as the error messages print it (symbolic dims by name)."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def batch_size(spec: "TensorSpec") -> int:
    """Rows per sample: the model's static batch dimension, else 1."""
    if spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 0:
        return int(spec.shape[0])
    return 1


def sample_shape(spec: "TensorSpec") -> tuple[int | None, ...]:
    """Per-sample shape (batch axis dropped); None where the model's dimension is symbolic."""
    return tuple(d if isinstance(d, int) and d > 0 else None for d in spec.shape[1:])


def expected_shape(spec: "TensorSpec") -> list[object]:
    """The model shape with the batch dimension set to the sample batch size."""
    if not spec.shape:
        return []
    return [batch_size(spec), *spec.shape[1:]]


def shape_matches(got: Sequence[int], want: Sequence[int | None]) -> bool:
    return len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))


def cast_to_model(name: str, arr: np.ndarray, spec: "TensorSpec", origin: str) -> np.ndarray:
    """`arr` in the model's dtype; float data for an integer input (or the reverse) is an error.

    float64 -> float32 and int64 <-> int32 (any integer width) happen silently: that is how
    numpy and PyTorch save data by default, and nothing is lost for calibration.
    """
    want = spec.np_dtype
    got = arr.dtype
    if got == want:
        return arr
    wk, gk = want.kind, got.kind
    if wk == "f" and gk == "f" or wk in "iu" and gk in "iu":
        return arr.astype(want)
    if wk == "b" and gk in "biu":
        return arr.astype(bool)
    if wk in "iu" and gk == "b":
        return arr.astype(want)
    hint = "integer ids" if wk in "iub" else "float values"
    kind = {"U": " (text)", "S": " (bytes)", "O": " (Python objects)", "V": " (records)"}.get(gk, "")
    raise CalibrationDataError(
        f"{origin} for input '{name}' has dtype {got.name}{kind}, model expects {want.name} ({hint})"
    )


def single_input(inputs: "list[TensorSpec]", what: str) -> None:
    if len(inputs) != 1:
        raise CalibrationDataError(
            f"{what} feeds single-input models, this model has inputs {', '.join(repr(s.name) for s in inputs)}; "
            "expected an .npz whose keys are the input names (or a folder of such .npz files)"
        )
