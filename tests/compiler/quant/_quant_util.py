"""Helpers for the quantization-quality tests (a unique module name: tests/*/conftest.py are many)."""

from __future__ import annotations

from pathlib import Path


def node_names(onnx_path: Path, op: str) -> list[str]:
    """Names of the ``op`` nodes of an ONNX file, in graph order."""
    import onnx

    return [n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type == op]


def run_first_output(proto, samples) -> "np.ndarray":
    """The model's first output on each sample (onnxruntime), concatenated along axis 0."""
    import numpy as np

    from edgec.compiler.quality import ort_session

    s = ort_session(proto)
    return np.concatenate([s.run(None, x)[0] for x in samples])
