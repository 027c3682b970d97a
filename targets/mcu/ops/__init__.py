"""C emitters, one small module per op family. Each maps a `QOp` kind to a function
``emit(op, ctx) -> list[str]`` that registers constants/params in the `EmitContext` and
returns the C statements of the call."""

from __future__ import annotations

from typing import Callable

from edgec.targets.mcu.ops import conv, eltwise, pool, shape, softmax

EMITTERS: dict[str, Callable] = {}
for _mod in (conv, eltwise, pool, shape, softmax):
    EMITTERS.update(_mod.EMITTERS)

KERNEL_FILES: dict[str, str] = {
    "conv": "conv.c", "dwconv": "conv.c", "fc": "conv.c", "add": "elementwise.c", "mul": "elementwise.c",
    "requant": "elementwise.c", "lut": "elementwise.c", "reshape": "elementwise.c",
    "maxpool": "pool.c", "avgpool": "pool.c", "mean": "pool.c", "softmax": "softmax.c",
    "pad": "shape.c", "transpose": "shape.c", "concat": "shape.c",
    "quantize": "float_io.c", "dequantize": "float_io.c",
}
