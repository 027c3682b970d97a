"""A target without SDKs: writes the pipeline's (Q/DQ) ONNX as its artifact, run by onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from edgec.targets.base import Artifact, LowerResult, LowerSpec, QuantScheme, Target, TargetOption


class FakeTarget(Target):
    name: ClassVar[str] = "fake"
    aliases: ClassVar[tuple[str, ...]] = ("fake-alias",)
    description: ClassVar[str] = "test target: the Q/DQ ONNX itself"
    supported_precisions: ClassVar[tuple[str, ...]] = ("fp32", "int8")
    default_precision: ClassVar[str] = "int8"
    runner: ClassVar[str] = "onnxruntime"
    quant_scheme: ClassVar[QuantScheme | None] = QuantScheme(placement="full")
    options: ClassVar[tuple[TargetOption, ...]] = (TargetOption("fake_level", "test option", kind="int", default=1),)
    fail_in_lower: ClassVar[bool] = False

    def lower(self, model, spec: LowerSpec, out_dir: Path) -> LowerResult:
        (out_dir / "model.onnx").write_bytes(model.serialize())
        if self.fail_in_lower:
            raise RuntimeError("lowering failed on purpose")
        return LowerResult(
            artifacts=[Artifact("model.onnx", "onnx-qdq" if spec.quant_model else "onnx")],
            inputs=list(model.inputs),
            outputs=list(model.outputs),
            manifest={"level": spec.options["fake_level"]},
            report={"nodes": len(model.proto.graph.node)},
        )
