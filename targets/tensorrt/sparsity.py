"""2:4 structured sparsity: which weights TensorRT's sparse kernels can use.

Ampere-class GPUs (Jetson Orin included) run a Conv/MatMul/Gemm with sparse tensor cores
when its weight has at most 2 non-zeros in every group of 4 consecutive elements along the
reduction (input-channel) axis: Conv ``[O, I/g, kh, kw]`` axis 1, ConvTranspose
``[I, O/g, ...]`` axis 0, MatMul weight ``[K, N]`` axis rank-2, Gemm axis 0, or 1 with
``transB=1``. ``--sparsity`` sets TensorRT's ``SPARSE_WEIGHTS`` flag; TensorRT then picks
sparse kernels for the layers whose weights qualify, where they are faster. This module
reports which weights qualify (the pruning pass produces them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec.targets.tensorrt.qdq_rules import WEIGHTED_OPS, _Graph, _name


def is_2to4(weight: np.ndarray, axis: int) -> bool:
    """True when every group of 4 along ``axis`` has at most 2 non-zeros (zero-padded to a multiple of 4)."""
    return groups_2to4_fraction(weight, axis) == 1.0


def groups_2to4_fraction(weight: np.ndarray, axis: int) -> float:
    """Fraction of the 4-element groups along ``axis`` with at most 2 non-zeros."""
    w = np.moveaxis(np.asarray(weight), axis, -1)
    n = w.shape[-1]
    pad = (-n) % 4
    if pad:
        w = np.concatenate([w, np.zeros(w.shape[:-1] + (pad,), dtype=w.dtype)], axis=-1)
    if w.size == 0:
        return 1.0
    groups = (w.reshape(-1, 4) != 0).sum(axis=1)
    return float((groups <= 2).mean())


def reduction_axis(node, weight_input: int, rank: int) -> int:
    """The axis 2:4 sparsity runs along for the weight at ``weight_input`` of ``node``."""
    from edgec.compiler.weight_axis import weight_axis

    return weight_axis(node, weight_input, rank, reduction=True)


def sparsity_report(proto) -> list[dict[str, Any]]:
    """Per weighted node with a constant weight: its 2:4 pattern along the reduction axis."""
    g = _Graph(proto.graph)
    rows = []
    for node in proto.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        for idx in (1, 0):
            if idx >= len(node.input):
                continue
            ws = g.weight_source(node.input[idx])
            if ws is None:
                continue
            w = g.const(ws[1])
            if w is None or w.ndim < 2:
                continue
            axis = reduction_axis(node, idx, w.ndim)
            frac = groups_2to4_fraction(w, axis)
            rows.append({
                "node": _name(node), "op": node.op_type, "weight": ws[1], "shape": list(w.shape), "axis": axis,
                "pattern": "2:4" if frac == 1.0 else "dense",
                "groups_2to4_fraction": round(frac, 4),
                "zero_fraction": round(float((w == 0).mean()), 4),
            })
            break
    return rows


def summarize(rows: list[dict[str, Any]], requested: bool) -> tuple[dict[str, Any], list[str]]:
    """Manifest section and warnings for ``--sparsity``."""
    sparse = [r["weight"] for r in rows if r["pattern"] == "2:4"]
    info = {"requested": requested, "weights_2to4": sparse, "weighted_layers": len(rows), "weights": rows}
    warnings = []
    if requested and not sparse:
        warnings.append("--sparsity: no weight is 2:4 sparse along its input-channel axis, so TensorRT will "
                        "use dense kernels; prune the model to 2:4 first")
    return info, warnings
