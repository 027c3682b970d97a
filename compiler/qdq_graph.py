"""Graph facts the Q/DQ quantizer places its pairs by: which inputs are activations, which Adds are
residual, where Q/DQ can be hoisted, float tensors and shapes, and graph clean-up after quantizing."""

from __future__ import annotations

# Ops with weights that Q/DQ placement is built around.
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def node_attribute(node, name: str, default=None):
    """The value of ``node``'s attribute ``name`` (ints, floats, strings as bytes, lists), or ``default``."""
    for a in node.attribute:
        if a.name == name:
            from onnx import helper

            return helper.get_attribute_value(a)
    return default


class TensorSets:
    """Union-find over tensor names: the groups a pass joins tensors into (one grid, one equalized stream)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}  # every tensor seen, in the order first seen

    def find(self, t: str) -> str:
        """The representative of ``t``'s group (``t`` itself when it joined none)."""
        parent = self.parent
        while parent.setdefault(t, t) != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    def join(self, t: str, into: str) -> None:
        """Put ``t``'s group into ``into``'s (whose representative stays)."""
        root = self.find(into)
        self.parent[self.find(t)] = root


def activation_inputs(n, inits) -> list[str]:
    if n.op_type in ("Conv", "ConvTranspose", "Gemm"):
        return [n.input[0]] if n.input[0] not in inits else []
    if n.op_type in ("Reshape", "Pad", "Squeeze", "Unsqueeze", "Clip", "ReduceMean"):
        return [n.input[0]] if n.input and n.input[0] not in inits else []
    return [i for i in n.input if i and i not in inits]


# Activations beyond this magnitude are masks or sentinels (-3.4e38 attention masks), not
# signal: an int8 grid over such a range would zero out everything that matters.
MAX_QUANTIZABLE_MAGNITUDE = 1e4


def zero_pad(n, consts: dict) -> bool:
    """A Pad that adds zeros or repeats values (int8-exact: 0 is on every grid), not another constant."""
    mode = next((a.s for a in n.attribute if a.name == "mode"), b"constant")
    if mode != b"constant" or len(n.input) < 3 or not n.input[2]:
        return True
    value = consts.get(n.input[2])
    return value is not None and not value.any()


def hoist(t, reader, through, producer, consumers, graph_outputs, float_tensors, ranges, qnodes, shares=None,
          blocked=frozenset(), scalar_muls=frozenset()):
    """Move a weighted input's Q/DQ above single-use precision-preserving producers.

    ``shares(src, p)``: whether ``p`` may read a pair on ``src`` although other nodes read ``src``
    too (their own pair on ``src``, shared), not only when ``p`` is its single reader; ``shares(t,
    None)``: whether every reader of ``t`` quantizes it alike, so that the pair may move above ``t``'s
    producer for all of them (ResNet's stem MaxPool, read by a Conv and a residual Add). ``blocked``: ids
    of ``through`` nodes that do not preserve the grid (a Pad with a non-zero constant).
    ``scalar_muls``: names of Mul nodes by a constant scalar the pair may also move above, only when it
    then lands on a weighted op's output (attention's ``Q * d**-0.25`` between a projection and its
    MatMul: the runtime folds the scalar into the dequantization and the projection emits int8; a
    scalar Mul inside a decomposed activation keeps its pair below, where the fused op needs it; a
    projection's bias Add counts as its output).
    """
    below_mul = None
    while through:
        p = producer.get(t)
        if p is None or (p.op_type not in through and p.name not in scalar_muls) or id(p) in qnodes \
                or id(p) in blocked or t in graph_outputs \
                or (len(consumers.get(t, [])) != 1 and not (shares is not None and shares(t, None))):
            break
        src = p.input[0]
        if src not in float_tensors or src not in ranges or (
                len(consumers.get(src, [])) != 1 and not (shares is not None and shares(src, p))):
            break
        if p.name in scalar_muls and below_mul is None:
            below_mul = (t, reader)
        t, reader = src, p
    if below_mul is not None and not _weighted_output(t, producer):
        return below_mul
    return t, reader


def _weighted_output(t, producer) -> bool:
    """``t`` is a weighted op's output, or its bias Add's (one input constant: no producer)."""
    p = producer.get(t)
    if p is not None and p.op_type == "Add" and len(p.input) == 2 and any(i not in producer for i in p.input):
        p = next(producer[i] for i in p.input if i in producer) if any(i in producer for i in p.input) else None
    return p is not None and p.op_type in WEIGHTED_OPS


