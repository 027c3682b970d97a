"""TensorRT's rules for explicitly quantized (Q/DQ) ONNX, as a checker and a legalizer.

TensorRT builds INT8 engines from Q/DQ ONNX by fusing ``DequantizeLinear`` nodes into
the weighted layer they feed and ``QuantizeLinear`` nodes into the layer that produces
their input. Its ONNX parser and builder reject, or silently run in float, anything
else. `check_qdq` enforces what matters (each rule has a name used in tests and in the
report):

``zero-point``        every Q/DQ has an explicit int8 zero point equal to 0 (TensorRT's
                      quantization is symmetric; a missing zero point means uint8 in ONNX).
``dtype``             Q/DQ work on int8 (uint8 and int16 are rejected; int32 is
                      bias-only and handled by `legalize`).
``scale``             scales are build-time constants, positive and finite.
``activation-axis``   activation scales are per tensor (per-channel only for weights).
``weight-axis``       per-channel weight scales sit on the output-channel axis: Conv 0,
                      ConvTranspose 1, MatMul weight ``[K, N]`` the last axis (first
                      operand: rank-2), Gemm 1, or 0 with ``transB=1``; one scale per
                      channel.
``missing-qdq``       the activation inputs of Conv/ConvTranspose/MatMul/Gemm come from a
                      DequantizeLinear (else TensorRT runs that layer in float), unless
                      the node is in ``keep_float``.
``weight-not-quantized`` the weight of a quantized weighted layer has its DequantizeLinear.
``add-mixed``         a residual Add (two activation inputs) has Q/DQ on both inputs or
                      on neither: TensorRT fuses it into the producing Conv only when both
                      inputs carry Q/DQ, and a half-quantized Add costs a reformat.
``q-without-dq``      a QuantizeLinear output feeds only DequantizeLinear nodes (an int8
                      tensor cannot reach other layers or be a graph output).
``dq-input``          a DequantizeLinear reads a QuantizeLinear output or an int8
                      initializer.
``scale-mismatch``    a Q->DQ pair uses one scale and zero point.

What does not matter: a DequantizeLinear that feeds a non-quantizable op directly (that
op runs in float/fp16), Q/DQ around ops TensorRT commutes them through (MaxPool,
Relu, Reshape, Transpose...), several consumers sharing one pair.

`legalize` rewrites two forms TensorRT 8.6 rejects but onnxruntime accepts, losslessly:
int32 bias ``DequantizeLinear`` (folded into a float initializer: TensorRT adds the bias
in float after the int8 GEMM) and, optionally, int8 weight initializers (turned into
float initializer -> QuantizeLinear -> DequantizeLinear, the QAT-export form every
TensorRT since 8.0 parses; 10.x also takes int8 initializers directly).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgec.compiler.qdq_graph import node_attribute

WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# Ops that only move data; TensorRT propagates Q/DQ across them.
SHAPE_OPS = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
INT8 = 3  # onnx.TensorProto.INT8
UINT8 = 2
INT32 = 6
FLOAT = 1


@dataclass(frozen=True)
class Violation:
    """One broken rule: which, where (node name), what and how to fix it."""

    rule: str
    node: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] node '{self.node}': {self.message}"


@dataclass
class QDQReport:
    """Result of `check_qdq`."""

    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    quantized_nodes: list[str] = field(default_factory=list)
    float_weighted_nodes: list[str] = field(default_factory=list)
    per_channel_weights: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_rule(self, rule: str) -> list[Violation]:
        return [v for v in self.violations if v.rule == rule]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "violations": [{"rule": v.rule, "node": v.node, "message": v.message} for v in self.violations],
            "notes": list(self.notes),
            "quantized_nodes": sorted(self.quantized_nodes),
            "float_weighted_nodes": sorted(self.float_weighted_nodes),
            "per_channel_weights": dict(sorted(self.per_channel_weights.items())),
        }


class _Graph:
    """Producer/consumer maps and constant lookup over an ONNX graph."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.graph = graph
        self.inits = {t.name: t for t in graph.initializer}
        self.producer = {}
        self.consumers: dict[str, list] = {}
        self.const_nodes = {}
        for n in graph.node:
            for o in n.output:
                self.producer[o] = n
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
            if n.op_type == "Constant" and n.output:
                self.const_nodes[n.output[0]] = n
        self.outputs = {o.name for o in graph.output}
        self._nh = numpy_helper

    def const(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        if name in self.inits:
            return self._nh.to_array(self.inits[name])
        node = self.const_nodes.get(name)
        if node is not None:
            for a in node.attribute:
                if a.name == "value":
                    return self._nh.to_array(a.t)
        return None

    def const_dtype(self, name: str) -> int | None:
        if name in self.inits:
            return self.inits[name].data_type
        node = self.const_nodes.get(name)
        if node is not None:
            for a in node.attribute:
                if a.name == "value":
                    return a.t.data_type
        return None

    def is_const(self, name: str) -> bool:
        return name in self.inits or name in self.const_nodes

    def origin(self, name: str) -> str:
        """Walk back through shape-only ops (Transpose, Reshape...), which TensorRT moves Q/DQ across."""
        seen = 0
        while seen < 16:
            node = self.producer.get(name)
            if node is None or node.op_type not in SHAPE_OPS or not node.input:
                return name
            name, seen = node.input[0], seen + 1
        return name

    def from_dq(self, name: str) -> bool:
        node = self.producer.get(self.origin(name))
        return node is not None and node.op_type == "DequantizeLinear"

    def weight_source(self, name: str):
        """For a tensor fed by constant weights: (DQ node or None, the constant's name); else None."""
        name = self.origin(name)
        if self.is_const(name):
            return None, name
        dq = self.producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        src = dq.input[0]
        if self.is_const(src):
            return dq, src
        q = self.producer.get(src)
        if q is not None and q.op_type == "QuantizeLinear" and self.is_const(q.input[0]):
            return dq, q.input[0]
        return None


def _name(node) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def expected_weight_axis(node, weight_input: int, rank: int) -> int:
    """Output-channel axis of the weight feeding input ``weight_input`` of ``node``."""
    from edgec.compiler.weight_axis import weight_axis

    return weight_axis(node, weight_input, rank)


def _check_qparams(g: _Graph, node, report: QDQReport, activation: bool) -> None:
    name = _name(node)
    scale = g.const(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        report.violations.append(Violation("scale", name, f"scale '{node.input[1] if len(node.input) > 1 else ''}' "
                                           "is not a constant: TensorRT needs build-time scales"))
    elif not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        report.violations.append(Violation("scale", name, "scale has a zero, negative or non-finite value"))
    elif activation and scale.size > 1:
        report.violations.append(Violation(
            "activation-axis", name, f"activation scale has {scale.size} values: TensorRT quantizes "
            "activations per tensor; use one scale"))
    zp_name = node.input[2] if len(node.input) > 2 else ""
    if not zp_name:
        out_dt = node_attribute(node, "output_dtype", 0) if node.op_type == "QuantizeLinear" else 0
        if out_dt != INT8:
            report.violations.append(Violation(
                "zero-point", name, "no zero point: ONNX then means uint8; TensorRT needs an int8 zero point of 0"))
        return
    zp = g.const(zp_name)
    dt = g.const_dtype(zp_name)
    if zp is None:
        report.violations.append(Violation("zero-point", name, f"zero point '{zp_name}' is not a constant"))
        return
    if dt == INT32 and node.op_type == "DequantizeLinear":
        return  # bias: reported by the dq-input/dtype rule of the caller
    if dt != INT8:
        kind = {UINT8: "uint8"}.get(dt, f"ONNX type {dt}")
        report.violations.append(Violation(
            "dtype", name, f"zero point is {kind}: TensorRT takes int8 Q/DQ only (symmetric, signed)"))
    if np.any(zp != 0):
        report.violations.append(Violation(
            "zero-point", name, f"zero point is {zp.ravel()[:4].tolist()}, not 0: TensorRT quantizes symmetrically; "
            "recalibrate with symmetric activations"))


def check_qdq(proto, keep_float=(), quantize_add: bool = True) -> QDQReport:
    """Check a Q/DQ ONNX model against TensorRT's rules; see the module docstring."""
    g = _Graph(proto.graph)
    report = QDQReport()
    keep = set(keep_float)

    # Weighted ops: activation inputs quantized, weights quantized per output channel.
    for node in proto.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        name = _name(node)
        quantized_any, missing = False, []
        for idx in (0, 1):  # input 2 of Conv/Gemm is the bias

            if idx >= len(node.input) or not node.input[idx]:
                continue
            tensor = node.input[idx]
            ws = g.weight_source(tensor)
            if ws is not None:
                dq, const_name = ws
                is_weight_slot = idx == 1 or node.op_type in ("MatMul", "Gemm")
                if not is_weight_slot:
                    continue
                if dq is None:
                    if name not in keep:
                        missing.append(("weight-not-quantized", tensor))
                    continue
                quantized_any = True
                arr = g.const(const_name)
                scale = g.const(dq.input[1]) if len(dq.input) > 1 else None
                if g.origin(tensor) != tensor and scale is not None and scale.size > 1:
                    report.notes.append(f"weight '{const_name}' of '{name}' reaches it through shape ops: its "
                                        "per-channel axis was not checked")
                elif arr is not None and scale is not None and scale.size > 1:
                    rank = arr.ndim
                    axis = int(node_attribute(dq, "axis", 1))
                    axis = axis + rank if axis < 0 else axis
                    want = expected_weight_axis(node, idx, rank)
                    if axis != want:
                        report.violations.append(Violation(
                            "weight-axis", _name(dq),
                            f"per-channel scale of weight '{const_name}' (shape {list(arr.shape)}) of "
                            f"{node.op_type} '{name}' is on axis {axis}; TensorRT needs the output-channel "
                            f"axis {want}"))
                    elif arr.shape[axis] != scale.size:
                        report.violations.append(Violation(
                            "weight-axis", _name(dq),
                            f"weight '{const_name}' has {arr.shape[axis]} output channels but {scale.size} scales"))
                    else:
                        report.per_channel_weights[const_name] = axis
                continue
            if g.from_dq(tensor):
                quantized_any = True
            elif name not in keep:
                missing.append(("missing-qdq", tensor))
        if quantized_any:
            report.quantized_nodes.append(name)
            for rule, tensor in missing:
                if rule == "missing-qdq":
                    msg = (f"input '{tensor}' of {node.op_type} '{name}' has no QuantizeLinear/DequantizeLinear: "
                           f"TensorRT cannot fuse it and runs '{name}' in float; quantize it or pass --keep-float {name}")
                else:
                    msg = (f"weight '{tensor}' of {node.op_type} '{name}' has no DequantizeLinear: int8 "
                           f"{node.op_type} needs quantized weights; quantize it or pass --keep-float {name}")
                report.violations.append(Violation(rule, name, msg))
        else:
            report.float_weighted_nodes.append(name)
            if name not in keep:
                report.notes.append(f"{node.op_type} '{name}' has no Q/DQ: TensorRT runs it in float/fp16")

    # Q and DQ nodes themselves.
    for node in proto.graph.node:
        name = _name(node)
        if node.op_type == "QuantizeLinear":
            const_in = g.is_const(node.input[0])
            _check_qparams(g, node, report, activation=not const_in)
            outs = node.output[0]
            bad = [c for c in g.consumers.get(outs, []) if c.op_type != "DequantizeLinear"]
            if bad or outs in g.outputs:
                who = f"node '{_name(bad[0])}' ({bad[0].op_type})" if bad else "a graph output"
                report.violations.append(Violation(
                    "q-without-dq", name, f"QuantizeLinear output '{outs}' feeds {who}: TensorRT needs every "
                    "QuantizeLinear followed by a DequantizeLinear"))
        elif node.op_type == "DequantizeLinear":
            src = node.input[0]
            if g.is_const(src):
                dt = g.const_dtype(src)
                if dt == INT32:
                    report.violations.append(Violation(
                        "dtype", name, f"int32 DequantizeLinear of '{src}' (a quantized bias): TensorRT rejects "
                        "it ('only activation types allowed'); keep the bias float"))
                    continue
                if dt != INT8:
                    report.violations.append(Violation(
                        "dtype", name, f"DequantizeLinear of '{src}' with ONNX type {dt}: TensorRT takes int8 weights"))
                _check_qparams(g, node, report, activation=False)
                continue
            prod = g.producer.get(src)
            if prod is None or prod.op_type != "QuantizeLinear":
                what = f"'{_name(prod)}' ({prod.op_type})" if prod is not None else "a graph input"
                report.violations.append(Violation(
                    "dq-input", name, f"DequantizeLinear reads '{src}' from {what}: TensorRT needs a "
                    "QuantizeLinear or an int8 initializer before it"))
                continue
            weight_q = g.is_const(prod.input[0])
            _check_qparams(g, node, report, activation=not weight_q)
            qs, ds = g.const(prod.input[1]), g.const(node.input[1])
            qz = g.const(prod.input[2]) if len(prod.input) > 2 and prod.input[2] else None
            dz = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            same = (qs is not None and ds is not None and qs.shape == ds.shape and np.allclose(qs, ds, rtol=1e-6)
                    and (qz is None) == (dz is None) and (qz is None or np.array_equal(qz, dz))
                    and int(node_attribute(prod, "axis", 1)) == int(node_attribute(node, "axis", 1)))
            if not same:
                report.violations.append(Violation(
                    "scale-mismatch", name, f"DequantizeLinear uses other scale/zero point than its QuantizeLinear "
                    f"'{_name(prod)}': TensorRT fuses only matching pairs"))

    # Residual Add: both activation inputs quantized, or neither.
    for node in proto.graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        ins = [i for i in node.input if i and g.weight_source(i) is None]
        if len(ins) != 2:
            continue
        q = [g.from_dq(i) for i in ins]
        name = _name(node)
        if q[0] != q[1] and name not in keep:
            fl = ins[q.index(False)]
            report.violations.append(Violation(
                "add-mixed", name, f"residual Add has a quantized input '{ins[q.index(True)]}' and a float input "
                f"'{fl}': TensorRT fuses the Add only when both carry Q/DQ; quantize '{fl}' too (or neither)"))
        elif not any(q) and quantize_add and name not in keep:
            report.notes.append(f"residual Add '{name}' has no Q/DQ: it runs unfused in float/fp16")
    return report


# ---------------------------------------------------------------------------------
# Legalization
# ---------------------------------------------------------------------------------
def _dequant(q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int) -> np.ndarray:
    from edgec.runtimes.io import dequantize_linear

    return dequantize_linear(q, scale, zp, axis).astype(np.float32)


def legalize(proto, float_weights: bool = True):
    """Rewrite a Q/DQ model into the form every TensorRT >= 8.6 parses.

    Returns ``(new_proto, changes)``; ``changes`` counts ``bias_folded`` (int32
    DequantizeLinear -> float initializer) and ``weights_requantized`` (int8 initializer ->
    float initializer + QuantizeLinear). onnxruntime computes the same numbers before and
    after.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    g = _Graph(model.graph)
    changes = {"bias_folded": 0, "weights_requantized": 0}
    new_nodes, new_inits, drop_inits = [], [], set()
    names_in_use = set(g.inits) | set(g.producer) | {i.name for i in model.graph.input}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and g.is_const(node.input[0]) and node.output[0] not in g.outputs:
            dt = g.const_dtype(node.input[0])
            scale = g.const(node.input[1])
            zp = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            axis = int(node_attribute(node, "axis", 1))
            if dt == INT32 and scale is not None:
                val = _dequant(g.const(node.input[0]), scale, zp, axis)
                new_inits.append(numpy_helper.from_array(val, node.output[0]))
                drop_inits.add(node.input[0])
                changes["bias_folded"] += 1
                continue
            if dt == INT8 and float_weights and scale is not None:
                base = node.input[0]
                stem = base[: -len("_quantized")] if base.endswith("_quantized") else base
                fname = stem if stem != base and stem not in names_in_use else f"{base}_float"
                qname = f"{stem}_wq_{len(new_nodes)}"
                names_in_use.add(fname)
                if fname not in {t.name for t in new_inits}:
                    new_inits.append(numpy_helper.from_array(_dequant(g.const(base), scale, zp, axis), fname))
                q_inputs = [fname, node.input[1]] + ([node.input[2]] if len(node.input) > 2 and node.input[2] else [])
                qnode = helper.make_node("QuantizeLinear", q_inputs, [qname], name=f"{_name(node)}_wq")
                if scale.size > 1 or any(a.name == "axis" for a in node.attribute):
                    # The pair must match exactly, also for a per-channel scale of one channel
                    # (a 1-channel head: YOLOX objectness) whose axis is not the default.
                    qnode.attribute.append(helper.make_attribute("axis", axis))
                new_nodes.append(qnode)
                node.input[0] = qname
                drop_inits.add(base)
                changes["weights_requantized"] += 1
        new_nodes.append(node)
    # Keep initializers still referenced by other nodes.
    still_used = {i for n in new_nodes for i in n.input}
    keep = [t for t in model.graph.initializer if t.name not in drop_inits or t.name in still_used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep + new_inits)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    # Shape info of rewritten tensors is stale only in dtype for folded biases: drop it.
    folded = {t.name for t in new_inits}
    vi = [v for v in model.graph.value_info if v.name not in folded]
    del model.graph.value_info[:]
    model.graph.value_info.extend(vi)
    return model, changes


def activation_qparams(proto) -> dict[str, tuple[float, list[str]]]:
    """``{tensor: (scale, [consumer node names])}`` for every activation QuantizeLinear."""
    g = _Graph(proto.graph)
    out: dict[str, tuple[float, list[str]]] = {}
    for node in proto.graph.node:
        if node.op_type != "QuantizeLinear" or g.is_const(node.input[0]):
            continue
        scale = g.const(node.input[1])
        if scale is None or scale.size != 1:
            continue
        users = []
        for dq in g.consumers.get(node.output[0], []):
            for c in g.consumers.get(dq.output[0], []):
                users.append(_name(c))
        prev = out.get(node.input[0])
        out[node.input[0]] = (float(scale.ravel()[0]), sorted(set(users + (prev[1] if prev else []))))
    return out
