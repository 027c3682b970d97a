"""Structured channel pruning of a plain ONNX graph (``--prune channels:R`` on an ``.onnx``).

Dependency groups come from the graph itself. Every tensor with a channel axis (axis 1 of
NCHW activations, or the features of a flattened one) carries a *layout*: the channel
groups ("spaces") it is made of, in order, and how many features each channel spans
(``H*W`` after a Flatten of an unpooled map). Walking the graph in order:

* a Conv (``group == 1``) or a Conv after a Concat starts a new space at its output and
  consumes its input's layout (its weight's axis 1 is sliced);
* a depthwise Conv (``group == C``), BatchNormalization, activations, pooling and
  elementwise ops with per-channel or scalar constants keep the layout (their per-channel
  weights are sliced);
* an Add/Mul/... of two channel tensors (a residual, a squeeze-excitation scale) ties
  their spaces into one group;
* Concat on axis 1 joins layouts; Flatten/Reshape to ``[N, features]`` keeps it with a
  spatial factor; a Gemm/MatMul with a constant weight consumes it (rows/columns sliced);
* anything else (graph outputs, Transpose, Slice, Softmax over channels ...) pins the
  spaces it touches: they are not pruned.

Each free group keeps its ``(1 - R)`` most important channels (sum over its producers of
the normalized L2 norm of their filters), rounded to ``round`` when given.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgec.compiler.prune.spec import PruneSpec
from edgec.errors import ConfigError

KEEP_LAYOUT = {"Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "LeakyRelu", "PRelu", "Elu", "Selu",
               "Identity", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Cast",
               "BatchNormalization", "Softplus", "Mish", "Gelu", "Erf", "Neg", "Abs", "Exp", "Sqrt", "Reciprocal",
               "Pad", "Resize", "Upsample", "Floor", "Round"}
BINARY = {"Add", "Mul", "Sub", "Div", "Max", "Min", "Pow"}


@dataclass
class Layout:
    """Channel spaces of a tensor in order, each ``(space, channels)``, and features per channel."""

    segments: list[tuple[int, int]]
    per_channel: int = 1


@dataclass
class _Group:
    """Union-find over spaces; what to slice once the kept channels are known."""

    parent: dict[int, int] = field(default_factory=dict)
    size: dict[int, int] = field(default_factory=dict)
    pinned: set[int] = field(default_factory=set)

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def prune_channels_onnx(proto: Any, spec: PruneSpec, samples: list[dict[str, np.ndarray]] | None = None
                        ) -> tuple[Any, dict[str, Any]]:
    """A copy of ``proto`` with ``spec.ratio`` of the channels of every free group removed.

    ``importance=activation`` ranks channels by their mean absolute output on ``samples``
    (the calibration data) instead of filter norms.

    Raises:
        ConfigError: No prunable group, or a pruned graph that no longer runs with the
            original output shapes.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    shapes = _shapes(model)
    groups = _Group()
    layouts: dict[str, Layout] = {}
    producers: dict[int, list[tuple[str, str]]] = {}  # space -> [(node, weight name)]
    # (initializer name, axis, layout, role): what to slice per use.
    slices: list[tuple[str, int, Layout, str]] = []
    depthwise: list[tuple[int, Layout]] = []  # (node index, layout)
    rewrites: dict[str, np.ndarray] = {}
    consumers: list[tuple[int, Layout]] = []  # regular convs whose input channels may shrink
    mask_points: list[tuple[int, Layout]] = []  # every node whose input 0 loses channels (convs, Gemm/MatMul)

    def new_space(channels: int) -> int:
        s = len(groups.parent)
        groups.parent[s], groups.size[s] = s, channels
        return s

    def pin(name: str) -> None:
        if name in layouts:
            for s, _ in layouts[name].segments:
                groups.pinned.add(s)

    for node_index, node in enumerate(g.node):
        op, ins = node.op_type, [x for x in node.input]
        tracked = [x for x in ins if x in layouts]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "Conv" and len(ins) > 1 and ins[1] in inits:
            w = inits[ins[1]]
            group = int(attrs.get("group", 1))
            lay = layouts.get(ins[0])
            if group > 1 and group == w.shape[0] and w.shape[1] == 1 and lay is not None \
                    and _channels(lay) == group and lay.per_channel == 1:
                layouts[node.output[0]] = lay  # depthwise: channels pass through
                depthwise.append((node_index, lay))
                slices.append((ins[1], 0, lay, "depthwise"))
                if len(ins) > 2 and ins[2] in inits:
                    slices.append((ins[2], 0, lay, "bias"))
                continue
            if group != 1:
                pin(ins[0])
                continue
            if lay is not None:
                slices.append((ins[1], 1, lay, "consumer"))
                consumers.append((node_index, lay))
                mask_points.append((node_index, lay))
            s = new_space(w.shape[0])
            producers.setdefault(s, []).append((node.name or node.output[0], ins[1]))
            out = Layout([(s, w.shape[0])])
            slices.append((ins[1], 0, out, "producer"))
            if len(ins) > 2 and ins[2] in inits:
                slices.append((ins[2], 0, out, "bias"))
            layouts[node.output[0]] = out
            continue
        if not tracked:
            continue
        if op in KEEP_LAYOUT or (op in BINARY and len(tracked) == 1):
            lay = layouts[tracked[0]]
            ok = lay.per_channel == 1 or op in ("Relu", "Clip", "HardSwish", "Identity", "Dropout", "Cast")
            # Constant operands that carry channels: BN statistics, PRelu slopes, per-channel
            # scales/offsets. Other ops' constants (Clip bounds, Pad pads, Resize scales) do not.
            const_ops = op in BINARY or op in ("BatchNormalization", "PRelu")
            for x in ins:
                if x in layouts or not x or not const_ops:
                    continue
                axis = _per_channel_axis(inits[x], _channels(lay), _rank(shapes, node.output[0]),
                                         op == "BatchNormalization") if x in inits else None
                if axis is None:
                    ok = False  # a non-constant or oddly broadcast operand we cannot see through
                elif axis >= 0:
                    slices.append((x, axis, lay, "constant"))
            if op == "Pad" and len(ins) > 1 and (ins[1] not in inits or np.any(inits[ins[1]].reshape(2, -1)[:, 1])):
                ok = False  # pads along channels (or unknown pads)
            if op in ("Resize", "Upsample") and len(ins) > 3 and ins[3]:
                ok = False  # explicit sizes name the channel count
            if not ok:
                pin(tracked[0])
                continue
            layouts[node.output[0]] = lay
            continue
        if op in BINARY and len(tracked) == 2:
            a, b = layouts[ins[0]], layouts[ins[1]]
            if len(a.segments) == 1 and len(b.segments) == 1 and a.per_channel == b.per_channel == 1 \
                    and a.segments[0][1] == b.segments[0][1]:
                groups.union(a.segments[0][0], b.segments[0][0])
                layouts[node.output[0]] = a
            elif [c for _, c in a.segments] == [c for _, c in b.segments] and a.per_channel == b.per_channel:
                for (sa, _), (sb, _) in zip(a.segments, b.segments):
                    groups.union(sa, sb)
                layouts[node.output[0]] = a
            else:
                pin(ins[0])
                pin(ins[1])
            continue
        if op == "Concat" and _rank(shapes, ins[0]) > 1 and int(attrs.get("axis", 0)) % _rank(shapes, ins[0]) == 1 \
                and all(x in layouts for x in ins) and len({layouts[x].per_channel for x in ins}) == 1:
            layouts[node.output[0]] = Layout([seg for x in ins for seg in layouts[x].segments],
                                             layouts[ins[0]].per_channel)
            continue
        if op in ("Flatten", "Reshape") and _flattens(node, attrs, shapes, inits):
            src = shapes.get(ins[0])
            hw = int(np.prod(src[2:])) if src and len(src) > 2 else 1
            lay = layouts[ins[0]]
            layouts[node.output[0]] = Layout(lay.segments, lay.per_channel * hw)
            if op == "Reshape":  # the target shape names the feature count: let it follow
                rewrites[ins[1]] = np.array([shapes[node.output[0]][0], -1], dtype=inits[ins[1]].dtype)
            continue
        if op in ("Gemm", "MatMul") and ins[0] in layouts and len(ins) > 1 and ins[1] in inits \
                and _rank(shapes, ins[0]) == 2:
            trans_b = op == "Gemm" and int(attrs.get("transB", 0))
            slices.append((ins[1], 1 if trans_b else 0, layouts[ins[0]], "features"))
            mask_points.append((node_index, layouts[ins[0]]))
            continue
        for x in tracked:
            pin(x)
    for out in g.output:
        pin(out.name)
    out_layouts = {i: layouts[n.output[0]] for i, n in enumerate(g.node) if n.op_type == "Conv" and n.output[0] in layouts}
    activity = _activity(model, producers, samples) if spec.importance == "activation" and samples else None
    free = _free_groups(model, groups, producers, inits, activity)
    if not any(_kept_count(channels, spec) < channels for _, _, channels, _ in free):
        raise ConfigError(f"--prune {spec.text}: no channel group of this ONNX graph can be pruned (every conv output "
                          "reaches a graph output or an op that fixes its channel count)")
    allocation: dict[str, Any] = {"method": "uniform"}
    counts = {root: _kept_count(channels, spec) for root, _, channels, _ in free}
    if spec.allocation == "sensitivity" and samples:
        from edgec.compiler.prune.onnx_sensitivity import allocate

        counts, allocation = allocate(model, spec, free, groups, slices, mask_points, inits, samples,
                                      lambda channels, ratio: _kept_count(channels, replace(spec, ratio=ratio)))
    keep = {}
    for root, members, channels, order in free:
        if counts[root] < channels:
            kept = np.sort(order[:counts[root]])
            keep.update({m: kept for m in members})
    pruned, info = _apply(model, keep, groups, slices, depthwise, inits, rewrites, consumers, out_layouts)
    info["groups_pruned"] = sum(counts[r] < c for r, _, c, _ in free)
    info["channels_before"] = int(sum(c for r, _, c, _ in free if counts[r] < c))
    info["channels_after"] = int(sum(counts[r] for r, _, c, _ in free if counts[r] < c))
    info["allocation"] = allocation
    return pruned, info