def is_residual_add(n, inits, shapes, ranges) -> bool:
    """Both inputs are activations of the same shape with a sane range (skip connections).

    Broadcasting adds (attention masks, biases) stay float: they carry sentinels or
    constants that int8 would destroy, and the runtimes fuse them into the previous op.
    """
    if len(n.input) != 2 or any(i in inits for i in n.input):
        return False
    a, b = (shapes.get(i) for i in n.input)
    if a is None or b is None or a != b:
        return False
    return _sane_ranges(n, ranges)


def _sane_ranges(n, ranges) -> bool:
    """Every input of ``n`` has a calibrated range within `MAX_QUANTIZABLE_MAGNITUDE` (no masks or sentinels)."""
    for i in n.input:
        r = ranges.get(i)
        if r is None or max(abs(r.rmin), abs(r.rmax)) > MAX_QUANTIZABLE_MAGNITUDE:
            return False
    return True


def fed_by_conv(n, producer) -> bool:
    """Whether an input of ``n`` comes from a Conv (through Relu/Clip/BatchNormalization).

    TensorRT and OpenVINO fuse Q/DQ on the residual Add of conv blocks (ResNet-style). In
    transformers the residual stream carries outlier channels that per-tensor int8 ruins
    (MiniLM: 0.944 embedding cosine with those adds quantized vs 0.993 without), and the
    runtimes gain little from it, so those adds stay float.
    """
    for i in n.input:
        p = producer.get(i)
        while p is not None and p.op_type in ("Relu", "Clip", "BatchNormalization"):
            p = producer.get(p.input[0])
        if p is not None and p.op_type in ("Conv", "ConvTranspose"):
            return True
    return False


def conv_residual_adds(proto) -> int:
    """How many Adds join two same-shape activations with one of them from a Conv (residual blocks)."""
    g = proto.graph
    inits = {t.name for t in g.initializer}
    _, shapes = float_tensors(proto)
    producer = {o: n for n in g.node for o in n.output}
    return sum(1 for n in g.node if n.op_type == "Add" and len(n.input) == 2 and not any(i in inits for i in n.input)
               and shapes.get(n.input[0]) is not None and shapes.get(n.input[0]) == shapes.get(n.input[1])
               and fed_by_conv(n, producer))


# Ops between an attention's Softmax and the MatMul that weighs the values by it: layout, and
# the exporters' NaN guard (``Where(IsNaN(p), 0, p)``, PyTorch's scaled_dot_product_attention).
ATTENTION_PASS_OPS = frozenset({"Reshape", "Transpose", "Cast", "Dropout", "Identity", "Where"})


def attention_blocks(proto) -> int:
    """How many Softmax outputs weigh a MatMul (through `ATTENTION_PASS_OPS`) in a model that also has
    LayerNormalization: the self-attention blocks of a transformer (ViT, BERT, Whisper).

    A conv stem in front of them (ViT's patch embedding, Whisper's Conv1d) does not make the
    residual stream a CNN's: `in_conv_network` finds that Conv up the chain of residual Adds.
    """
    g = proto.graph
    if not any(n.op_type == "LayerNormalization" for n in g.node):
        return 0
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    count = 0
    for n in g.node:
        if n.op_type != "Softmax":
            continue
        frontier, seen = [n.output[0]], set()
        while frontier:
            t = frontier.pop()
            for r in readers.get(t, []):
                if r.op_type == "MatMul":
                    count += 1
                    frontier = []
                    break
                if r.op_type in ATTENTION_PASS_OPS and r.output[0] not in seen:
                    seen.add(r.output[0])
                    frontier.append(r.output[0])
    return count


