"""ONNX -> OpenVINO IR conversion and op support checks."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgec._deps import require, version_of
from edgec.compiler.model import ModelHandle, TensorSpec
from edgec.errors import EdgecError
from edgec.runtimes.standalone import install_harness
from edgec.targets.base import Artifact, LowerResult, LowerSpec, SupportReport

HARNESS = Path(__file__).resolve().parent / "harness" / "bench_openvino.py"  # copied into every bundle


def _ov():
    return require("openvino", "openvino")


def check_support(model: ModelHandle, target: str) -> SupportReport:
    """Ask OpenVINO's ONNX frontend which nodes it cannot convert."""
    report = SupportReport(target)
    ov = _ov()
    fe = ov.frontend.FrontEndManager().load_by_framework("onnx")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.onnx"
        path.write_bytes(model.serialize())
        try:
            input_model = fe.load(str(path))
            partial = fe.convert_partially(input_model)
        except Exception as exc:  # noqa: BLE001 - frontend raises its own GeneralFailure types
            report.notes.append(f"frontend check skipped: {str(exc).splitlines()[0]}")
            return report
    by_output = {o: n.name or n.output[0] for n in model.proto.graph.node for o in n.output}
    by_op: dict[str, str] = {}
    for n in model.proto.graph.node:
        by_op.setdefault(n.op_type, n.name or n.output[0])
    for op in partial.get_ordered_ops():
        if "FrameworkNode" in op.get_type_name():
            attrs = op.get_attributes()
            op_type = attrs.get("ONNX_META_type", op.get_friendly_name())
            node = by_output.get(op.get_friendly_name()) or by_op.get(op_type, op.get_friendly_name())
            report.unsupported.append((node, op_type, "the OpenVINO ONNX frontend has no conversion for it"))
    return report


def lower_to_ir(model: ModelHandle, spec: LowerSpec, out_dir: Path) -> LowerResult:
    """Convert to IR: fp32 (weights fp32), fp16 (weights compressed to fp16), int8 (Q/DQ -> FakeQuantize)."""
    ov = _ov()
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "model.onnx"
        src.write_bytes(_exact_rewrites(model))
        try:
            ov_model = ov.convert_model(str(src))
        except Exception as exc:  # noqa: BLE001
            msg = str(exc).splitlines()
            raise EdgecError(f"OpenVINO could not convert the model: {next((m for m in msg if m.strip()), exc)}") from exc
    _stable_names(ov_model)
    xml = out_dir / "model.xml"
    ov.save_model(ov_model, str(xml), compress_to_fp16=spec.precision == "fp16")
    _strip_nondeterministic(xml)
    inputs = [_spec(s) for s in model.inputs]
    outputs = [_spec(s) for s in model.outputs]
    harness = [Artifact(n, "python", "harness") for n in install_harness(out_dir, HARNESS)]
    return LowerResult(
        artifacts=[Artifact("model.xml", "openvino-ir", "model"), Artifact("model.bin", "openvino-weights", "weights"),
                   *harness],
        inputs=inputs,
        outputs=outputs,
        manifest={"openvino_version": version_of("openvino"), "device": "CPU",
                  "inference_precision_hint": spec.options.get("ov_precision_hint", "f32"),
                  "weights_compressed_to_fp16": spec.precision == "fp16"},
        report={"ir_ops": _op_counts(ov_model)},
        passes=[{"name": "openvino.convert_model", "config": {"compress_to_fp16": spec.precision == "fp16"}}],
    )


def _exact_rewrites(model: ModelHandle) -> bytes:
    """The model's bytes, with run-time Pad values spelled as Where (OpenVINO's CPU plugin pads with 0)."""
    import onnx

    from edgec.compiler.rewrites import pad_value_as_where

    if not any(n.op_type == "Pad" for n in model.proto.graph.node):
        return model.serialize()
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    return proto.SerializeToString() if pad_value_as_where(proto) else model.serialize()


def _spec(s: TensorSpec) -> TensorSpec:
    return TensorSpec(s.name, s.shape, s.dtype, None, None, s.layout)


def _op_counts(ov_model: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in ov_model.get_ordered_ops():
        t = op.get_type_name()
        counts[t] = counts.get(t, 0) + 1
    return dict(sorted(counts.items()))


def _stable_names(ov_model: Any) -> None:
    """Rename nodes OpenVINO named from a process-wide counter (``Constant_2995``).

    Those names depend on how many models the process converted before, so two builds in
    one process would differ; numbering them by graph position makes the IR reproducible.
    """
    import re

    counter_name = re.compile(r"^[A-Z][A-Za-z0-9]*_\d+$")  # e.g. Constant_2995, Reshape_148 (folded)
    for i, op in enumerate(ov_model.get_ordered_ops()):
        kind = op.get_type_name()
        # Parameters/Results keep theirs: they carry the model's I/O names.
        if kind not in ("Parameter", "Result") and counter_name.match(op.get_friendly_name()):
            op.set_friendly_name(f"{kind}_{i}")


def _strip_nondeterministic(xml: Path) -> None:
    # The IR's rt_info records conversion parameters including the temporary input path;
    # drop that line so rebuilding gives identical bytes.
    text = xml.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines(keepends=True) if "input_model" not in ln]
    xml.write_text("".join(lines), encoding="utf-8")