def _free_groups(model, groups: _Group, producers, inits, activity) -> list[tuple[int, list[int], int, np.ndarray]]:
    """``(root, member spaces, channels, channel order by importance)`` of every prunable group."""
    roots: dict[int, list[int]] = {}
    for s in groups.parent:
        roots.setdefault(groups.find(s), []).append(s)
    pinned_roots = {groups.find(s) for s in groups.pinned}
    outputs = {n.name or n.output[0]: n.output[0] for n in model.graph.node}
    free = []
    for root, members in sorted(roots.items()):
        channels = groups.size[members[0]]
        if root in pinned_roots or any(groups.size[m] != channels for m in members):
            continue
        importance = np.zeros(channels)
        for m in members:
            for node, w in producers.get(m, []):
                if activity is not None:
                    norms = activity[outputs[node]].astype(np.float64)
                else:
                    norms = np.linalg.norm(inits[w].reshape(inits[w].shape[0], -1).astype(np.float64), axis=1)
                importance += norms / max(norms.max(), 1e-12)
        free.append((root, members, channels, np.argsort(-importance, kind="stable")))
    return free


def _activity(model, producers, samples) -> dict[str, np.ndarray]:
    """Mean |output| per channel of every producer conv on ``samples``."""
    from edgec.compiler.prune.onnx_refit import tensor_values

    outputs = {n.name or n.output[0]: n.output[0] for n in model.graph.node}
    names = sorted({outputs[node] for members in producers.values() for node, _ in members})
    values = tensor_values(model, samples, names)
    return {n: np.abs(v).mean(axis=tuple(i for i in range(v.ndim) if i != 1)) for n, v in zip(names, values)}


