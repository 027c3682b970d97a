"""The MCU target's internal quantized graph: int8 tensors in NHWC, ops in run order.

Both importers (`import_tflite`, `import_onnx`) produce a `QGraph`; the planner and the C
emitters only see this form. Activation tensors are int8 with one scale/zero point;
constant weights carry per-channel scales (``qdim`` is the channel axis) and int8/int32
data already in the layout the kernels take (conv filters OHWI, depthwise 1HWC, FC [N, K]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class QTensor:
    """One tensor. ``data`` is set for constants; ``scale``/``zero_point`` are arrays."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "int8"
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    data: np.ndarray | None = None
    qdim: int = 0

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def s(self) -> float:
        """Per-tensor scale (float32 value as a Python float)."""
        assert self.scale is not None, f"tensor {self.name} is not quantized"
        return float(np.float32(self.scale.reshape(-1)[0]))

    @property
    def zp(self) -> int:
        return int(self.zero_point.reshape(-1)[0]) if self.zero_point is not None else 0

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclass
class QOp:
    """One op: ``kind`` names the emitter and kernel that run it; the kinds are declared by
    the op records in `edgec.targets.mcu.ops` (``ops.EMITTERS`` lists them all)."""

    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    source_op: str = ""


@dataclass
class QGraph:
    tensors: dict[str, QTensor]
    ops: list[QOp]
    inputs: list[str]
    outputs: list[str]
    source: str = "tflite"
    meta: dict[str, Any] = field(default_factory=dict)

    def t(self, name: str) -> QTensor:
        return self.tensors[name]

    def consumers(self, name: str) -> list[QOp]:
        return [op for op in self.ops if name in op.inputs]

    def producer(self, name: str) -> QOp | None:
        for op in self.ops:
            if name in op.outputs:
                return op
        return None

    def const_bytes(self) -> int:
        used = {n for op in self.ops for n in op.inputs}
        return sum(self.tensors[n].nbytes for n in used if self.tensors[n].is_const)

    def prune(self) -> None:
        """Drop tensors no op or graph I/O refers to."""
        keep = set(self.inputs) | set(self.outputs)
        for op in self.ops:
            keep.update(op.inputs)
            keep.update(op.outputs)
        self.tensors = {k: v for k, v in self.tensors.items() if k in keep}
