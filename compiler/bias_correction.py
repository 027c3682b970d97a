"""Empirical bias correction of an int8 Q/DQ model (Nagel et al., 2019, data-based variant).

Quantized weights shift the mean of a layer's output: ``E[W_q x] != E[W x]``. For each
Conv/Gemm with a bias, in graph order, the per-output-channel mean of
``y_quantized - y_float`` over the calibration samples is subtracted from the bias (the int32
bias keeps its scale ``s_in * s_w``). Layers are corrected one after another, each measured
with every earlier correction in place, so the shifts do not compound.

That costs one model run per layer. The accuracy gate re-quantizes the model once per
candidate fallback, so it measures the shifts once (on the first variant that asks for them)
and applies the same float shifts to every later variant (``frozen``), re-encoded in each
variant's int32 bias scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgec.compiler.model import ModelHandle

MAX_SAMPLES = 32
LAYER_OPS = ("Conv", "Gemm", "ConvTranspose")


def zero_bias(node, inits: dict) -> bool:
    """Whether the float layer ``node``'s bias is an initializer of zeros (``inits``: name -> TensorProto)."""
    from onnx import numpy_helper

    b = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    return b is not None and not numpy_helper.to_array(b).any()


def _bias_layers(qproto, fproto, zero_biases: bool = True) -> list[tuple[str, str, str]]:
    """``(node name, quant output, float output)`` of biased layers present in both models.

    ``zero_biases`` False leaves out the layers whose float bias is all zeros (`QuantScheme.correct_zero_biases`).
    """
    fnodes = {n.name: n for n in fproto.graph.node if n.name}
    finits = {t.name: t for t in fproto.graph.initializer}
    out = []
    for n in qproto.graph.node:
        if n.op_type in LAYER_OPS and len(n.input) > 2 and n.input[2] and n.name in fnodes:
            if zero_biases or not zero_bias(fnodes[n.name], finits):
                out.append((n.name, n.output[0], fnodes[n.name].output[0]))
    return out


def _channel_mean(values: list[np.ndarray], op: str) -> np.ndarray:
    axis = 1 if op in ("Conv", "ConvTranspose") else -1
    stacked = [np.moveaxis(np.asarray(v, np.float64), axis, -1).reshape(-1, v.shape[axis]) for v in values]
    return np.concatenate(stacked, 0).mean(0)


def correct_bias(float_model: "ModelHandle", quant: "ModelHandle", samples: list[dict[str, np.ndarray]],
                 float_cache: dict | None = None, frozen: dict[str, np.ndarray] | None = None,
                 skip: tuple[str, ...] = (), shifts_out: dict[str, np.ndarray] | None = None,
                 zero_biases: bool = True) -> tuple["ModelHandle", dict[str, Any]]:
    """The Q/DQ model with corrected biases, and a summary (layers, mean |shift| removed).

    Args:
        float_model: The float reference.
        quant: The Q/DQ model to correct.
        samples: Calibration feeds.
        float_cache: A dict kept by the caller across calls with the same float model and
            samples (the accuracy gate's variants), so the float model's layer outputs are computed once.
        frozen: Per-layer float shifts measured by an earlier call (``shifts_out``): applied as
            they are, without running anything.
        skip: Layers the ``frozen`` shifts are not applied to (kept in float since they were
            measured: their weights have no rounding left to correct).
        shifts_out: Filled with the shifts this call measures and keeps.
        zero_biases: Also correct layers whose float bias is all zeros (`QuantScheme.correct_zero_biases`).
    """
    import onnx

    from edgec.runtimes.onnx_graph import make_session, run, with_outputs

    proto = onnx.ModelProto()
    proto.CopyFrom(quant.proto)
    g = proto.graph
    samples = list(samples[:MAX_SAMPLES])
    layers = _bias_layers(proto, float_model.proto, zero_biases)
    if not layers or not samples:
        return quant, {"layers": 0}
    if frozen is not None:
        return _apply_frozen(quant, proto, [la for la in layers if la[0] not in skip], frozen)
    key = tuple(f for _, _, f in layers)
    if float_cache is not None and key in float_cache:
        f_out, f_final = float_cache[key]
    else:
        f_aug = with_outputs(float_model.proto, list(key))  # float outputs of every layer
        f_out = run(f_aug, samples, outputs=list(key), session=make_session(f_aug, optimize=False))
        f_final = run(float_model.proto, samples)
        if float_cache is not None:
            float_cache[key] = f_out, f_final
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    nodes = {n.name: n for n in g.node}
    outputs = [o.name for o in g.output]

    def run_q(extra: list[str]) -> list[dict[str, np.ndarray]]:
        aug = with_outputs(proto, extra)
        return run(aug, samples, outputs=[*outputs, *extra], session=make_session(aug, optimize=False))

    shifts, skipped = {}, []
    q_out = run_q([layers[0][1]])
    err = _error(q_out, f_final, outputs)
    for i, (name, q_name, f_name) in enumerate(layers):
        node = nodes[name]
        if q_name not in q_out[0]:
            q_out = run_q([q_name])
        delta = _channel_mean([o[q_name] for o in q_out], node.op_type) - \
            _channel_mean([o[f_name] for o in f_out], node.op_type)
        saved = _snapshot(node, inits, producer)
        if saved is None or not _apply(node, delta, inits, producer):
            continue
        nxt = [layers[i + 1][1]] if i + 1 < len(layers) else []
        after = run_q(nxt)
        new_err = _error(after, f_final, outputs)
        if new_err > err:  # the layer's error is not a bias shift (information lost): leave it
            _restore(saved, inits)
            skipped.append(name)
            after = run_q(nxt) if nxt else after
        else:
            shifts[name] = float(np.abs(delta).mean())
            err = new_err
            if shifts_out is not None:
                shifts_out[name] = delta
        q_out = after
    return quant.with_proto(proto), {"layers": len(shifts), "mean_abs_shift": shifts, "skipped": skipped}