def float_tensors(proto) -> tuple[set[str], dict[str, tuple]]:
    """Names of float32 tensors and known static shapes, from shape inference."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:  # noqa: BLE001 - shape inference is best effort; fall back to declared types
        inferred = proto
    out, shapes = set(), {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        tt = v.type.tensor_type
        if tt.elem_type == 1:
            out.add(v.name)
        dims = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in tt.shape.dim)
        if tt.HasField("shape") and all(isinstance(d, int) and d > 0 for d in dims):
            shapes[v.name] = dims
    return out, shapes


def first_layers(nodes, graph_inputs, inits) -> set[int]:
    """Ids of the weighted nodes (Conv, MatMul ... with a constant weight) whose activation input comes from the
    model's inputs through no other weighted node: the model's first layers, which read full-range input data."""
    reached = set(graph_inputs)
    out: set[int] = set()
    for n in nodes:  # topological order
        acts = [i for i in n.input if i and i not in inits]
        if not any(i in reached for i in acts):
            continue
        if n.op_type in WEIGHTED_OPS and any(i in inits for i in n.input[1:2]):
            out.add(id(n))
            continue
        reached.update(o for o in n.output if o)
    return out


def topo_tensors(nodes, graph_inputs) -> list[str]:
    out = sorted(graph_inputs)
    for n in nodes:
        out.extend(o for o in n.output if o)
    return out


def drop_unused_initializers(g) -> None:
    """Remove float initializers replaced by quantized ones (and their legacy graph-input entries)."""
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    before = {t.name for t in g.initializer}
    keep = [t for t in g.initializer if t.name in used]
    removed = before - {t.name for t in keep}
    del g.initializer[:]
    g.initializer.extend(keep)
    graph_in = [i for i in g.input if i.name not in removed]
    del g.input[:]
    g.input.extend(graph_in)


# Per-axis QuantizeLinear/DequantizeLinear need opset 13.
QDQ_MIN_OPSET = 13


def ensure_opset(proto, minimum: int) -> None:
    import onnx

    for op in proto.opset_import:
        if op.domain in ("", "ai.onnx") and op.version < minimum:
            converted = onnx.version_converter.convert_version(proto, minimum)
            proto.CopyFrom(converted)
            return


# Ops whose only activation input is the first (the rest are sizes, axes or scales).
FIRST_INPUT_ONLY = frozenset({"Resize", "Upsample", "GlobalAveragePool", "AveragePool", "ReduceMean", "MaxPool"})
# How far back two operands of a Mul/Add are searched for a common source: far enough for the
# decomposed activations (x * Clip(x + 3) / 6, x * Sigmoid(x), GELU), short of a real branch.
ACTIVATION_PATTERN_HOPS = 4
CONV_SEARCH_NODES = 64


def int8_op_inputs(n, inits) -> list[str]:
    """The activation inputs an int8 element-wise/pooling/resize op reads (parameters excluded)."""
    if n.op_type in FIRST_INPUT_ONLY:
        return [n.input[0]] if n.input and n.input[0] not in inits else []
    return [i for i in n.input if i and i not in inits]


def in_conv_network(n, producer) -> bool:
    """Whether the nearest weighted ops above ``n`` include a Conv (a CNN, not a transformer block).

    Transformer residual streams and LayerNorm statistics carry outlier channels that per-tensor
    int8 ruins (see `fed_by_conv`); a CNN's element-wise ops do not.
    """
    seen, stack = set(), [i for i in n.input if i]
    while stack and len(seen) < CONV_SEARCH_NODES:
        p = producer.get(stack.pop())
        if p is None or id(p) in seen:
            continue
        seen.add(id(p))
        if p.op_type in ("Conv", "ConvTranspose"):
            return True
        if p.op_type not in WEIGHTED_OPS:
            stack.extend(i for i in p.input if i)
    return False


def _near_sources(t, producer, inits, hops: int) -> set[str]:
    """``t`` and what it is a one-input function of, up to ``hops`` ops back (constants aside)."""
    out, frontier = {t}, [t]
    for _ in range(hops):
        nxt = []
        for x in frontier:
            p = producer.get(x)
            if p is None:
                continue
            acts = [i for i in p.input if i and i not in inits and
                    getattr(producer.get(i), "op_type", None) != "Constant"]
            if p.op_type not in WEIGHTED_OPS and len(acts) == 1 and acts[0] not in out:
                nxt.append(acts[0])
        out.update(nxt)
        frontier = nxt
    return out


def is_activation_pattern(n, producer, inits) -> bool:
    """Whether a two-operand op combines one tensor with a one-input function of it (x * Sigmoid(x)).

    Those are decomposed activations the runtime fuses back into one op (Swish, HSwish, GELU);
    a Q/DQ pair between their parts would stop that fusion. A squeeze-excite gate
    (x * HardSigmoid(Conv(...))) reaches its other operand only through a weighted op, and
    x + x * gate only through a two-input op, so neither is one.
    """
    ins = [i for i in n.input if i]
    if len(ins) != 2:
        return False
    a, b = (_near_sources(i, producer, inits, ACTIVATION_PATTERN_HOPS) for i in ins)
    return bool(a & b)


def is_int8_binary(n, inits, shapes, ranges, producer) -> bool:
    """An Add/Mul of two activations a CNN runtime can run in int8 (residual sums, FPN sums, SE gates).

    Shapes may broadcast (a [1, C, 1, 1] gate over [1, C, H, W]) as long as the ranks match (an
    unknown shape, as after a Resize by scales, is no objection);
    masks and sentinels (ranges beyond `MAX_QUANTIZABLE_MAGNITUDE`) stay float.
    """
    if len(n.input) != 2 or any(i in inits for i in n.input):
        return False
    a, b = (shapes.get(i) for i in n.input)
    if a is not None and b is not None and len(a) != len(b):
        return False
    return _sane_ranges(n, ranges) and in_conv_network(n, producer) and not is_activation_pattern(n, producer, inits)


def clip_dead_relu_ranges(g, ranges: dict, keep_float=()) -> tuple[dict, list[str]]:
    """Ranges of ``Add -> Relu`` inputs without the part the ``Relu`` zeroes anyway.

    In ``relu(a + b)`` with ``b`` quantized (so ``b <= rmax_b``), any ``a < -rmax_b`` gives 0, as
    does ``a = -rmax_b``: clamping ``a`` at ``-rmax_b`` changes no output. Residual blocks
    ``x + conv(...) -> Relu`` (BlazeFace) put the pointwise conv's output there, and its
    negative tail is often twice the stream's largest value: the clamp gives ``a`` up to 2x
    finer int8 steps for free (blazeface-back, onnxruntime int8, worst-sample cosine 0.930 ->
    0.944; blazeface-short 0.983 -> 0.987). Only a tensor the ``Add`` alone reads is clamped.

    Returns:
        The new ranges and the clamped tensors' names.
    """
    import dataclasses

    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    out, clamped = dict(ranges), []
    for n in g.node:
        after = readers.get(n.output[0], []) if n.op_type == "Add" else []
        if len(n.input) != 2 or n.input[0] == n.input[1] or len(after) != 1 or after[0].op_type != "Relu" or \
                n.output[0] in outputs or n.name in keep_float or after[0].name in keep_float:
            continue
        for a, b in (n.input, n.input[::-1]):
            if a in ranges and b in ranges and a not in outputs and len(readers.get(a, [])) == 1 and \
                    -ranges[b].rmax > out[a].rmin:
                out[a] = dataclasses.replace(out[a], rmin=min(-ranges[b].rmax, 0.0))
                clamped.append(a)
    return out, clamped


def nonnegative_bound(t, producer, inits, through=()) -> float | None:
    """The upper bound of ``t`` when it is non-negative by construction, else None.

    ``t`` comes from a Relu (bound ``inf``) or a Clip at a constant minimum >= 0 (bound: its maximum, ``inf``
    without one), possibly through value-preserving ``through`` ops (MaxPool, Reshape ...; not a Pad, which may
    add a negative constant).
    """
    import numpy as np
    from onnx import numpy_helper

    p = producer.get(t)
    while p is not None and p.op_type in through and p.op_type != "Pad" and p.input:
        p = producer.get(p.input[0])
    if p is None:
        return None
    if p.op_type == "Relu":
        return float("inf")
    if p.op_type != "Clip":
        return None
    attrs = {a.name: a.f for a in p.attribute}

    def bound(k: int, name: str) -> float | None:
        if len(p.input) > k and p.input[k]:
            return float(numpy_helper.to_array(inits[p.input[k]])) if p.input[k] in inits else None
        return attrs.get(name, float("-inf") if k == 1 else float("inf"))

    low, high = bound(1, "min"), bound(2, "max")
    return high if low is not None and low >= 0 and high is not None and np.isfinite(low) else None


def quantized_tensors(qproto, ranges: dict[str, Any]) -> list[str]:
    """Activation tensors that got a Q/DQ pair, in graph order (names as in ``ranges``)."""
    producer = {o: n for n in qproto.graph.node for o in n.output}
    out = []
    for n in qproto.graph.node:
        if n.op_type != "QuantizeLinear":
            continue
        src = n.input[0]
        if src in ranges:
            out.append(src)
            continue
        dq = next((c for c in qproto.graph.node if c.op_type == "DequantizeLinear" and c.input[0] == n.output[0]), None)
        if dq is not None and dq.output[0] in ranges:
            out.append(dq.output[0])
        elif src in producer and src.endswith("_float") and src[:-6] in ranges:
            out.append(src[:-6])
    return list(dict.fromkeys(out))


def quantized_layers(qproto) -> list[tuple[str, str]]:
    """``(node name, op type)`` of the quantized compute nodes (what ``--keep-float`` can change).

    Ops that only move values (Reshape, Transpose, MaxPool ...) read dequantized tensors when
    Q/DQ is hoisted above them, but keeping them in float changes nothing: they are left out.
    """
    from edgec.compiler.quantize import FULL_INT_OPS, SCALE_PRESERVING_OPS
    from edgec.targets.base import RECURRENT_OPS

    dq_out = {n.output[0] for n in qproto.graph.node if n.op_type == "DequantizeLinear"}
    out = []
    for n in qproto.graph.node:
        if n.op_type not in FULL_INT_OPS | RECURRENT_OPS or n.op_type in SCALE_PRESERVING_OPS or not n.name:
            continue
        if any(i in dq_out for i in n.input):
            out.append((n.name, n.op_type))
    return out
