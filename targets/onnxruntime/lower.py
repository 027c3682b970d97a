"""Write the onnxruntime artifact; int4 DequantizeLinear -> MatMul pairs become ``MatMulNBits``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgec._deps import version_of
from edgec.compiler.model import ModelHandle, TensorSpec
from edgec.runtimes.standalone import install_harness
from edgec.targets.base import Artifact, LowerResult, LowerSpec

HARNESS = Path(__file__).resolve().parent / "harness" / "bench_ort.py"  # copied into every bundle


def lower(model: ModelHandle, spec: LowerSpec, out_dir: Path) -> LowerResult:
    """``model.onnx`` (float, Q/DQ, or int4 with MatMulNBits)."""
    proto = model.proto
    passes: list[dict[str, Any]] = []
    kind = {"fp32": "onnx", "int8": "onnx-qdq", "int4": "onnx-int4"}.get(spec.precision, "onnx")
    report: dict[str, Any] = {}
    if spec.precision == "int4":
        level = int(spec.options.get("int4_accuracy_level") or 4)
        proto, n = to_matmulnbits(proto, accuracy_level=level)
        passes.append({"name": "onnxruntime.matmulnbits", "config": {"nodes": n, "accuracy_level": level}})
        report["matmulnbits_nodes"] = n
    (out_dir / "model.onnx").write_bytes(proto.SerializeToString())
    specs = [TensorSpec(s.name, s.shape, s.dtype, None, None, s.layout) for s in model.inputs]
    outs = [TensorSpec(s.name, s.shape, s.dtype, None, None, s.layout) for s in model.outputs]
    report["nodes"] = len(proto.graph.node)
    harness = [Artifact(n, "python", "harness") for n in install_harness(out_dir, HARNESS)]
    return LowerResult(artifacts=[Artifact("model.onnx", kind, "model"), *harness], inputs=specs, outputs=outs,
                       manifest={"onnxruntime_version": version_of("onnxruntime"), "provider": "CPUExecutionProvider"},
                       report=report, passes=passes)


def _pack_nibbles(v: np.ndarray) -> np.ndarray:
    """uint8 values < 16 along the last axis -> bytes, low nibble first (pads an odd count)."""
    if v.shape[-1] % 2:
        v = np.concatenate([v, np.zeros((*v.shape[:-1], 1), v.dtype)], -1)
    v = v.astype(np.uint8)
    return (v[..., 0::2] | (v[..., 1::2] << 4)).astype(np.uint8)


def to_matmulnbits(proto, accuracy_level: int = 4):
    """Replace ``DequantizeLinear(int4/uint4 [K, N], axis 0, block_size) -> MatMul`` by ``MatMulNBits``.

    Returns the new proto and the number of nodes replaced.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    uses: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    drop: set[int] = set()
    replaced = 0
    new_nodes = []
    for n in g.node:
        dq = producer.get(n.input[1]) if n.op_type == "MatMul" and len(n.input) == 2 else None
        if dq is None or dq.op_type != "DequantizeLinear" or uses.get(dq.output[0], 0) != 1:
            new_nodes.append(n)
            continue
        q = inits.get(dq.input[0])
        attrs = {a.name: helper.get_attribute_value(a) for a in dq.attribute}
        block = attrs.get("block_size", 0)
        if q is None or q.data_type not in (TensorProto.INT4, TensorProto.UINT4) or attrs.get("axis", 1) != 0 \
                or block < 16 or block & (block - 1):
            new_nodes.append(n)
            continue
        qv = numpy_helper.to_array(q).astype(np.int16)  # [K, N]
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)  # [nb, N]
        k, n_out = qv.shape
        nb = scale.shape[0]
        if q.data_type == TensorProto.INT4:
            stored = qv + 8
            zp = None
        else:
            stored = qv
            zp = numpy_helper.to_array(inits[dq.input[2]]).astype(np.int16)  # [nb, N]
        pad = nb * block - k
        if pad:
            stored = np.concatenate([stored, np.full((pad, n_out), 8 if zp is None else 0, np.int16)], 0)
        b = _pack_nibbles(stored.T.reshape(n_out, nb, block))  # [N, nb, block/2]
        base = n.name or n.output[0]
        b_name, s_name = f"{base}_MatMulNBits_B", f"{base}_MatMulNBits_scales"
        g.initializer.extend([numpy_helper.from_array(b, b_name),
                              numpy_helper.from_array(np.ascontiguousarray(scale.T).reshape(-1), s_name)])
        ins = [n.input[0], b_name, s_name]
        if zp is not None:
            z_name = f"{base}_MatMulNBits_zero_points"
            g.initializer.append(numpy_helper.from_array(_pack_nibbles(zp.T).reshape(-1), z_name))
            ins.append(z_name)
        new_nodes.append(helper.make_node("MatMulNBits", ins, list(n.output), name=n.name, domain="com.microsoft",
                                          K=k, N=n_out, bits=4, block_size=block, accuracy_level=accuracy_level))
        drop.add(id(dq))
        replaced += 1
    dq_outs = {o for n in g.node if id(n) in drop for o in n.output}
    kept = [n for n in new_nodes if not (n.op_type == "DequantizeLinear" and n.output[0] in dq_outs)]
    del g.node[:]
    g.node.extend(kept)
    if replaced and not any(o.domain == "com.microsoft" for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    used = {i for nd in g.node for i in nd.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return out, replaced
