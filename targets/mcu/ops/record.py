"""`OpRecord`: everything the mcu target knows about one op, in one place.

A record ties together the op's importers (ONNX, per opset version, and TFLite), its
constraints (each rejection with a reason), its C emitter and kernel files, and how the
planner and the quantizer treat it. `edgec.targets.mcu.ops` collects every record and
derives the supported-op sets, kernel file list, in-place kinds and the quantizer's
integer-op set from them. See docs/adding-an-mcu-op.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from edgec.targets.mcu.qgraph import QOp

# An ONNX importer: ``fn(ctx, node)`` appends QOps through ``ctx`` (import_onnx.OnnxContext).
OnnxImporter = Callable[[Any, Any], None]
# A TFLite importer: ``fn(g, builtin_name, node_name, ins, outs, options) -> QOp`` (``g``: the QGraph so far).
TfliteImporter = Callable[[Any, str, str, list, list, Any], Any]
# A constraint: ``fn(view) -> reason or None`` for one ONNX node (`NodeView`).
Constraint = Callable[["NodeView"], "str | None"]
# An emitter: ``fn(op, ctx) -> C statements`` (codegen.EmitContext).
Emitter = Callable[[Any, Any], list]


NCHW_TO_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


def attrs(node) -> dict:
    """An ONNX node's attributes as Python values."""
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def nhwc(shape) -> tuple[int, ...]:
    """The NHWC shape of an NCHW 4-D shape (other ranks unchanged)."""
    shape = tuple(int(d) for d in shape)
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else shape


def node_name(node) -> str:
    return node.name or node.output[0]


@dataclass(frozen=True)
class OpRecord:
    """One op of the mcu target.

    Attributes:
        name: What the op is called in messages and docs (``"Conv"``).
        kinds: The `QOp` kinds its importers produce and its emitter writes.
        emit: The C emitter for those kinds.
        kernels: Kernel ``.c`` files (in ``targets/mcu/kernels``) the emitted calls need.
        headers: Extra kernel headers the generated model includes when the op is used
            (ops added after the shared ``edgec_kernels.h`` declare their kernels here,
            so bundles of models that do not use them stay byte-identical).
        onnx: ONNX op type -> ``{since_opset: importer}`` (TVM's ``_impl_vN`` dispatch:
            the importer with the largest version not above the model's opset runs).
        tflite: TFLite builtin name -> importer.
        constraints: Checks on an ONNX node, run on the float graph before calibration
            and again on import; each returns the reason it rejects the node, or None.
        inplace: The kernel may write its output over an input of the same size
            (element-wise ops); the planner then shares the two buffers.
        integer: The quantizer quantizes the op's tensors (it runs on int8 here). False
            for ops the importer handles only as plumbing (Identity).
        keeps_input_qparams: ONNX op types whose output the quantizer gives the input's
            scale and zero point (MaxPool, AveragePool, Reshape ...), as TFLite does.
        lut: For an element-wise function of one int8 tensor (Sigmoid, HardSwish ...): its
            float definition. Such an op needs no kernel of its own: its importers emit a
            ``lut`` op, whose 256-entry table `lut.py` builds from this function (or from
            LiteRT's reference kernel for a .tflite source). Use `lut_importers`.
        any_layout: The ONNX importers read ``ctx.rank4`` themselves and take 4-D tensors in
            either layout (NHWC, or the ONNX graph's own order: see `import_onnx`). Other
            ops get their 4-D inputs in NHWC, transposed first where needed.
    """

    name: str
    kinds: tuple[str, ...] = ()
    emit: Emitter | None = None
    kernels: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    onnx: dict[str, dict[int, OnnxImporter]] = field(default_factory=dict)
    tflite: dict[str, TfliteImporter] = field(default_factory=dict)
    constraints: tuple[Constraint, ...] = ()
    inplace: bool = False
    integer: bool = True
    keeps_input_qparams: frozenset[str] = frozenset()
    lut: Callable[[np.ndarray], np.ndarray] | None = None
    any_layout: bool = False

    def onnx_importer(self, op_type: str, opset: int) -> OnnxImporter | None:
        """The importer for ``op_type`` at ``opset`` (None when the opset is older than all)."""
        impls = self.onnx.get(op_type, {})
        versions = [v for v in impls if v <= opset]
        return impls[max(versions)] if versions else None

    def why_not(self, view: "NodeView") -> str | None:
        """The first constraint's reason for rejecting ``view``'s node, or None."""
        for check in self.constraints:
            reason = check(view)
            if reason:
                return reason
        return None


