"""Exact ONNX rewrites that spell out semantics some backends get wrong.

Each rewrite replaces a node by other standard ops that compute the same values (bit for
bit where the replacement does no arithmetic) and returns how many nodes it changed.
Targets pick the ones their converter needs; this module names no target.

* `pad_value_as_where`: ``Pad(x, pads, value)`` whose value is computed at run time (a
  graph input, a scalar from another op) -> ``Where(border_mask, value, Pad(x, pads))``;
  a converter that only reads constant pad values would otherwise pad with 0.
* `clip_bounds_as_minmax`: ``Clip(x, lo, hi)`` with run-time bounds -> ``Min(Max(x, lo), hi)``.
* `resize_nearest_as_gather`: ``Resize(mode=nearest)`` with static shapes -> a strided
  ``Slice`` (downsampling by an integer factor) or a ``Gather`` per axis with the exact source
  indices ONNX's coordinate transformation and rounding mode pick.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].HasField("t"):
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def _shapes(proto) -> dict[str, tuple[int, ...]]:
    """Static shapes of every tensor onnx shape inference can tell."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:  # noqa: BLE001 - a graph inference cannot type gets no shape-based rewrites
        inferred = proto
    out = {}
    g = inferred.graph
    for vi in (*g.input, *g.value_info, *g.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            out[vi.name] = tuple(int(d.dim_value) for d in dims)
    for i in g.initializer:
        out[i.name] = tuple(i.dims)
    return out


def _fresh(graph, base: str) -> str:
    used = {o for n in graph.node for o in n.output} | {i.name for i in graph.initializer} | {
        i.name for i in graph.input}
    name, k = base, 0
    while name in used:
        k += 1
        name = f"{base}_{k}"
    return name


def _replace(graph, node, new_nodes: list, inits: list) -> None:
    idx = list(graph.node).index(node)
    graph.node.remove(node)
    for j, n in enumerate(new_nodes):
        graph.node.insert(idx + j, n)
    graph.initializer.extend(inits)


def pad_value_as_where(proto, arithmetic: bool = False) -> int:
    """Run-time Pad values as ``Where`` over a constant border mask (constant pads, static shape).

    ``arithmetic``: ``Pad(x - value, pads) + value`` instead, for converters that lose a
    broadcast select's layout (onnx2tf); equal to rounding (|error| <= ulp(value)).
    """
    from onnx import helper, numpy_helper

    g = proto.graph
    consts, shapes, count = _constants(g), _shapes(proto), 0
    for node in [n for n in g.node if n.op_type == "Pad"]:
        mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
        if mode != "constant" or len(node.input) < 3 or not node.input[2] or node.input[2] in consts:
            continue
        if node.input[1] not in consts or node.input[0] not in shapes:
            continue
        if len(node.input) > 3 and node.input[3]:
            continue  # axes subset: rare, left alone
        pads = consts[node.input[1]].astype(np.int64).ravel()
        shape = shapes[node.input[0]]
        rank = len(shape)
        if pads.size != 2 * rank or (pads < 0).any():
            continue
        begin, end = pads[:rank], pads[rank:]
        out_shape = [s + b + e for s, b, e in zip(shape, begin, end)]
        mask_shape = [o if (b or e) else 1 for o, b, e in zip(out_shape, begin, end)]
        mask = np.zeros(mask_shape, bool)
        for ax in range(rank):
            if begin[ax] or end[ax]:
                idx = [slice(None)] * rank
                idx[ax] = slice(0, int(begin[ax]))
                mask[tuple(idx)] = True
                idx[ax] = slice(int(begin[ax]) + shape[ax], out_shape[ax])
                mask[tuple(idx)] = True
        base = node.name or node.output[0]
        mask_name, padded = _fresh(g, f"{base}_border"), _fresh(g, f"{base}_zero_padded")
        if arithmetic:
            shifted = _fresh(g, f"{base}_shifted")
            new = [helper.make_node("Sub", [node.input[0], node.input[2]], [shifted], name=f"{base}_shift"),
                   helper.make_node("Pad", [shifted, node.input[1]], [padded], name=f"{base}_zero", mode="constant"),
                   helper.make_node("Add", [padded, node.input[2]], [node.output[0]], name=base)]
            _replace(g, node, new, [])
            count += 1
            continue
        new = [helper.make_node("Pad", [node.input[0], node.input[1]], [padded], name=f"{base}_zero", mode="constant"),
               helper.make_node("Where", [mask_name, node.input[2], padded], [node.output[0]], name=base)]
        _replace(g, node, new, [numpy_helper.from_array(mask, mask_name)])
        count += 1
    return count


def clip_bounds_as_minmax(proto) -> int:
    """``Clip`` with a run-time min or max as ``Max``/``Min`` (same values, NaN aside)."""
    from onnx import helper

    g = proto.graph
    consts, count = _constants(g), 0
    for node in [n for n in g.node if n.op_type == "Clip"]:
        bounds = list(node.input[1:3]) + [""] * (3 - len(node.input))
        if all(not b or b in consts for b in bounds[:2]):
            continue
        base = node.name or node.output[0]
        cur, new = node.input[0], []
        for op, b in (("Max", bounds[0]), ("Min", bounds[1])):
            if b:
                out = _fresh(g, f"{base}_{op.lower()}")
                new.append(helper.make_node(op, [cur, b], [out], name=f"{base}_{op.lower()}"))
                cur = out
        if not new:
            new.append(helper.make_node("Identity", [cur], [node.output[0]], name=base))
        else:
            new[-1].output[0] = node.output[0]
        _replace(g, node, new, [])
        count += 1
    return count


def reduce_l2_as_sqrt_sum_square(proto) -> int:
    """``ReduceL2`` as ``Sqrt(ReduceSumSquare)`` (same axes, keepdims; the same function)."""
    from onnx import helper

    g = proto.graph
    count = 0
    for node in [n for n in g.node if n.op_type == "ReduceL2" and n.domain in ("", "ai.onnx")]:
        base = node.name or node.output[0]
        squares = _fresh(g, f"{base}_sum_square")
        reduce = helper.make_node("ReduceSumSquare", list(node.input), [squares], name=f"{base}_sum_square")
        reduce.attribute.extend(node.attribute)
        _replace(g, node, [reduce, helper.make_node("Sqrt", [squares], [node.output[0]], name=base)], [])
        count += 1
    return count


def nearest_indices(in_size: int, out_size: int, scale: float, ctm: str, nearest_mode: str) -> np.ndarray:
    """The source index of every output position of ONNX Resize(nearest) along one axis."""
    i = np.arange(out_size, dtype=np.float64)
    if ctm == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif ctm == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if out_size > 1 else np.zeros_like(i)
    elif ctm == "align_corners":
        x = i * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(i)
    elif ctm == "asymmetric":
        x = i / scale
    elif ctm == "half_pixel_symmetric":
        adj = out_size / (scale * in_size)
        x = (in_size / 2) * (1 - adj) + (i + 0.5) / scale - 0.5
    else:
        raise ValueError(ctm)
    if nearest_mode == "round_prefer_floor":
        idx = np.where(x - np.floor(x) == 0.5, np.floor(x), np.round(x))
    elif nearest_mode == "round_prefer_ceil":
        idx = np.where(x - np.floor(x) == 0.5, np.ceil(x), np.round(x))
    elif nearest_mode == "floor":
        idx = np.floor(x)
    elif nearest_mode == "ceil":
        idx = np.ceil(x)
    else:
        raise ValueError(nearest_mode)
    return np.clip(idx, 0, in_size - 1).astype(np.int64)


def _resize_plan(node, consts, shapes) -> list[tuple[int, np.ndarray]] | None:
    """``[(axis, source indices)]`` of a nearest Resize whose result is a pure index selection."""
    attrs: dict[str, Any] = {a.name: a for a in node.attribute}
    get = lambda k, d: attrs[k].s.decode() if k in attrs else d  # noqa: E731
    if get("mode", "nearest") != "nearest" or node.input[0] not in shapes or node.output[0] not in shapes:
        return None
    if "antialias" in attrs and attrs["antialias"].i or "axes" in attrs:
        return None
    ctm, nmode = get("coordinate_transformation_mode", "half_pixel"), get("nearest_mode", "round_prefer_floor")
    if ctm == "tf_crop_and_resize":
        return None
    in_shape, out_shape = shapes[node.input[0]], shapes[node.output[0]]
    scales = None
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in consts:
            return None
        scales = consts[node.input[2]].astype(np.float64).ravel()
    if scales is None or scales.size == 0:
        scales = np.array([o / i for o, i in zip(out_shape, in_shape)], np.float64)
    plan = []
    for ax, (i, o) in enumerate(zip(in_shape, out_shape)):
        idx = nearest_indices(i, o, float(scales[ax]), ctm, nmode)
        if not np.array_equal(idx, np.arange(o)) or i != o:
            plan.append((ax, idx))
    return plan


def resize_nearest_as_gather(proto, upsample_too: bool = False) -> int:
    """Nearest ``Resize`` with static shapes as strided ``Slice`` / constant-index ``Gather``.

    Integer upsampling whose indices are ``i // f`` is left as Resize unless
    ``upsample_too``: converters map it to their nearest-neighbour kernel correctly.
    """
    from onnx import helper, numpy_helper

    g = proto.graph
    consts, shapes, count = _constants(g), _shapes(proto), 0
    for node in [n for n in g.node if n.op_type == "Resize"]:
        plan = _resize_plan(node, consts, shapes)
        if not plan:
            continue
        if not upsample_too and all(_is_repeat(idx, shapes[node.input[0]][ax]) for ax, idx in plan):
            continue
        base = node.name or node.output[0]
        cur, new, inits = node.input[0], [], []
        for k, (ax, idx) in enumerate(plan):
            out = node.output[0] if k == len(plan) - 1 else _fresh(g, f"{base}_ax{ax}")
            step = _stride(idx)
            if step is not None:
                names = [_fresh(g, f"{base}_ax{ax}_{w}") for w in ("starts", "ends", "axes", "steps")]
                vals = [idx[0], idx[-1] + 1, ax, step]
                inits += [numpy_helper.from_array(np.array([v], np.int64), nm) for nm, v in zip(names, vals)]
                new.append(helper.make_node("Slice", [cur, *names], [out], name=f"{base}_slice{ax}"))
            else:
                name = _fresh(g, f"{base}_ax{ax}_indices")
                inits.append(numpy_helper.from_array(idx, name))
                new.append(helper.make_node("Gather", [cur, name], [out], name=f"{base}_gather{ax}", axis=ax))
            cur = out
        _replace(g, node, new, inits)
        count += 1
    return count


def _stride(idx: np.ndarray) -> int | None:
    if idx.size < 2:
        return 1 if idx.size == 1 else None
    d = np.diff(idx)
    return int(d[0]) if d[0] >= 1 and (d == d[0]).all() else None


def _is_repeat(idx: np.ndarray, in_size: int) -> bool:
    f = idx.size / in_size
    return f >= 1 and math.isclose(f, round(f)) and np.array_equal(idx, np.arange(idx.size) // int(round(f)))


def maxpool_pads_as_zero_pad(proto) -> int:
    """A padded ``MaxPool`` of a ``Relu`` (or ``Clip`` from >= 0) as ``Pad`` with zeros, then an unpadded ``MaxPool``.

    Every pooling window holds a real value (pads < kernel) and they are all >= 0, so zeros in
    place of ONNX's implicit -inf padding leave every max unchanged. Converters that spell the
    padding out write the lowest float instead, which no int8/int16 range can hold (onnx2tf:
    a PADV2 of -3.4e38 before ResNet's and ShuffleNet's stem pool).
    """
    from onnx import helper, numpy_helper

    g = proto.graph
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 11:  # Pad takes its pads as an input from opset 11
        return 0
    consts = _constants(g)
    producer = {o: n for n in g.node for o in n.output}
    count = 0
    for node in [n for n in g.node if n.op_type == "MaxPool" and len(n.output) == 1]:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        kernel, pads = list(attrs.get("kernel_shape", [])), list(attrs.get("pads", []))
        plain = attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET") and not attrs.get("ceil_mode", 0) and \
            all(d == 1 for d in attrs.get("dilations", [1]))
        if not plain or not any(pads) or len(pads) != 2 * len(kernel) or \
                any(p >= k for p, k in zip(pads, kernel * 2)) or not _non_negative(producer.get(node.input[0]), consts):
            continue
        base = node.name or node.output[0]
        n_sp = len(kernel)
        pads_name, padded = _fresh(g, f"{base}_zero_pads"), _fresh(g, f"{base}_zero_padded")
        pad = helper.make_node("Pad", [node.input[0], pads_name], [padded], name=f"{base}_zero_pad", mode="constant")
        pool = helper.make_node("MaxPool", [padded], list(node.output), name=node.name)
        pool.attribute.extend(a for a in node.attribute if a.name != "pads")
        full = np.array([0, 0, *pads[:n_sp], 0, 0, *pads[n_sp:]], np.int64)
        _replace(g, node, [pad, pool], [numpy_helper.from_array(full, pads_name)])
        count += 1
    return count


def _non_negative(node, consts: dict[str, np.ndarray]) -> bool:
    if node is None:
        return False
    if node.op_type == "Relu":
        return True
    if node.op_type == "Clip" and len(node.input) > 1 and node.input[1] in consts:
        return float(np.asarray(consts[node.input[1]]).max()) >= 0.0
    return False


def hardswish_pattern_as_op(proto) -> int:
    """``x * Clip(x + 3, 0, 6) / 6`` (paddle2onnx's HardSwish; or ``* (1/6)``) as one ``HardSwish`` (opset 14+).

    The same function; a converter that lowers op by op otherwise keeps four tensors where
    one activation was (each requantized in an int8 model: PicoDet on TFLite). Models below
    opset 14 (where HardSwish appeared) are moved to 14; no op changes meaning from 13 to 14
    for inference.
    """
    from onnx import helper

    g = proto.graph
    consts = _constants(g)
    users: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    producer = {o: n for n in g.node for o in n.output}
    graph_out = {o.name for o in g.output}

    def scalar(name: str, want: float) -> bool:
        v = consts.get(name)
        return v is not None and v.size == 1 and abs(float(v.reshape(())) - want) <= 1e-6 * max(1.0, abs(want))

    def sole(node) -> bool:  # its output feeds only the next node of the pattern
        return len(users.get(node.output[0], [])) == 1 and node.output[0] not in graph_out

    def other(node, name: str) -> str:
        return node.input[1] if node.input[0] == name else node.input[0]

    matches = []
    for last in g.node:
        if last.op_type not in ("Div", "Mul") or len(last.input) != 2:
            continue
        scale = last.input[1]
        if not (scalar(scale, 6.0) if last.op_type == "Div" else scalar(scale, 1.0 / 6.0)):
            continue
        mul = producer.get(last.input[0])
        if mul is None or mul.op_type != "Mul" or not sole(mul):
            continue
        for clip_in in mul.input:
            clip = producer.get(clip_in)
            if clip is None or clip.op_type != "Clip" or not sole(clip) or len(clip.input) < 3 or \
                    not scalar(clip.input[1], 0.0) or not scalar(clip.input[2], 6.0):
                continue
            add, x = producer.get(clip.input[0]), other(mul, clip_in)
            if add is not None and add.op_type == "Add" and sole(add) and x in add.input and \
                    scalar(other(add, x), 3.0):
                matches.append((last, mul, clip, add, x))
                break
    for last, mul, clip, add, x in matches:
        for node in (add, clip, mul):
            g.node.remove(node)
        _replace(g, last, [helper.make_node("HardSwish", [x], [last.output[0]], name=last.name or last.output[0])], [])
    if matches:
        for o in proto.opset_import:
            if o.domain in ("", "ai.onnx") and o.version < 14:
                o.version = 14
    return len(matches)
