"""HardSwish ``x * relu6(x + 3) / 6`` (MobileNetV3) and HardSigmoid ``clip(alpha * x + beta,
0, 1)`` (the SE gates of MobileNetV3 / PP-LCNet), by table lookup like Sigmoid."""

from __future__ import annotations

import numpy as np

from edgec.targets.mcu.ops.record import OpRecord, attrs, lut_importers


def hardswish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


def hard_sigmoid(x: np.ndarray, alpha: float = 0.2, beta: float = 0.5) -> np.ndarray:
    # In float32, as onnxruntime computes it.
    return np.clip(np.float32(alpha) * x.astype(np.float32) + np.float32(beta), 0.0, 1.0)


def _hard_sigmoid_args(node) -> tuple[float, float]:
    a = attrs(node)
    return float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))


RECORDS = (OpRecord("HardSwish", lut=hardswish, **lut_importers("HardSwish", "HardSwish", "HARD_SWISH")),
           OpRecord("HardSigmoid", lut=hard_sigmoid,
                    **lut_importers("HardSigmoid", "HardSigmoid", None, onnx_args=_hard_sigmoid_args)))
