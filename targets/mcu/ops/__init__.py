"""The mcu target's ops: one `OpRecord` per op, in the modules of this package.

Every module here (except ``record``) lists its records in ``RECORDS``; they are collected
at import, so adding an op is adding a record (docs/adding-an-mcu-op.md). Everything
else the target needs about ops is derived here from the records:

- ``ONNX_OPS`` / ``TFLITE_OPS``: what the importers accept (`check` reports the rest);
- ``EMITTERS`` / ``KERNEL_FILES`` / ``KERNEL_HEADERS``: QOp kind -> C emitter and files;
- ``INPLACE_KINDS``: kinds the planner may run in place;
- ``LUT_FUNCTIONS``: record name -> float function of the ops computed by table lookup;
- ``ANY_LAYOUT_ONNX_OPS``: ONNX ops whose importers take 4-D tensors in either layout;
- ``INTEGER_ONNX_OPS`` / ``SCALE_PRESERVING_ONNX_OPS``: what the mcu `QuantScheme` hands
  the quantizer.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from edgec.targets.mcu.ops.record import Emitter, NodeView, OpRecord

# Handled by the ONNX importer itself: the Q/DQ pairs around every op, and constants.
ONNX_PLUMBING = frozenset({"QuantizeLinear", "DequantizeLinear", "Constant"})


def _collect() -> tuple[OpRecord, ...]:
    records: list[OpRecord] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "record":
            continue
        records.extend(importlib.import_module(f"{__name__}.{info.name}").RECORDS)
    return tuple(records)


def _index(records: tuple[OpRecord, ...]):
    by_kind: dict[str, OpRecord] = {}
    by_onnx: dict[str, OpRecord] = {}
    by_tflite: dict[str, OpRecord] = {}
    for r in records:
        for table, keys, what in ((by_kind, r.kinds, "kind"), (by_onnx, r.onnx, "ONNX op"),
                                  (by_tflite, r.tflite, "TFLite op")):
            for k in keys:
                if k in table:
                    raise RuntimeError(f"mcu ops: {what} {k} is declared by both {table[k].name} and {r.name}")
                table[k] = r
    return by_kind, by_onnx, by_tflite


RECORDS: tuple[OpRecord, ...] = _collect()
BY_KIND, BY_ONNX, BY_TFLITE = _index(RECORDS)

ONNX_OPS: frozenset[str] = frozenset(BY_ONNX) | ONNX_PLUMBING
TFLITE_OPS: tuple[str, ...] = tuple(sorted(BY_TFLITE))
EMITTERS: dict[str, Emitter] = {k: r.emit for k, r in BY_KIND.items()}
KERNEL_FILES: dict[str, tuple[str, ...]] = {k: r.kernels for k, r in BY_KIND.items()}
KERNEL_HEADERS: dict[str, tuple[str, ...]] = {k: r.headers for k, r in BY_KIND.items()}
INPLACE_KINDS: frozenset[str] = frozenset(k for k, r in BY_KIND.items() if r.inplace)
INTEGER_ONNX_OPS: frozenset[str] = frozenset(op for r in RECORDS if r.integer for op in r.onnx)
SCALE_PRESERVING_ONNX_OPS: frozenset[str] = frozenset(op for r in RECORDS for op in r.keeps_input_qparams)
ANY_LAYOUT_ONNX_OPS: frozenset[str] = frozenset(op for r in RECORDS if r.any_layout for op in r.onnx)
LUT_FUNCTIONS: dict[str, Callable] = {r.name: r.lut for r in RECORDS if r.lut is not None}


def onnx_rejection(view: NodeView) -> str | None:
    """Why the mcu target cannot run this ONNX node, or None when it can."""
    if view.op_type in ONNX_PLUMBING:
        return None
    rec = BY_ONNX.get(view.op_type)
    if rec is None or view.node.domain not in ("", "ai.onnx"):
        return "supported: " + ", ".join(sorted(ONNX_OPS))
    if rec.onnx_importer(view.op_type, view.opset) is None:
        return f"opset {view.opset} is older than the importer supports (from {min(rec.onnx[view.op_type])})"
    return rec.why_not(view)


__all__ = ["RECORDS", "OpRecord", "NodeView", "ONNX_OPS", "TFLITE_OPS", "EMITTERS", "KERNEL_FILES",
           "KERNEL_HEADERS", "INPLACE_KINDS", "ANY_LAYOUT_ONNX_OPS", "LUT_FUNCTIONS", "INTEGER_ONNX_OPS", "SCALE_PRESERVING_ONNX_OPS", "onnx_rejection"]
