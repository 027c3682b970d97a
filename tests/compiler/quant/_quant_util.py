"""Helpers for the quantization-quality tests (a unique module name: tests/*/conftest.py are many)."""

from __future__ import annotations

from pathlib import Path


def node_names(onnx_path: Path, op: str) -> list[str]:
    """Names of the ``op`` nodes of an ONNX file, in graph order."""
    import onnx

    return [n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type == op]
