"""Conversions between the model convention and an artifact's own I/O.

The model convention is the source model's: float tensors, NCHW images. Artifacts may
take NHWC (TFLite) or quantized int8/uint8 tensors; their specs say so with ``layout``,
``scale`` and ``zero_point``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec.compiler.model import TensorSpec
from edgec.errors import CalibrationDataError


def spec(d: dict[str, Any] | TensorSpec) -> TensorSpec:
    return d if isinstance(d, TensorSpec) else TensorSpec.from_json(d)


def validate_feeds(feeds: dict[str, np.ndarray], specs: list[TensorSpec]) -> None:
    """Check names, ranks, static dims and dtype kinds of model-convention feeds."""
    names = {s.name for s in specs}
    extra = sorted(set(feeds) - names)
    if extra:
        raise CalibrationDataError(f"unknown input(s) {extra}; the model takes {sorted(names)}")
    for s in specs:
        if s.name not in feeds:
            raise CalibrationDataError(f"input '{s.name}' is missing; the model takes {sorted(names)}")
        a = np.asarray(feeds[s.name])
        if a.ndim != len(s.shape):
            raise CalibrationDataError(
                f"input '{s.name}' has shape {list(a.shape)}, the model expects {list(s.shape)}")
        for i, (got, want) in enumerate(zip(a.shape, s.shape)):
            if isinstance(want, int) and i > 0 and got != want:
                raise CalibrationDataError(
                    f"input '{s.name}' has shape {list(a.shape)}, the model expects {list(s.shape)}")
        if np.dtype(s.dtype).kind != a.dtype.kind and not (
                np.dtype(s.dtype).kind in "iu" and a.dtype.kind in "iu"):
            raise CalibrationDataError(f"input '{s.name}' has dtype {a.dtype}, the model expects {s.dtype}")


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    info = np.iinfo(np.dtype(dtype))
    q = np.round(np.asarray(x, np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((q.astype(np.int32) - zero_point) * np.float32(scale)).astype(np.float32)


def dequantize_linear(q: np.ndarray, scale: Any, zero_point: Any = None, axis: int = 1) -> np.ndarray:
    """ONNX ``DequantizeLinear`` of a constant, per tensor or per channel along ``axis``, in float64.

    A float32 scale times an integer below 2**24 is exact in float64, so ``.astype(np.float32)``
    of the result equals onnxruntime's float32 arithmetic bit for bit.
    """
    q = np.asarray(q).astype(np.float64)
    scale = np.asarray(scale, np.float64)
    zp = np.zeros_like(scale) if zero_point is None else np.asarray(zero_point, np.float64)
    if scale.ndim == 1 and q.ndim > 1:
        shape = [1] * q.ndim
        shape[axis % q.ndim] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (q - zp) * scale


def _relayout(a: np.ndarray, src: str | None, dst: str | None) -> np.ndarray:
    if src == dst or src is None or dst is None or a.ndim != 4:
        return a
    if (src, dst) == ("NCHW", "NHWC"):
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1))
    if (src, dst) == ("NHWC", "NCHW"):
        return np.ascontiguousarray(a.transpose(0, 3, 1, 2))
    raise ValueError(f"cannot convert layout {src} -> {dst}")


def _convert(a: np.ndarray, src: TensorSpec, dst: TensorSpec) -> np.ndarray:
    a = _relayout(np.asarray(a), src.layout, dst.layout)
    want = np.dtype(dst.dtype)
    if dst.scale is not None and want.kind in "iu" and np.dtype(src.dtype).kind == "f":
        return quantize(a, dst.scale, dst.zero_point or 0, dst.dtype)
    if src.scale is not None and np.dtype(src.dtype).kind in "iu" and want.kind == "f":
        return dequantize(a, src.scale, src.zero_point or 0).astype(want)
    return a.astype(want, copy=False)


def to_native(feeds: dict[str, np.ndarray], model: list[TensorSpec], native: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Model-convention feeds -> artifact inputs (matched by position)."""
    return {n.name: _convert(feeds[m.name], m, n) for m, n in zip(model, native)}


def from_native(outs: dict[str, np.ndarray], native: list[TensorSpec], model: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Artifact outputs -> model-convention outputs (matched by position)."""
    return {m.name: _convert(outs[n.name], n, m) for n, m in zip(native, model)}


def synthetic_feeds(specs: list[TensorSpec], seed: int = 0, batch: int | None = None) -> dict[str, np.ndarray]:
    """Deterministic inputs for timing: uniform floats, small token ids for integers."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in specs:
        shape = [d if isinstance(d, int) else 1 for d in s.shape]
        if batch is not None and shape:
            shape[0] = batch
        dt = np.dtype(s.dtype)
        if dt.kind == "f":
            feeds[s.name] = rng.standard_normal(shape).astype(dt)
        elif dt == np.bool_:
            feeds[s.name] = np.ones(shape, dtype=dt)
        else:
            # Integer inputs are usually token ids / masks: keep them valid (0/1 are always in range).
            feeds[s.name] = np.ones(shape, dtype=dt)
    return feeds
