"""ONNX graph passes before onnx2tf: static shapes, onnxslim, Erf-GELU -> ``Gelu``, constant Pad/Clip/Resize rewrites."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec._deps import version_of
from edgec.compiler.model import ModelHandle
from edgec.errors import ConfigError


def fuse_erf_gelu(proto) -> int:
    """Replace ``x * 0.5 * (1 + erf(x / sqrt2))`` (every Mul association) by one ``Gelu`` node, in place.

    onnx2tf maps ``Gelu`` to ``tf.nn.gelu``, which TFLite lowers to its GELU builtin (float
    and int8 kernels). An Erf left unfused becomes onnx2tf's pseudo-Erf, whose
    ``1 / (1 + p|x|)`` is an int8 DIV: on a wide MLP activation its divisor's step exceeds 1,
    the divisor quantizes to the zero point and LiteRT refuses the model (div.cc). Returns
    the number of patterns fused.
    """
    from onnx import helper

    g = proto.graph
    consts = _constants(g)
    consumers = _consumers(g)
    graph_outs = {o.name for o in g.output}

    def scalar(name: str, val: float) -> bool:
        c = consts.get(name)
        return c is not None and c.size == 1 and abs(float(c.reshape(-1)[0]) - val) < 1e-4

    def other(n, name: str) -> str:
        return n.input[1] if n.input[0] == name else n.input[0]

    def only(name: str):
        c = consumers.get(name, [])
        return c[0] if len(c) == 1 and name not in graph_outs else None

    remove: set[int] = set()
    replace: dict[int, Any] = {}
    for div in g.node:
        if div.op_type != "Div" or len(div.input) != 2 or not scalar(div.input[1], 2 ** 0.5):
            continue
        x = div.input[0]
        erf = only(div.output[0])
        if erf is None or erf.op_type != "Erf":
            continue
        add = only(erf.output[0])
        if add is None or add.op_type != "Add" or not scalar(other(add, erf.output[0]), 1.0):
            continue
        m1 = only(add.output[0])
        if m1 is None or m1.op_type != "Mul":
            continue
        m1_other = other(m1, add.output[0])
        if m1_other == x or scalar(m1_other, 0.5):
            # (x * (1 + erf)) * 0.5, or x * ((1 + erf) * 0.5) (torch's dynamo exporter)
            m2 = only(m1.output[0])
            if m2 is None or m2.op_type != "Mul":
                continue
            m2_other = other(m2, m1.output[0])
            if not (scalar(m2_other, 0.5) if m1_other == x else m2_other == x):
                continue
            chain, out = [div, erf, add, m1, m2], m2.output[0]
        else:  # (x * 0.5) * (1 + erf)
            half = next((n for n in g.node if m1_other in n.output), None)
            if (half is None or half.op_type != "Mul" or x not in half.input
                    or not scalar(other(half, x), 0.5) or only(half.output[0]) is not m1):
                continue
            chain, out = [div, erf, add, half, m1], m1.output[0]
        remove.update(id(n) for n in chain)
        replace[id(div)] = helper.make_node("Gelu", [x], [out], name=(div.name or x) + "_gelu")
    if not replace:
        return 0
    nodes = []
    for n in g.node:
        if id(n) in replace:
            nodes.append(replace[id(n)])
        elif id(n) not in remove:
            nodes.append(n)
    # Keep topological order: the Gelu sits where its Div was, which follows x.
    del g.node[:]
    g.node.extend(nodes)
    return len(replace)


# A masked score sits this far under its row's lowest score: its Softmax weight is at most
# exp(-20) = 2e-9 of an unmasked one's, under float32's resolution, so the rewrite is exact.
MASK_MARGIN = 20.0
# A fill at or below this masks (finfo.min, -inf, older exports' -1e4): its Softmax weight is 0 in float32.
_MASK_FILL_AT_MOST = -1e3


def attention_mask_as_row_min(proto) -> int:
    """Rewrite ``Softmax(scores + Where(mask, 0, finfo.min))`` as ``Softmax(Where(mask, scores, min(scores) - 20))``.

    Hugging Face exports fill masked attention positions with the lowest float. Calibration
    puts -3.4e38 into the range of the mask and of ``scores + mask``, so an int8 or int16
    activation scale of 1e36 rounds every real score to zero (MiniLM: cosine 0.165).
    Filling with the row's lowest score minus `MASK_MARGIN` gives Softmax the same result
    (masked weights under float32's resolution) while the tensor's range stays within the
    scores' own range plus 20. Each ``Add`` whose only consumer is a last-axis ``Softmax``
    is rewritten; returns how many.
    """
    from onnx import helper, numpy_helper

    g = proto.graph
    consts = _constants(g)
    consumers = _consumers(g)
    graph_outs = {o.name for o in g.output}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)

    def scalar(name: str) -> float | None:
        c = consts.get(name)
        return float(c.reshape(-1)[0]) if c is not None and c.size == 1 else None

    fills = {}  # Where output -> (cond, masked value goes to the else branch)
    for n in g.node:
        if n.op_type != "Where" or len(n.input) != 3:
            continue
        a, b = scalar(n.input[1]), scalar(n.input[2])
        if a == 0.0 and b is not None and b <= _MASK_FILL_AT_MOST:
            fills[n.output[0]] = (n.input[0], True)
        elif b == 0.0 and a is not None and a <= _MASK_FILL_AT_MOST:
            fills[n.output[0]] = (n.input[0], False)
    replace: dict[int, list] = {}
    for n in g.node:
        if n.op_type != "Add" or len(n.input) != 2 or n.output[0] in graph_outs:
            continue
        mask = next((i for i in n.input if i in fills), None)
        users = consumers.get(n.output[0], [])
        if mask is None or len(users) != 1 or users[0].op_type != "Softmax":
            continue
        axis = next((a.i for a in users[0].attribute if a.name == "axis"), -1)
        if axis != -1:
            continue
        scores = n.input[1] if n.input[0] == mask else n.input[0]
        cond, keep_then = fills[mask]
        base = f"{n.name or n.output[0]}_mask"
        low, fill, margin, axes = f"{base}_row_min", f"{base}_fill", f"{base}_margin", f"{base}_axes"
        g.initializer.append(numpy_helper.from_array(np.array(MASK_MARGIN, np.float32), margin))
        if opset >= 18:
            g.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), axes))
            reduce = helper.make_node("ReduceMin", [scores, axes], [low], name=low, keepdims=1)
        else:
            reduce = helper.make_node("ReduceMin", [scores], [low], name=low, axes=[-1], keepdims=1)
        sub = helper.make_node("Sub", [low, margin], [fill], name=fill)
        branches = [scores, fill] if keep_then else [fill, scores]
        where = helper.make_node("Where", [cond, *branches], [n.output[0]], name=base)
        replace[id(n)] = [reduce, sub, where]
    if not replace:
        return 0
    nodes = []
    for n in g.node:
        nodes.extend(replace.get(id(n), [n]))
    used = {i for n in nodes for i in n.input} | graph_outs
    nodes = [n for n in nodes if not (n.output[0] in fills and n.output[0] not in used)]
    del g.node[:]
    g.node.extend(nodes)
    return len(replace)


def _consumers(g) -> dict[str, list]:
    """The nodes reading each tensor, in graph order."""
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return consumers


def _constants(g) -> dict[str, Any]:
    """Initializers and ``Constant`` node values by name."""
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].HasField("t"):
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return consts


def prepare_onnx(model: ModelHandle, gelu: bool = True) -> tuple[Any, list[dict[str, Any]]]:
    """Static-shape, slimmed copy of the model's proto (GELU fused unless ``gelu=False``), and the passes run."""
    import onnx

    for s in model.inputs:
        if not s.is_static:
            raise ConfigError(
                f"the arm target needs static input shapes; input '{s.name}' is {list(s.shape)} "
                "(give --input-shape)")
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    passes: list[dict[str, Any]] = []
    try:
        import onnxslim

        slimmed = onnxslim.slim(proto)
        if slimmed is not None:
            proto = slimmed
            passes.append({"name": "onnxslim", "config": {"version": version_of("onnxslim")}})
    except Exception as exc:  # slimming is an optimization; the unslimmed graph still converts
        passes.append({"name": "onnxslim", "config": {"skipped": type(exc).__name__}})
    n = fuse_erf_gelu(proto) if gelu else 0
    if n:
        passes.append({"name": "fuse-erf-gelu", "config": {"fused": n}})
    n = attention_mask_as_row_min(proto)
    if n:
        passes.append({"name": "attention-mask-as-row-min", "config": {"rewritten": n, "margin": MASK_MARGIN}})
    from edgec.compiler import rewrites

    # onnx2tf reads Pad values and Clip bounds only when constant, its nearest Resize picks
    # other source pixels than ONNX's coordinate modes when downsampling, and it hands
    # ReduceL2's axes to tf.norm as a list, which tf.norm refuses (sentence-embedding L2 norms).
    # It pads a MaxPool with the lowest float, which int8/int16 ranges cannot hold (zeros can, after a Relu),
    # and lowers paddle2onnx's decomposed HardSwish op by op (four int8 tensors instead of one HARD_SWISH).
    for rewrite in (rewrites.pad_value_as_where, rewrites.clip_bounds_as_minmax, rewrites.resize_nearest_as_gather,
                    rewrites.reduce_l2_as_sqrt_sum_square, rewrites.maxpool_pads_as_zero_pad,
                    rewrites.hardswish_pattern_as_op):
        n = rewrite(proto, arithmetic=True) if rewrite is rewrites.pad_value_as_where else rewrite(proto)
        if n:
            passes.append({"name": rewrite.__name__.replace("_", "-"), "config": {"rewritten": n}})
    return proto, passes