def _apply_frozen(quant: "ModelHandle", proto, layers, frozen: dict[str, np.ndarray]):
    """``proto`` (a copy of ``quant``'s) with the ``frozen`` shifts subtracted from its layers' biases."""
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    nodes = {n.name: n for n in g.node}
    shifts = {name: float(np.abs(frozen[name]).mean()) for name, _, _ in layers
              if name in frozen and _apply(nodes[name], frozen[name], inits, producer)}
    return quant.with_proto(proto), {"layers": len(shifts), "mean_abs_shift": shifts, "frozen": True}


def _error(outs, refs, names) -> float:
    num = den = 0.0
    for o, r in zip(outs, refs):
        for n in names:
            d = np.asarray(o[n], np.float64) - np.asarray(r[n], np.float64)
            num += float((d * d).sum())
            den += float((np.asarray(r[n], np.float64) ** 2).sum())
    return num / max(den, 1e-30)


def _snapshot(node, inits, producer):
    """A copy of the bias initializer (float, or the int32 of its DequantizeLinear)."""
    import onnx

    b = node.input[2]
    name = b if b in inits else (producer[b].input[0] if b in producer and producer[b].input[0] in inits else None)
    if name is None:
        return None
    t = onnx.TensorProto()
    t.CopyFrom(inits[name])
    return t


def _restore(saved, inits) -> None:
    inits[saved.name].CopyFrom(saved)


def _apply(node, delta: np.ndarray, inits, producer) -> bool:
    """Subtract ``delta`` from the layer's bias (int32 + DequantizeLinear, or float)."""
    from onnx import numpy_helper

    b = node.input[2]
    if b in inits:  # float bias
        t = inits[b]
        v = numpy_helper.to_array(t).astype(np.float32)
        if v.shape != delta.shape:
            return False
        t.CopyFrom(numpy_helper.from_array((v - delta).astype(np.float32), t.name))
        return True
    dq = producer.get(b)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or dq.input[1] not in inits:
        return False
    qt, st = inits[dq.input[0]], inits[dq.input[1]]
    q = numpy_helper.to_array(qt)
    scale = np.broadcast_to(numpy_helper.to_array(st).astype(np.float64), q.shape)
    if q.dtype != np.int32 or q.shape != delta.shape:
        return False
    new = np.clip(np.round((q * scale - delta) / scale), -(2**31) + 1, 2**31 - 1).astype(np.int32)
    qt.CopyFrom(numpy_helper.from_array(new, qt.name))
    return True
