"""NaN and Inf checks: weights, calibration/evaluation samples and model outputs.

A non-finite number anywhere in the inputs of a build makes every error metric meaningless
(``max(0.0, nan)`` is 0.0 in Python, a NaN scale rounds to anything). So each one fails
with one line naming the tensor and, for data, the sample, before any metric is computed.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from edgec.errors import EdgecError


class NonFiniteError(EdgecError):
    """A NaN or Inf in weights, data or outputs."""


def _describe(arr: np.ndarray) -> str | None:
    """``"2 NaN, 1 Inf (first at index (0, 3))"`` for a float array with non-finite values, else None."""
    if arr.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(arr)
    if not bad.any():
        return None
    n_nan = int(np.isnan(arr).sum())
    n_inf = int(bad.sum()) - n_nan
    parts = [f"{n_nan} NaN" if n_nan else "", f"{n_inf} Inf" if n_inf else ""]
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return f"{', '.join(p for p in parts if p)} value(s) (first at index {list(first)})"


def check_weights(proto: Any, source: str) -> None:
    """Fail on the first ONNX initializer (or Constant) holding NaN or Inf."""
    from onnx import numpy_helper

    tensors = list(proto.graph.initializer)
    tensors += [a.t for n in proto.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    for t in tensors:
        if t.data_type not in (1, 10, 11, 16):  # float, float16, double, bfloat16
            continue
        what = _describe(np.asarray(numpy_helper.to_array(t)))
        if what:
            raise NonFiniteError(f"weight '{t.name}' of '{source}' has {what}; edgec cannot quantize or verify "
                                 "a model with non-finite weights")


def check_samples(samples: Iterable[Mapping[str, np.ndarray]], role: str, origin: str) -> None:
    """Fail on the first sample with a NaN or Inf in a float input."""
    for i, sample in enumerate(samples):
        for name, arr in sample.items():
            what = _describe(np.asarray(arr))
            if what:
                raise NonFiniteError(f"{role} sample {i} of '{origin}': input '{name}' has {what}")


def check_outputs(outputs: Mapping[str, np.ndarray], side: str, sample: int) -> None:
    """Fail when a model's outputs on a sample are not finite (``side``: which model ran)."""
    for name, arr in outputs.items():
        what = _describe(np.asarray(arr))
        if what:
            hint = ("the float model itself overflows or divides by zero on this input" if side == "reference"
                    else "the compiled artifact overflows where the float model does not")
            raise NonFiniteError(f"{side} output '{name}' on sample {sample} has {what}: {hint}")
