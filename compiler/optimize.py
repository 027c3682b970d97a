"""Float graph clean-up before calibration: constant folding, fusion, shape inference."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from edgec.compiler.model import ModelHandle


def optimize(handle: ModelHandle, skip_fusions: tuple[str, ...] = ()) -> tuple[ModelHandle, dict[str, Any]]:
    """Fold constants and simplify with onnxslim, then infer shapes.

    ``skip_fusions``: onnxslim fusion patterns left out (the target's `Target.skip_fusions`).

    A failure of the simplifier is not fatal: the model is kept as it was and the pass
    records why, since a correct slower model beats no model.
    """
    import onnx

    before = len(handle.proto.graph.node)
    proto = handle.proto
    info: dict[str, Any] = {"tool": "onnxslim"} | ({"skip_fusions": list(skip_fusions)} if skip_fusions else {})
    try:
        import onnxslim

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            slim = onnxslim.slim(proto, skip_fusion_patterns=list(skip_fusions) or None)
        if slim is not None and len(slim.graph.node) > 0:
            proto = slim
    except Exception as exc:  # noqa: BLE001 - third-party simplifier; keep the model unchanged
        info["skipped"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - shape inference is advisory here
        pass
    from edgec.compiler.loaders import cap_ir_version

    cap_ir_version(proto)
    _name_nodes(proto)
    info.update({"nodes_before": before, "nodes_after": len(proto.graph.node)})
    return handle.with_proto(proto), info


def _name_nodes(proto) -> None:
    """Give every node a unique, stable name (users refer to nodes with --keep-float)."""
    seen: set[str] = set()
    counts: dict[str, int] = {}
    for n in proto.graph.node:
        name = n.name
        if not name or name in seen:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
            name = f"{n.op_type}_{counts[n.op_type]}"
            while name in seen:
                counts[n.op_type] += 1
                name = f"{n.op_type}_{counts[n.op_type]}"
            n.name = name
        seen.add(name)