def _apply(model, keep: dict[int, np.ndarray], groups: _Group, slices, depthwise, inits, rewrites,
           consumers, out_layouts) -> tuple[Any, dict[str, Any]]:
    """A copy of ``model`` keeping the channels ``keep[space]`` of every pruned space."""
    import onnx
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    new_arrays: dict[str, np.ndarray] = dict(rewrites)
    for name, axis, lay, _role in slices:
        index = _indices(lay, keep)
        if index is None:
            continue
        arr = new_arrays.get(name, inits[name])
        if arr.shape[axis] == len(index):
            continue  # already sliced through another use of the same initializer
        new_arrays[name] = np.take(arr, index, axis=axis)
    for t in g.initializer:
        if t.name in new_arrays:
            t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(new_arrays[t.name]), t.name))
    for node_index, lay in depthwise:
        index = _indices(lay, keep)
        if index is not None:
            for a in g.node[node_index].attribute:
                if a.name == "group":
                    a.i = len(index)
    del g.value_info[:]
    # For the least-squares refit (`onnx_refit`): convs that lost input channels, with the
    # output channels they kept (None: all).
    refit = [(i, _indices(out_layouts[i], keep) if i in out_layouts else None)
             for i, lay in consumers if _indices(lay, keep) is not None]
    pinned_roots = {groups.find(s) for s in groups.pinned}
    return out, {"groups_pinned": len(pinned_roots), "refit_candidates": refit}


