"""Magnitude and N:M pruning of ONNX initializers, and per-layer sparsity of an ONNX graph.

Used for ONNX sources (PyTorch sources are pruned before export) and, for every source,
to report what the exported float graph holds. Weights are the constant (initializer)
weights of Conv, ConvTranspose, Gemm and MatMul; N:M runs along the reduction
(input-channel) axis TensorRT's sparse kernels use (`edgec.compiler.weight_axis`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec.compiler.prune.masks import magnitude_masks, nm_mask
from edgec.compiler.prune.spec import PruneSpec
from edgec.compiler.weight_axis import WEIGHTED_OPS
from edgec.errors import ConfigError


def weight_entries(proto: Any) -> list[dict[str, Any]]:
    """``{node, op, weight, axis}`` per weighted node whose weight is a float initializer (first use wins)."""
    from onnx import TensorProto

    from edgec.compiler.weight_axis import weight_axis

    inits = {t.name: t for t in proto.graph.initializer}
    seen: set[str] = set()
    out = []
    for node in proto.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        candidates = (1,) if node.op_type in ("Conv", "ConvTranspose") else (1, 0)
        for idx in candidates:
            if idx >= len(node.input) or node.input[idx] not in inits:
                continue
            t = inits[node.input[idx]]
            if t.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE) or len(t.dims) < 2:
                continue
            if t.name not in seen:
                seen.add(t.name)
                out.append({"node": node.name or node.output[0], "op": node.op_type, "weight": t.name,
                            "axis": weight_axis(node, idx, len(t.dims), reduction=True)})
            break
    return out


def prune_onnx(proto: Any, spec: PruneSpec) -> tuple[Any, dict[str, Any]]:
    """A copy of ``proto`` with magnitude or N:M pruned weights, and what was pruned.

    Raises:
        ConfigError: A structured spec (needs the PyTorch model) or a graph without weights.
    """
    import onnx
    from onnx import numpy_helper

    if spec.structured:
        raise ConfigError(f"--prune {spec.method} needs a PyTorch or Hugging Face model, not ONNX")
    entries = weight_entries(proto)
    if not entries:
        raise ConfigError(f"--prune {spec.text}: the ONNX model has no Conv/Gemm/MatMul initializer weights to prune")
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    inits = {t.name: t for t in out.graph.initializer}
    arrays = [numpy_helper.to_array(inits[e["weight"]]) for e in entries]
    if spec.method == "magnitude":
        masks = magnitude_masks(arrays, spec.ratio, spec.scope)
    else:
        masks = [nm_mask(a, spec.n, spec.m, e["axis"]) for a, e in zip(arrays, entries)]
    for e, a, mask in zip(entries, arrays, masks):
        pruned = np.where(mask, a, np.zeros((), a.dtype)).astype(a.dtype)
        inits[e["weight"]].CopyFrom(numpy_helper.from_array(pruned, e["weight"]))
    return out, {"weights": [e["weight"] for e in entries]}


def layer_stats(proto: Any, nm: tuple[int, int] = (2, 4)) -> list[dict[str, Any]]:
    """Per weighted node: shape, parameters, zeros, sparsity and the N:M group fraction."""
    from onnx import numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    rows = []
    for e in weight_entries(proto):
        w = numpy_helper.to_array(inits[e["weight"]])
        zeros = int(np.count_nonzero(w == 0))
        rows.append({"node": e["node"], "op": e["op"], "weight": e["weight"], "shape": list(w.shape),
                     "params": int(w.size), "zeros": zeros, "sparsity": round(zeros / max(w.size, 1), 4),
                     f"groups_{nm[0]}to{nm[1]}_fraction": round(nm_fraction(w, nm[0], nm[1], e["axis"]), 4),
                     "axis": e["axis"]})
    return rows


def nm_fraction(weight: np.ndarray, n: int, m: int, axis: int) -> float:
    """Fraction of the ``m``-groups along ``axis`` (zero-padded) with at most ``n`` non-zeros."""
    w = np.moveaxis(np.asarray(weight), axis, -1)
    pad = (-w.shape[-1]) % m
    if pad:
        w = np.concatenate([w, np.zeros(w.shape[:-1] + (pad,), dtype=w.dtype)], axis=-1)
    if w.size == 0:
        return 1.0
    return float(((w.reshape(-1, m) != 0).sum(axis=1) <= n).mean())