class NodeView:
    """Read-only facts about one ONNX node for constraints: attributes, constant inputs
    (seen through DequantizeLinear, so the float and the Q/DQ graph read alike), shapes."""

    def __init__(self, node, graph: "GraphFacts"):
        self.node = node
        self.graph = graph
        self.op_type = node.op_type
        self.name = node.name or (node.output[0] if node.output else node.op_type)

    @property
    def opset(self) -> int:
        return self.graph.opset

    def attr(self, name: str, default=None):
        from onnx import helper

        for a in self.node.attribute:
            if a.name == name:
                v = helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def input(self, i: int) -> str:
        return self.node.input[i] if i < len(self.node.input) else ""

    def const(self, i: int) -> np.ndarray | None:
        """Input ``i`` as a float/int array when it is a constant (after dequantizing), else None."""
        return self.graph.const(self.input(i))

    def shape(self, i: int) -> tuple[int, ...] | None:
        name = self.input(i)
        return self.graph.shapes.get(name) if name else None

    def out_shape(self, i: int = 0) -> tuple[int, ...] | None:
        return self.graph.shapes.get(self.node.output[i]) if i < len(self.node.output) else None


class GraphFacts:
    """Initializers, Constant outputs, DequantizeLinear of constants and inferred shapes."""

    def __init__(self, proto):
        import onnx
        from onnx import numpy_helper, shape_inference

        try:
            proto = shape_inference.infer_shapes(proto)
        except Exception:  # noqa: BLE001 - shapes from the model's own value_info then
            pass
        g = proto.graph
        self.opset = next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                          onnx.defs.onnx_opset_version())
        self.init: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.dq: dict[str, Any] = {}
        for node in g.node:
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        self.init[node.output[0]] = numpy_helper.to_array(a.t)
            elif node.op_type == "DequantizeLinear":
                self.dq[node.output[0]] = node
        self.shapes: dict[str, tuple[int, ...]] = {}
        for v in list(g.value_info) + list(g.input) + list(g.output):
            dims = v.type.tensor_type.shape.dim
            if dims and all(d.HasField("dim_value") for d in dims):
                self.shapes[v.name] = tuple(int(d.dim_value) for d in dims)
        for k, a in self.init.items():
            self.shapes[k] = tuple(a.shape)
        self.graph = g

    def const(self, name: str) -> np.ndarray | None:
        if not name:
            return None
        if name in self.init:
            return np.asarray(self.init[name])
        dq = self.dq.get(name)
        if dq is None or dq.input[0] not in self.init:
            return None
        q = np.asarray(self.init[dq.input[0]]).astype(np.float64)
        s = np.asarray(self.init[dq.input[1]], np.float64)
        zp = np.asarray(self.init[dq.input[2]], np.float64) if len(dq.input) > 2 and dq.input[2] else 0.0
        if s.size > 1:
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) % q.ndim
            shape = [1] * q.ndim
            shape[axis] = -1
            s = s.reshape(shape)
            zp = np.asarray(zp).reshape(shape) if np.ndim(zp) else zp
        return ((q - zp) * s).astype(np.float32)


def lut_importers(name: str, onnx_op: str, tflite_op: str | None,
                  onnx_args: Callable[[Any], tuple[float, ...]] | None = None) -> dict:
    """``onnx``/``tflite`` importers of an element-wise op computed by table lookup;
    ``onnx_args`` reads the float function's extra arguments from the node's attributes."""
    def onnx_lut(ctx, node):
        x = ctx.q_of(node.input[0], node)
        y, _ = ctx.out_q(node)
        ctx.add_op("lut", node, [x], [y], {"fn": name, "args": onnx_args(node) if onnx_args else ()})

    def tflite_lut(g, opname, node, ins, outs, opts):
        return QOp("lut", node, ins[:1], outs, {"fn": name, "tflite_op": opname}, opname)

    return {"onnx": {onnx_op: {1: onnx_lut}}, "tflite": {tflite_op: tflite_lut} if tflite_op else {}}
