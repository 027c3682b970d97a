"""TFLite's integer quantization arithmetic, computed at build time in Python.

`quantize_multiplier` follows TFLite's ``QuantizeMultiplier`` (frexp, round half away from
zero, 31-bit fixed point); the `srdhm`/`rdbpot`/`mbqm` helpers mirror the C kernels so
tables can be built in Python with the same rounding.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def round_away(x: float) -> int:
    """C's round(): half away from zero."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def f32(x) -> float:
    """The float32 value of ``x`` as a Python float (TFLite stores scales as float32)."""
    return float(np.float32(x))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier, shift) with real ~= multiplier * 2^(shift - 31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return INT32_MAX, 30
    return int(q_fixed), int(shift)


def srdhm(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else (1 - (1 << 30))
    v = ab + nudge
    # C++ integer division truncates toward zero.
    q = abs(v) // (1 << 31)
    return q if v >= 0 else -q


def rdbpot(x: int, exponent: int) -> int:
    if exponent == 0:
        return x
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def mbqm(x: int, m: int, shift: int, double_rounding: bool = False) -> int:
    """MultiplyByQuantizedMultiplier; single rounding (round half up) unless asked."""
    if not double_rounding:
        total = 31 - shift
        return (x * m + (1 << (total - 1))) >> total
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    return rdbpot(srdhm(x * (1 << left), m), right)


def act_range(act: str | None, scale: float, zp: int, qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized for a fused activation."""

    def q(f: float) -> int:
        return zp + round_away(float(np.float32(f) / np.float32(scale)))

    if act in (None, "NONE"):
        return qmin, qmax
    if act == "RELU":
        return max(qmin, q(0.0)), qmax
    if act == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if act == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(f"fused activation {act}")


def qrange(dtype: str) -> tuple[int, int]:
    """The integer range of an activation dtype (int8, or int16 in 16x8 graphs)."""
    return (-32768, 32767) if dtype == "int16" else (-128, 127)


def clip_range(lo: float | None, hi: float | None, scale: float, zp: int, dtype: str = "int8") -> tuple[int, int]:
    """Quantized clamp bounds for a float Clip/Relu range (ONNX activations)."""
    qmin, qmax = qrange(dtype)
    amin = qmin if lo is None else max(qmin, zp + int(np.rint(lo / scale)))
    amax = qmax if hi is None else min(qmax, zp + int(np.rint(hi / scale)))
    return amin, amax


TFLITE_FUSED_ACTS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


def fused_act(opts, out) -> tuple[int, int]:
    """Clamp bounds of a TFLite op's fused activation (``fusedActivationFunction``)."""
    a = TFLITE_FUSED_ACTS.get(int(getattr(opts, "fusedActivationFunction", 0) or 0), "NONE")
    return act_range(a, out.s, out.zp, *qrange(out.dtype))


def same_pad(in_size: int, k: int, stride: int, dil: int, out_size: int, padding: int) -> int:
    """TFLite's ComputePaddingHeightWidth (top/left pad); padding 0 = SAME, 1 = VALID."""
    if padding == 1:
        return 0
    eff = (k - 1) * dil + 1
    total = max(0, (out_size - 1) * stride + eff - in_size)
    return total // 2
