"""ONNX graph passes before onnx2tf: static shapes, onnxslim, Erf-GELU -> ``Gelu``, constant Pad/Clip/Resize rewrites."""

from __future__ import annotations

from typing import Any

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
    from onnx import helper, numpy_helper

    g = proto.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].HasField("t"):
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
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


def prepare_onnx(model: ModelHandle) -> tuple[Any, list[dict[str, Any]]]:
    """Static-shape, slimmed, GELU-fused copy of the model's proto, and the passes run."""
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
    n = fuse_erf_gelu(proto)
    if n:
        passes.append({"name": "fuse-erf-gelu", "config": {"fused": n}})
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
