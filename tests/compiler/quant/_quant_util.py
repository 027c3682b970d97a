"""Helpers for the quantization-quality tests (a unique module name: tests/*/conftest.py are many)."""

from __future__ import annotations

from pathlib import Path


def node_names(onnx_path: Path, op: str) -> list[str]:
    """Names of the ``op`` nodes of an ONNX file, in graph order."""
    import onnx

    return [n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type == op]


def run_first_output(proto, samples) -> "np.ndarray":
    """The model's first output on each sample (onnxruntime), concatenated along axis 0.

    A Q/DQ model runs as written (`quality.exact_qdq_session`): these tests measure the quantization math,
    and onnxruntime's fused int8 kernels differ by CPU (on AVX2 without VNNI they sum u8 x s8 products in
    saturating int16 pairs). A float model runs the same either way.
    """
    import numpy as np

    from edgec.compiler.quality import exact_qdq_session

    s = exact_qdq_session(proto)
    return np.concatenate([s.run(None, x)[0] for x in samples])
