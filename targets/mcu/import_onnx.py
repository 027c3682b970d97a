"""Read a Q/DQ ONNX model (``QuantizeLinear``/``DequantizeLinear`` around float ops, as
``compiler/quantize.py`` with placement ``full`` or onnxruntime's ``quantize_static`` in
QDQ format write it) into a `QGraph`.

Every float tensor between ops must come out of a DequantizeLinear; the int8 tensor behind
it is what the C uses. Weights are int8 initializers behind DQ (per-channel scales), biases
int32. 4-D activations are moved from NCHW to NHWC (weights permuted to match); a Flatten or
Reshape that leaves 4-D gets a transpose back to NCHW order when the data order matters.
Relu/Clip between an op and its QuantizeLinear become the op's clamp bounds.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from edgec.errors import ModelLoadError, UnsupportedOpError
from edgec.targets.mcu.qgraph import QGraph, QOp, QTensor
from edgec.targets.mcu.qmath import clip_range

SUPPORTED_ONNX = frozenset({
    "QuantizeLinear", "DequantizeLinear", "Conv", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip",
    "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean", "Reshape", "Flatten", "Squeeze",
    "Unsqueeze", "Softmax", "Concat", "Pad", "Sigmoid", "Tanh", "Identity", "Constant",
})
NCHW_TO_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _nhwc(shape) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    return (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else shape


class _Importer:
    def __init__(self, proto):
        import onnx
        from onnx import numpy_helper, shape_inference

        try:
            proto = shape_inference.infer_shapes(proto)
        except Exception:  # noqa: BLE001 - shapes from the model's own value_info then
            pass
        self.graph = proto.graph
        self.init = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        for node in self.graph.node:
            if node.op_type == "Constant":
                self.init[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
        self.shapes: dict[str, tuple[int, ...]] = {}
        for v in list(self.graph.value_info) + list(self.graph.input) + list(self.graph.output):
            dims = v.type.tensor_type.shape.dim
            if dims and all(d.HasField("dim_value") for d in dims):
                self.shapes[v.name] = tuple(int(d.dim_value) for d in dims)
        for k, a in self.init.items():
            self.shapes[k] = tuple(a.shape)
        self.consumers: dict[str, list] = defaultdict(list)
        for node in self.graph.node:
            for i in node.input:
                self.consumers[i].append(node)
        self.onnx = onnx
        self.tensors: dict[str, QTensor] = {}
        self.ops: list[QOp] = []
        self.alias: dict[str, str] = {}  # float tensor -> int8 tensor it stands for
        self.rank4: set[str] = set()
        self._n = 0

    # -- helpers ---------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        self._n += 1
        return f"{base}__{self._n}"

    def scalar(self, name: str, default=None):
        if not name:
            return default
        return np.asarray(self.init[name]).reshape(-1)

    def q_of(self, float_name: str, node) -> str:
        if float_name not in self.alias:
            raise UnsupportedOpError(node.op_type, node.name or node.output[0], "mcu",
                                     f"input '{float_name}' is not quantized (no DequantizeLinear before it)")
        return self.alias[float_name]

    def out_q(self, node, fused: list | None = None) -> tuple[str, tuple[int, int]]:
        """The int8 tensor the node's output is quantized to, and clamp bounds of a fused Relu/Clip."""
        y = node.output[0]
        lo = hi = None
        cons = self.consumers.get(y, [])
        if len(cons) == 1 and cons[0].op_type in ("Relu", "Clip") and fused is not None:
            act = cons[0]
            lo, hi = self._clip_bounds(act)
            fused.append(act)
            y = act.output[0]
            cons = self.consumers.get(y, [])
        qs = [c for c in cons if c.op_type == "QuantizeLinear"]
        if not qs:
            raise UnsupportedOpError(node.op_type, node.name or node.output[0], "mcu",
                                     "its output is not quantized (no QuantizeLinear after it)")
        q = qs[0].output[0]
        t = self.tensors[q]
        return q, clip_range(lo, hi, t.s, t.zp)

    def _clip_bounds(self, act) -> tuple[float | None, float | None]:
        if act.op_type == "Relu":
            return 0.0, None
        a = _attrs(act)
        lo = a.get("min")
        hi = a.get("max")
        if len(act.input) > 1 and act.input[1]:
            lo = float(self.scalar(act.input[1])[0])
        if len(act.input) > 2 and act.input[2]:
            hi = float(self.scalar(act.input[2])[0])
        return lo, hi

    def add_op(self, kind, node, ins, outs, attrs=None):
        self.ops.append(QOp(kind, node.name or node.output[0], ins, outs, attrs or {}, node.op_type))

    # -- pass 1: Q and DQ ---------------------------------------------------------------
    def quant_tensors(self) -> None:
        for node in self.graph.node:
            if node.op_type == "QuantizeLinear":
                x, y = node.input[0], node.output[0]
                s = np.asarray(self.init[node.input[1]], np.float32).reshape(-1)
                zp = self.scalar(node.input[2], np.zeros(1, np.int64)) if len(node.input) > 2 else np.zeros(1)
                zp_arr = np.asarray(self.init[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
                if zp_arr is not None and zp_arr.dtype != np.int8:
                    raise UnsupportedOpError("QuantizeLinear", node.name or y, "mcu",
                                             f"{zp_arr.dtype} quantization; the mcu target takes int8")
                shape = self.shapes.get(x) or self.shapes.get(y)
                if shape is None:
                    raise ModelLoadError(f"the mcu target needs static shapes; '{x}' has none")
                self.tensors[y] = QTensor(y, _nhwc(shape), "int8", s, np.asarray(zp, np.int64).reshape(-1))
                if len(shape) == 4:
                    self.rank4.add(y)
        for node in self.graph.node:
            if node.op_type != "DequantizeLinear":
                continue
            q, y = node.input[0], node.output[0]
            if q in self.init:
                arr = np.asarray(self.init[q])
                s = np.asarray(self.init[node.input[1]], np.float32).reshape(-1)
                zp = self.scalar(node.input[2], np.zeros(1)) if len(node.input) > 2 and node.input[2] else np.zeros(1)
                axis = int(_attrs(node).get("axis", 1))
                self.tensors[q] = QTensor(q, tuple(arr.shape), arr.dtype.name, s,
                                          np.asarray(zp, np.int64).reshape(-1), arr.copy(), axis if s.size > 1 else 0)
            self.alias[y] = q

    # -- pass 2: ops -------------------------------------------------------------------------
    def convert(self) -> QGraph:
        self.quant_tensors()
        fused: list = []
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
            if node in fused or node.op_type in ("Constant", "DequantizeLinear"):
                continue
            if node.op_type == "QuantizeLinear":
                x = node.input[0]
                if x in self.alias and not any(node.output[0] == i for i in inputs):
                    # DQ -> Q with new parameters: a requantization.
                    self.ops.append(QOp("requant", node.name or node.output[0], [self.alias[x]], [node.output[0]],
                                        {"act": (-128, 127)}, "QuantizeLinear"))
                continue
            if node.op_type not in SUPPORTED_ONNX:
                raise UnsupportedOpError(node.op_type, node.name or node.output[0], "mcu",
                                         "supported: " + ", ".join(sorted(SUPPORTED_ONNX)))
            getattr(self, "op_" + node.op_type)(node, fused)
        for go in self.graph.output:
            if go.name not in self.alias:
                raise UnsupportedOpError("Output", go.name, "mcu", "graph outputs must come out of DequantizeLinear")
            outputs.append(self.alias[go.name])
        g = QGraph(self.tensors, self.ops, inputs, outputs, source="onnx")
        g.prune()
        return g

    # -- op converters -------------------------------------------------------------------------
    def op_Conv(self, node, fused):
        a = _attrs(node)
        x = self.q_of(node.input[0], node)
        w = self.tensors[self.q_of(node.input[1], node)]
        b = self.q_of(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        y, act = self.out_q(node, fused)
        xt, yt = self.tensors[x], self.tensors[y]
        if len(xt.shape) != 4:
            raise UnsupportedOpError("Conv", node.name or node.output[0], "mcu", "only 2-D convolutions")
        group = int(a.get("group", 1))
        kh, kw = w.shape[2], w.shape[3]
        strides = a.get("strides", [1, 1])
        dil = a.get("dilations", [1, 1])
        pads = list(a.get("pads", [0, 0, 0, 0]))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for i, (n_in, k, s, d) in enumerate(zip(xt.shape[1:3], (kh, kw), strides, dil)):
                total = max(0, (yt.shape[1 + i] - 1) * s + (k - 1) * d + 1 - n_in)
                pads.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
            pads = pads + pads
        attrs = {"stride": tuple(strides), "dilation": tuple(dil), "pad": (pads[0], pads[1]), "act": act}
        in_c = xt.shape[3]
        if group == 1:
            wq = QTensor(w.name + "/ohwi", (w.shape[0], kh, kw, w.shape[1]), "int8", w.scale, w.zero_point,
                         np.ascontiguousarray(w.data.transpose(0, 2, 3, 1)), 0)
            kind = "conv"
        elif group == in_c and w.shape[1] == 1:
            wq = QTensor(w.name + "/1hwc", (1, kh, kw, w.shape[0]), "int8", w.scale, w.zero_point,
                         np.ascontiguousarray(w.data.transpose(1, 2, 3, 0)), 3)
            kind = "dwconv"
            attrs["depth_mult"] = w.shape[0] // in_c
        else:
            raise UnsupportedOpError("Conv", node.name or node.output[0], "mcu", f"grouped convolution (group={group})")
        self.tensors[wq.name] = wq
        self.add_op(kind, node, [x, wq.name] + ([b] if b else []), [y], attrs)

    def _fc(self, node, fused, x, w_arr, w_scale, bias):
        y, act = self.out_q(node, fused)
        w = QTensor(self.fresh(node.name or "fc") + "/w", tuple(w_arr.shape), "int8", w_scale,
                    np.zeros(w_scale.size, np.int64), np.ascontiguousarray(w_arr), 0)
        self.tensors[w.name] = w
        self.add_op("fc", node, [x, w.name] + ([bias] if bias else []), [y], {"act": act})

    def op_Gemm(self, node, fused):
        a = _attrs(node)
        if float(a.get("alpha", 1.0)) != 1.0 or float(a.get("beta", 1.0)) != 1.0 or a.get("transA", 0):
            raise UnsupportedOpError("Gemm", node.name or node.output[0], "mcu", "alpha/beta != 1 or transA")
        x = self.q_of(node.input[0], node)
        w = self.tensors[self.q_of(node.input[1], node)]
        b = self.q_of(node.input[2], node) if len(node.input) > 2 and node.input[2] else None
        warr = w.data if a.get("transB", 0) else w.data.T
        self._fc(node, fused, x, warr, w.scale, b)

    def op_MatMul(self, node, fused):
        x = self.q_of(node.input[0], node)
        wname = self.q_of(node.input[1], node)
        w = self.tensors[wname]
        if not w.is_const or len(w.shape) != 2:
            raise UnsupportedOpError("MatMul", node.name or node.output[0], "mcu", "only MatMul by a constant 2-D weight")
        self._fc(node, fused, x, w.data.T, w.scale, None)

    def _binary(self, node, fused, kind):
        ins = [self.q_of(i, node) for i in node.input[:2]]
        y, act = self.out_q(node, fused)
        out_rank4 = y in self.rank4
        fixed = []
        for n in ins:
            t = self.tensors[n]
            if out_rank4 and t.is_const:
                data = np.asarray(t.data)
                data = data.reshape((1,) * (4 - data.ndim) + data.shape).transpose(0, 2, 3, 1)
                c = QTensor(n + "/nhwc", tuple(data.shape), t.dtype, t.scale, t.zero_point, np.ascontiguousarray(data))
                self.tensors[c.name] = c
                n = c.name
            elif out_rank4 and n not in self.rank4:
                raise UnsupportedOpError(node.op_type, node.name or node.output[0], "mcu",
                                         "broadcasting a lower-rank activation onto a 4-D tensor")
            fixed.append(n)
        self.add_op(kind, node, fixed, [y], {"act": act})

    def op_Add(self, node, fused):
        self._binary(node, fused, "add")

    def op_Mul(self, node, fused):
        self._binary(node, fused, "mul")

    def _act_node(self, node, fused):
        x = self.q_of(node.input[0], node)
        y, _ = self.out_q(node)
        lo, hi = self._clip_bounds(node)
        yt = self.tensors[y]
        self.add_op("requant", node, [x], [y], {"act": clip_range(lo, hi, yt.s, yt.zp)})

    op_Relu = _act_node
    op_Clip = _act_node

    def _pool(self, node, fused, kind):
        a = _attrs(node)
        x = self.q_of(node.input[0], node)
        y, act = self.out_q(node, fused)
        k = a["kernel_shape"]
        pads = a.get("pads", [0, 0, 0, 0])
        if kind == "avgpool" and a.get("count_include_pad", 0) and any(pads):
            raise UnsupportedOpError(node.op_type, node.name or node.output[0], "mcu", "count_include_pad=1 with padding")
        self.add_op(kind, node, [x], [y], {"kernel": tuple(k), "stride": tuple(a.get("strides", [1, 1])),
                                           "pad": (pads[0], pads[1]), "act": act})

    def op_MaxPool(self, node, fused):
        self._pool(node, fused, "maxpool")

    def op_AveragePool(self, node, fused):
        self._pool(node, fused, "avgpool")

    def op_GlobalAveragePool(self, node, fused):
        x = self.q_of(node.input[0], node)
        y, _ = self.out_q(node)
        self.add_op("mean", node, [x], [y], {"axes": [1, 2]})

    def op_ReduceMean(self, node, fused):
        a = _attrs(node)
        x = self.q_of(node.input[0], node)
        y, _ = self.out_q(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1:
            axes = [int(v) for v in self.scalar(node.input[1])]
        rank = len(self.tensors[x].shape)
        axes = [int(v) % rank for v in axes]
        if x in self.rank4:
            axes = [NCHW_TO_NHWC_AXIS[v] for v in axes]
        self.add_op("mean", node, [x], [y], {"axes": sorted(axes)})

    def _reshape(self, node, fused):
        x = self.q_of(node.input[0], node)
        y, _ = self.out_q(node)
        xt, yt = self.tensors[x], self.tensors[y]
        src = x
        if x in self.rank4 and y not in self.rank4 and xt.shape[1] * xt.shape[2] > 1 and xt.shape[3] > 1:
            nchw = QTensor(self.fresh(x) + "/nchw", (xt.shape[0], xt.shape[3], xt.shape[1], xt.shape[2]), "int8",
                           xt.scale, xt.zero_point)
            self.tensors[nchw.name] = nchw
            self.add_op("transpose", node, [x], [nchw.name], {"perm": [0, 3, 1, 2]})
            src = nchw.name
        if y in self.rank4 and x not in self.rank4 and yt.shape[1] * yt.shape[2] > 1 and yt.shape[3] > 1:
            mid = QTensor(self.fresh(y) + "/nchw", (yt.shape[0], yt.shape[3], yt.shape[1], yt.shape[2]), "int8",
                          yt.scale, yt.zero_point)
            self.tensors[mid.name] = mid
            self.add_op("reshape", node, [src], [mid.name])
            self.add_op("transpose", node, [mid.name], [y], {"perm": [0, 2, 3, 1]})
            return
        if (xt.s, xt.zp) != (yt.s, yt.zp):
            mid = QTensor(self.fresh(y), yt.shape, "int8", xt.scale, xt.zero_point)
            self.tensors[mid.name] = mid
            self.add_op("reshape", node, [src], [mid.name])
            self.add_op("requant", node, [mid.name], [y], {"act": (-128, 127)})
            return
        self.add_op("reshape", node, [src], [y])

    op_Reshape = _reshape
    op_Flatten = _reshape
    op_Squeeze = _reshape
    op_Unsqueeze = _reshape
    op_Identity = _reshape

    def op_Softmax(self, node, fused):
        a = _attrs(node)
        x = self.q_of(node.input[0], node)
        y, _ = self.out_q(node)
        xt, yt = self.tensors[x], self.tensors[y]
        if int(a.get("axis", -1)) % len(xt.shape) != len(xt.shape) - 1 or x in self.rank4:
            raise UnsupportedOpError("Softmax", node.name or node.output[0], "mcu", "softmax over the last axis of a 2-D tensor")
        if abs(yt.s - 1 / 256) > 1e-9 or yt.zp != -128:
            mid = QTensor(self.fresh(y), yt.shape, "int8", np.asarray([1 / 256], np.float32), np.asarray([-128]))
            self.tensors[mid.name] = mid
            self.add_op("softmax", node, [x], [mid.name], {"beta": 1.0})
            self.add_op("requant", node, [mid.name], [y], {"act": (-128, 127)})
        else:
            self.add_op("softmax", node, [x], [y], {"beta": 1.0})

    def op_Concat(self, node, fused):
        a = _attrs(node)
        ins = [self.q_of(i, node) for i in node.input]
        y, _ = self.out_q(node)
        axis = int(a["axis"]) % len(self.tensors[y].shape)
        if y in self.rank4:
            axis = NCHW_TO_NHWC_AXIS[axis]
        self.add_op("concat", node, ins, [y], {"axis": axis})

    def op_Pad(self, node, fused):
        a = _attrs(node)
        mode = a.get("mode", b"constant")
        if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
            raise UnsupportedOpError("Pad", node.name or node.output[0], "mcu", "only constant padding")
        x = self.q_of(node.input[0], node)
        y, _ = self.out_q(node)
        yt = self.tensors[y]
        pads = [int(v) for v in (self.scalar(node.input[1]) if len(node.input) > 1 else a["pads"])]
        r = len(pads) // 2
        pairs = [(pads[i], pads[i + r]) for i in range(r)]
        if x in self.rank4:
            pairs = [pairs[0], pairs[2], pairs[3], pairs[1]]
        value = 0.0
        if len(node.input) > 2 and node.input[2]:
            cv = node.input[2]
            value = float(np.asarray(self.init[cv]).reshape(-1)[0]) if cv in self.init else None
            if value is None:
                q = self.tensors[self.q_of(cv, node)]
                value = float((int(q.data.reshape(-1)[0]) - q.zp) * q.s)
        qv = int(np.clip(np.rint(value / yt.s) + yt.zp, -128, 127))
        self.add_op("pad", node, [x], [y], {"pads": pairs, "value": qv})

    def _lut(self, node, fused):
        x = self.q_of(node.input[0], node)
        y, _ = self.out_q(node)
        self.add_op("lut", node, [x], [y], {"fn": "sigmoid" if node.op_type == "Sigmoid" else "tanh"})

    op_Sigmoid = _lut
    op_Tanh = _lut


def load_onnx(proto) -> QGraph:
    if proto is None:
        raise ModelLoadError("the mcu target needs an ONNX model or an int8 .tflite")
    return _Importer(proto).convert()
