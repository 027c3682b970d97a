"""How the artifact's I/O relates to onnx2tf's Keras model, found by measurement.

onnx2tf rewrites the graph channels-last and guesses, tensor by tensor, which tensors are
images. For 4-D image inputs/outputs the guess is right and the artifact keeps NHWC (the
manifest records the layout). For everything else its guess can reach tensors that are
not images ([3, 4, 5] comes out as [3, 5, 4]; a scalar input becomes [1]), so the shape
of a Keras output is not evidence enough: `output_fix` runs the Keras model and the ONNX
model on the same sample and picks the transpose that makes their values agree. The
artifact then returns every non-image output in the model's own shape.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

MAX_PERMUTED_RANK = 6  # 720 candidate transposes at most


def nhwc(shape: tuple) -> tuple:
    """NCHW... -> NHWC... of a shape (rank >= 3); other ranks unchanged."""
    if len(shape) < 3:
        return tuple(shape)
    return (shape[0], *shape[2:], shape[1])


@dataclass(frozen=True)
class InputAdapter:
    """From the artifact's input (model shape, or NHWC for images) to the Keras model's input."""

    layout: str | None  # "NHWC": the artifact itself takes NHWC
    perm: tuple[int, ...] | None  # transpose applied inside the artifact
    keras_shape: tuple[int, ...]
    artifact_shape: tuple[int, ...]


def input_adapter(name: str, onnx_shape: tuple, keras_shape: tuple) -> InputAdapter:
    """How input ``name`` reaches the Keras model; raises ValueError when no rule applies."""
    if keras_shape == onnx_shape and len(onnx_shape) != 4:
        return InputAdapter(None, None, keras_shape, onnx_shape)
    if len(onnx_shape) == 4 and keras_shape == nhwc(onnx_shape):
        return InputAdapter("NHWC", None, keras_shape, keras_shape)
    if keras_shape == onnx_shape:
        return InputAdapter(None, None, keras_shape, onnx_shape)
    if len(onnx_shape) >= 3 and keras_shape == nhwc(onnx_shape):  # NCW/NCDHW: ONNX layout outside
        return InputAdapter(None, (0, *range(2, len(onnx_shape)), 1), keras_shape, onnx_shape)
    if int(np.prod(onnx_shape, dtype=np.int64)) == int(np.prod(keras_shape, dtype=np.int64)):
        return InputAdapter(None, None, keras_shape, onnx_shape)  # a scalar as [1]: reshape inside
    raise ValueError(f"onnx2tf changed input '{name}' from {list(onnx_shape)} to {list(keras_shape)}")


@dataclass(frozen=True)
class OutputFix:
    """From a Keras output to the artifact's output."""

    layout: str | None = None  # "NHWC": returned as the NHWC image (recorded in the manifest)
    perm: tuple[int, ...] | None = None  # transposed inside the artifact to the model's shape
    reshape: tuple[int, ...] | None = None  # then reshaped (rank changes, e.g. [1] -> [])


def _close(a: np.ndarray, b: np.ndarray) -> float:
    """Max abs difference relative to the reference's scale."""
    scale = max(float(np.abs(b).max(initial=0.0)), 1e-6)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max(initial=0.0)) / scale


def output_fix(got: list[np.ndarray], want: list[np.ndarray], tol: float = 1e-3) -> OutputFix:
    """The fix under which the Keras output samples ``got`` equal the ONNX outputs ``want``.

    Tries, in order: as is, NHWC image (4-D), every transpose to the model's shape, a
    reshape. With several candidates the one with the smallest error wins; when none is
    within ``tol`` the shape-based guess is returned (the float check reports the error).
    """
    o, r = got[0], want[0]

    def err(fn) -> float:
        try:
            return max(_close(fn(g), w) for g, w in zip(got, want))
        except ValueError:
            return float("inf")

    candidates: list[tuple[float, int, OutputFix]] = []
    if o.shape == r.shape:
        candidates.append((err(lambda g: g), 0, OutputFix()))
    if r.ndim == 4 and o.shape == nhwc(r.shape):
        candidates.append((err(lambda g: g.transpose(0, 3, 1, 2)), 1, OutputFix(layout="NHWC")))
    if 1 < o.ndim <= MAX_PERMUTED_RANK:
        for p in itertools.permutations(range(o.ndim)):
            if p != tuple(range(o.ndim)) and tuple(o.shape[i] for i in p) == r.shape:
                candidates.append((err(lambda g, p=p: g.transpose(p)), 2, OutputFix(perm=p)))
    if o.size == r.size and o.shape != r.shape:
        candidates.append((err(lambda g: g.reshape(r.shape)), 3, OutputFix(reshape=tuple(r.shape))))
    good = sorted((c for c in candidates if c[0] <= tol), key=lambda c: (c[0] > tol / 10, c[1], c[0]))
    if good:
        return good[0][2]
    # Nothing agrees: the conversion itself is wrong somewhere; keep the old shape rules.
    if r.ndim == 4 and o.shape == nhwc(r.shape):
        return OutputFix(layout="NHWC")
    if o.ndim >= 3 and o.shape == nhwc(r.shape):
        return OutputFix(perm=(0, o.ndim - 1, *range(1, o.ndim - 1)))
    if o.size == r.size and o.shape != r.shape:
        return OutputFix(reshape=tuple(r.shape))
    return OutputFix()
