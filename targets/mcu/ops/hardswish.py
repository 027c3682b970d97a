"""HardSwish: ``x * relu6(x + 3) / 6`` (MobileNetV3), by table lookup like Sigmoid."""

from __future__ import annotations

import numpy as np

from edgec.targets.mcu.ops.record import OpRecord, lut_importers


def hardswish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


RECORDS = (OpRecord("HardSwish", lut=hardswish, **lut_importers("HardSwish", "HardSwish", "HARD_SWISH")),)
