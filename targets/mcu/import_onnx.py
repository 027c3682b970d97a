"""Read a Q/DQ ONNX model (``QuantizeLinear``/``DequantizeLinear`` around float ops, as
``compiler/quantize.py`` with placement ``full`` or onnxruntime's ``quantize_static`` in
QDQ format write it) into a `QGraph`.

Every float tensor between ops must come out of a DequantizeLinear; the int8 tensor behind
it is what the C uses. Weights are int8 initializers behind DQ (per-channel scales), biases
int32. 4-D activations are moved from NCHW to NHWC (weights permuted to match); a Flatten or
Reshape that leaves 4-D gets a transpose back to NCHW order when the data order matters.
Tensors next to the Transposes of a TensorFlow-converted graph stay in the graph's own
order instead, so those Transposes move no data (`onnx_layout`).
Relu/Clip between an op and its QuantizeLinear become the op's clamp bounds.

This module holds the Q/DQ plumbing and `OnnxContext`, the helpers the per-op importers
of `edgec.targets.mcu.ops` call; the ops themselves are converted by their records.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from edgec.errors import ModelLoadError, UnsupportedOpError
from edgec.targets.mcu.onnx_layout import NCHW_OF_NHWC, NHWC_OF_NCHW, plain_tensors
from edgec.targets.mcu.ops import ANY_LAYOUT_ONNX_OPS, BY_ONNX, onnx_rejection
from edgec.targets.mcu.ops.s16 import retype
from edgec.targets.mcu.ops.record import GraphFacts, NodeView, attrs, nhwc, node_name
from edgec.targets.mcu.qgraph import QGraph, QOp, QTensor
from edgec.targets.mcu.qmath import clip_range


class OnnxContext:
    """The state of one import: int8 tensors, ops so far, float -> int8 aliases."""

    def __init__(self, proto, nhwc_io: frozenset[str] = frozenset()):
        self.facts = GraphFacts(proto)
        self.graph = self.facts.graph
        self.opset = self.facts.opset
        self.init = self.facts.init
        self.shapes = self.facts.shapes
        self.consumers: dict[str, list] = defaultdict(list)
        for node in self.graph.node:
            for i in node.input:
                self.consumers[i].append(node)
        self.tensors: dict[str, QTensor] = {}
        self.ops: list[QOp] = []
        self.alias: dict[str, str] = {}  # float tensor -> int8 tensor it stands for
        self.rank4: set[str] = set()  # 4-D int8 tensors stored NHWC (the rest keep the graph's order)
        self.plain = plain_tensors(self.graph, self.consumers, self.shapes, nhwc_io)
        self.fused: list = []  # Relu/Clip nodes folded into their producer
        self._pending: list[QOp] = []  # ops to run after the node being imported
        self._as_nhwc: dict[str, str] = {}
        self._n = 0

    # -- helpers for the op importers -------------------------------------------------------
    def fresh(self, base: str) -> str:
        self._n += 1
        return f"{base}__{self._n}"

    def scalar(self, name: str, default=None):
        """A constant input as a flat array (float constants seen through DequantizeLinear)."""
        if not name:
            return default
        arr = self.facts.const(name)
        if arr is None:
            raise KeyError(name)
        return np.asarray(arr).reshape(-1)

    def is_const(self, name: str) -> bool:
        return bool(name) and self.facts.const(name) is not None

    def q_of(self, float_name: str, node) -> str:
        if float_name not in self.alias:
            raise UnsupportedOpError(node.op_type, node_name(node), "mcu",
                                     f"input '{float_name}' is not quantized (no DequantizeLinear before it)")
        q = self.alias[float_name]
        if self._needs_nhwc(q, node):
            if q not in self._as_nhwc:
                t = self.tensors[q]
                self._as_nhwc[q] = self.add_tensor(QTensor(self.fresh(q) + "/nhwc", nhwc(t.shape), t.dtype,
                                                           t.scale, t.zero_point))
                self.rank4.add(self._as_nhwc[q])
                self.add_op("transpose", node, [q], [self._as_nhwc[q]], {"perm": list(NHWC_OF_NCHW)})
            return self._as_nhwc[q]
        return q

    def _needs_nhwc(self, q: str, node) -> bool:
        """A 4-D activation kept in the graph's order, read by an op whose kernel wants NHWC."""
        t = self.tensors[q]
        return len(t.shape) == 4 and not t.is_const and q not in self.rank4 and node.op_type not in ANY_LAYOUT_ONNX_OPS

    def out_q(self, node, fuse: bool = False) -> tuple[str, tuple[int, int]]:
        """The int8 tensor the node's output is quantized to, and clamp bounds of a fused Relu/Clip."""
        y = node.output[0]
        lo = hi = None
        cons = self.consumers.get(y, [])
        if fuse and len(cons) == 1 and cons[0].op_type in ("Relu", "Clip"):
            act = cons[0]
            lo, hi = self.clip_bounds(act)
            self.fused.append(act)
            y = act.output[0]
            cons = self.consumers.get(y, [])
        qs = [c for c in cons if c.op_type == "QuantizeLinear"]
        if not qs:
            raise UnsupportedOpError(node.op_type, node_name(node), "mcu",
                                     "its output is not quantized (no QuantizeLinear after it)")
        q = qs[0].output[0]
        t = self.tensors[q]
        if self._needs_nhwc(q, node):  # the kernel writes NHWC; the tensor is kept in the graph's order
            tmp = self.add_tensor(QTensor(self.fresh(q) + "/nhwc", nhwc(t.shape), t.dtype, t.scale, t.zero_point))
            self.rank4.add(tmp)
            self._pending.append(QOp("transpose", node_name(node), [tmp], [q], {"perm": list(NCHW_OF_NHWC)},
                                     node.op_type))
            q = tmp
        return q, clip_range(lo, hi, t.s, t.zp, t.dtype)

    def clip_bounds(self, act) -> tuple[float | None, float | None]:
        if act.op_type == "Relu":
            return 0.0, None
        a = attrs(act)
        lo = a.get("min")
        hi = a.get("max")
        if len(act.input) > 1 and act.input[1]:
            lo = float(self.scalar(act.input[1])[0])
        if len(act.input) > 2 and act.input[2]:
            hi = float(self.scalar(act.input[2])[0])
        return lo, hi

    def add_op(self, kind, node, ins, outs, attrs=None):
        self.ops.append(QOp(kind, node_name(node), ins, outs, attrs or {}, node.op_type))

    def add_tensor(self, t: QTensor) -> str:
        self.tensors[t.name] = t
        return t.name

    # -- pass 1: Q and DQ ---------------------------------------------------------------
    def quant_tensors(self) -> None:
        for node in self.graph.node:
            if node.op_type == "QuantizeLinear":
                x, y = node.input[0], node.output[0]
                s = np.asarray(self.init[node.input[1]], np.float32).reshape(-1)
                zp = np.asarray(self.init[node.input[2]]).reshape(-1) if len(node.input) > 2 and node.input[2] \
                    else np.zeros(1)
                zp_arr = np.asarray(self.init[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
                dtype = "int8" if zp_arr is None else zp_arr.dtype.name
                # int16: the activations of a mixed 16x8 graph (promote16), symmetric as LiteRT's.
                if dtype not in ("int8", "int16") or dtype == "int16" and zp_arr.any():
                    raise UnsupportedOpError("QuantizeLinear", node.name or y, "mcu",
                                             f"{dtype} quantization; the mcu target takes int8 (and int16 "
                                             "with zero point 0)")
                shape = self.shapes.get(x) or self.shapes.get(y)
                if shape is None:
                    raise ModelLoadError(f"the mcu target needs static shapes; '{x}' has none")
                plain = y in self.plain
                self.tensors[y] = QTensor(y, tuple(shape) if plain else nhwc(shape), dtype, s,
                                          np.asarray(zp, np.int64).reshape(-1))
                if len(shape) == 4 and not plain:
                    self.rank4.add(y)
        for node in self.graph.node:
            if node.op_type != "DequantizeLinear":
                continue
            q, y = node.input[0], node.output[0]
            if q in self.init:
                arr = np.asarray(self.init[q])
                s = np.asarray(self.init[node.input[1]], np.float32).reshape(-1)
                zp = np.asarray(self.init[node.input[2]]).reshape(-1) if len(node.input) > 2 and node.input[2] \
                    else np.zeros(1)
                axis = int(attrs(node).get("axis", 1))
                self.tensors[q] = QTensor(q, tuple(arr.shape), arr.dtype.name, s,
                                          np.asarray(zp, np.int64).reshape(-1), arr.copy(), axis if s.size > 1 else 0)
            self.alias[y] = q

    # -- pass 2: ops -------------------------------------------------------------------------
    def convert(self) -> QGraph:
        self.quant_tensors()
        inputs, outputs = [], []
        for gi in self.graph.input:
            if gi.name in self.init:
                continue
            qs = [c for c in self.consumers.get(gi.name, []) if c.op_type == "QuantizeLinear"]
            if not qs or len(qs) != len(self.consumers[gi.name]):
                raise UnsupportedOpError("Input", gi.name, "mcu", "graph inputs must go straight into QuantizeLinear")
            inputs.append(qs[0].output[0])
            for extra in qs[1:]:
                self.ops.append(QOp("requant", extra.name or extra.output[0], [qs[0].output[0]], [extra.output[0]],
                                    {"act": (-128, 127)}, "QuantizeLinear"))
        for node in self.graph.node:
            if node in self.fused or node.op_type in ("Constant", "DequantizeLinear"):
                continue
            if node.op_type == "QuantizeLinear":
                x = node.input[0]
                if x in self.alias and not any(node.output[0] == i for i in inputs):
                    # DQ -> Q with new parameters: a requantization.
                    self.ops.append(QOp("requant", node.name or node.output[0], [self.alias[x]], [node.output[0]],
                                        {"act": (-128, 127)}, "QuantizeLinear"))
                continue
            reason = onnx_rejection(NodeView(node, self.facts))
            if reason:
                raise UnsupportedOpError(node.op_type, node_name(node), "mcu", reason)
            BY_ONNX[node.op_type].onnx_importer(node.op_type, self.opset)(self, node)
            self.ops.extend(self._pending)
            self._pending.clear()
        for go in self.graph.output:
            if go.name not in self.alias:
                raise UnsupportedOpError("Output", go.name, "mcu", "graph outputs must come out of DequantizeLinear")
            outputs.append(self.alias[go.name])
        g = QGraph(self.tensors, self.ops, inputs, outputs, source="onnx",
                   meta={"graph_order_io": sorted(n for n in inputs + outputs
                                                  if len(self.tensors[n].shape) == 4 and n not in self.rank4)})
        g.prune()
        return retype(g)


def load_onnx(proto, nhwc_io: frozenset[str] = frozenset()) -> QGraph:
    """The QGraph of a Q/DQ ONNX model; ``nhwc_io``: graph inputs/outputs the model declares NHWC."""
    if proto is None:
        raise ModelLoadError("the mcu target needs an ONNX model or an int8 .tflite")
    return OnnxContext(proto, nhwc_io).convert()
