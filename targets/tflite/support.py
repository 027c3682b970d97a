"""Which ONNX graphs the ``arm`` target can convert, decided before importing TensorFlow.

onnx2tf has one module per ONNX operator it maps (``onnx2tf/ops/<OpType>.py``); an op
without one cannot be converted. The list is read from the installed package's files, so
checking a model costs no TensorFlow import.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from edgec.errors import ConfigError
from edgec.targets.base import LowerSpec, SupportReport

if TYPE_CHECKING:
    from edgec.compiler.model import ModelHandle

@lru_cache(maxsize=1)
def onnx2tf_ops() -> frozenset[str]:
    """ONNX op types onnx2tf has a converter for (empty when onnx2tf is missing)."""
    spec = importlib.util.find_spec("onnx2tf")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    ops_dir = Path(list(spec.submodule_search_locations)[0]) / "ops"
    return frozenset(p.stem for p in ops_dir.glob("*.py") if not p.stem.startswith("_"))


def unsupported_hint(op_type: str, domain: str, opset: int | None) -> str:
    """What a user can do about an op the converter cannot map."""
    if domain not in ("", "ai.onnx"):
        return (f"it is a custom-domain op ({domain}); re-export with standard ONNX ops only "
                "(no onnxruntime contrib/fused ops, e.g. skip ORT transformer optimizations)")
    ver = f" (model opset {opset})" if opset else ""
    return (f"onnx2tf has no converter for it{ver}; re-export with a standard opset (13-18) so it "
            "decomposes into supported ops, or replace it in the model")


def check_model(model: "ModelHandle", spec: LowerSpec, target: str) -> SupportReport:
    """Unsupported nodes (op not mappable by onnx2tf) and configuration errors."""
    report = SupportReport(target)
    if model.proto is None:
        report.unsupported.append((model.source_path, "tflite", "the arm target takes ONNX models"))
        return report
    validate_options(spec)
    ops = onnx2tf_ops()
    if not ops:  # onnx2tf missing: availability() reports it
        return report
    opset = next((o.version for o in model.proto.opset_import if o.domain in ("", "ai.onnx")), None)
    for node in model.proto.graph.node:
        custom = node.domain not in ("", "ai.onnx")
        if custom or node.op_type not in ops:
            report.unsupported.append((node.name or node.output[0], node.op_type,
                                       unsupported_hint(node.op_type, node.domain, opset)))
    return report


def validate_options(spec: LowerSpec) -> str:
    """Check precision/io_dtype; return the effective I/O dtype."""
    io = spec.options.get("io_dtype")
    if spec.precision == "int8":
        return io or "int8"
    if io not in (None, "float32"):
        raise ConfigError(f"--io-dtype {io} needs --precision int8 (a {spec.precision} .tflite has float32 I/O)")
    return "float32"