def _kept_count(channels: int, spec: PruneSpec) -> int:
    n = max(1, int(round(channels * (1.0 - spec.ratio))))
    step = spec.round_to or 1
    if step > 1:
        n = max(step, int(round(n / step)) * step)
    return min(n, channels)


def _indices(lay: Layout, keep: dict[int, np.ndarray]) -> np.ndarray | None:
    """Kept positions along a tensor's channel (or feature) axis, None when nothing there is pruned."""
    if not any(s in keep for s, _ in lay.segments):
        return None
    parts, offset = [], 0
    for s, c in lay.segments:
        kept = keep.get(s, np.arange(c))
        parts.append(offset + kept)
        offset += c
    chans = np.concatenate(parts)
    if lay.per_channel == 1:
        return chans
    return (chans[:, None] * lay.per_channel + np.arange(lay.per_channel)[None, :]).ravel()


def _channels(lay: Layout) -> int:
    return sum(c for _, c in lay.segments)


def _per_channel_axis(const: np.ndarray, channels: int, rank: int, batch_norm: bool) -> int | None:
    """-1 for a scalar constant, the constant's axis holding the channels, or None."""
    if const.size == 1:
        return -1
    if batch_norm:
        return 0 if const.ndim == 1 and const.shape[0] == channels else None
    if rank < 2 or const.ndim > rank:
        return None
    shape = (1,) * (rank - const.ndim) + const.shape
    if shape[1] == channels and all(d == 1 for i, d in enumerate(shape) if i != 1):
        return 1 - (rank - const.ndim)
    return None


def _rank(shapes, name: str) -> int:
    s = shapes.get(name)
    return len(s) if s is not None else -1


def _flattens(node, attrs, shapes, inits) -> bool:
    """Flatten(axis=1) or a Reshape of [N, C, ...] to [N, C*...]."""
    src, dst = shapes.get(node.input[0]), shapes.get(node.output[0])
    if not src or not dst or len(dst) != 2 or src[0] != dst[0]:
        return False
    if node.op_type == "Flatten":
        return int(attrs.get("axis", 1)) == 1
    return node.input[1] in inits and int(np.prod(src[1:])) == dst[1]


def _shapes(model) -> dict[str, list[int] | None]:
    out = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = [d.dim_value if d.dim_value > 0 else -1 for d in dims] if vi.type.tensor_type.HasField(
            "shape") else None
    return out
