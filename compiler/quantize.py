"""INT8 quantization of a float ONNX model into Q/DQ ONNX.

Numerics (see ../shared/DESIGN.md): symmetric per-channel int8 weights (narrow range
[-127, 127], as TFLite and TensorRT expect), int8 activations with a zero point from the
calibrated range (0 when the target needs symmetric activations), int32 bias with scale
``s_in * s_w``. Where Q/DQ pairs go is the target's `QuantScheme`: ``weighted`` for
runtimes that fuse DQ->op->Q themselves (OpenVINO, TensorRT), ``full`` for integer-only
runtimes that need a scale on every tensor (TFLite, the MCU C code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.compiler import qdq_graph as qg
from edgec.errors import ConfigError

if TYPE_CHECKING:
    import onnx

    from edgec.calibration.types import TensorRange
    from edgec.compiler.model import ModelHandle
    from edgec.targets.base import QuantScheme

WEIGHTED_OPS = qg.WEIGHTED_OPS  # re-exported: callers import it from here
# Default for placement "full" when the target's QuantScheme names no `integer_ops`: the ops
# integer-only runtimes commonly execute on int8 tensors. Targets declare their own set.
FULL_INT_OPS = WEIGHTED_OPS | frozenset({
    "Add", "Mul", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean",
    "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Softmax", "Concat", "Pad",
    "Sigmoid", "Tanh",
})
# Their output keeps the input's quantization parameters (no requantization needed); the
# default when the QuantScheme names no `scale_preserving_ops`.
SCALE_PRESERVING_OPS = frozenset({"MaxPool", "AveragePool", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
                                  "Transpose", "Pad"})
# Inputs that are parameters, not data: they stay float (Clip's min/max bounds, Resize's roi and scales).
PARAMETER_INPUTS = {"Clip": (1, 2), "Resize": (1, 2)}
# The weight inputs of ONNX recurrent cells (LSTM, GRU, RNN: X, W, R, B, ...), for `QuantScheme.int8_recurrent_ops`.
RECURRENT_WEIGHT_INPUTS = (1, 2)
RECURRENT_STATE_BOUND = 1.0  # |hidden state| of an LSTM/GRU/RNN cell with the default (tanh) output activation
FUSIBLE_ACTIVATIONS = frozenset({"Relu", "Clip"})
FUSING_PRODUCERS = frozenset({"Conv", "Gemm", "MatMul", "Add"})
# TFLite's fixed output parameters for int8 Softmax / Logistic / Tanh; the default when the
# QuantScheme names no `fixed_output_params`.
FIXED_OUTPUT_PARAMS = {"Softmax": (1.0 / 256.0, -128), "Sigmoid": (1.0 / 256.0, -128), "Tanh": (1.0 / 128.0, 0)}
MIN_SCALE = 1e-12
DEAD_CHANNEL_REL = 1e-4  # per-channel activation ranges below this share of the largest are floored


@dataclass(frozen=True)
class QParams:
    """Per-tensor activation quantization parameters."""

    scale: float
    zero_point: int


def activation_qparams(rmin: float, rmax: float, symmetric: bool) -> QParams:
    """int8 scale/zero point covering [rmin, rmax] (widened to include 0)."""
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    if symmetric:
        scale = max(abs(rmin), abs(rmax)) / 127.0
        return QParams(float(np.float32(max(scale, MIN_SCALE))), 0)
    scale = (rmax - rmin) / 255.0
    if scale <= MIN_SCALE:
        return QParams(1.0, 0)
    scale = float(np.float32(scale))
    zp = int(np.clip(round(-128 - rmin / scale), -128, 127))
    return QParams(scale, zp)


def weight_scales(w: np.ndarray, axis: int | None, qmax: int = 127) -> np.ndarray:
    """Symmetric narrow-range int8 scales (``[-qmax, qmax]``), per channel along ``axis`` (None: per tensor)."""
    if axis is None:
        absmax = np.array(np.abs(w).max(initial=0.0), dtype=np.float64)
    else:
        red = tuple(i for i in range(w.ndim) if i != axis)
        absmax = np.abs(w).max(axis=red, initial=0.0).astype(np.float64)
    scales = (absmax / float(qmax)).astype(np.float32)
    return np.where(scales > MIN_SCALE, scales, np.float32(1.0)).astype(np.float32)


def quantize_weight(w: np.ndarray, axis: int | None, qmax: int = 127,
                    scales: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights in ``[-qmax, qmax]`` and their scales (shape [C] per channel, scalar per tensor): the
    largest weight's (`weight_scales`), or ``scales`` where given."""
    scales = weight_scales(w, axis, qmax) if scales is None else scales
    if axis is None:
        q = np.clip(np.round(w / scales), -qmax, qmax).astype(np.int8)
        return q, scales.reshape(())
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scales.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scales


def _weight_axis(node: "onnx.NodeProto", input_index: int, w: np.ndarray) -> int | None:
    """Output-channel axis of a weight input, or None when it has none (a MatMul's first operand)."""
    from edgec.compiler.weight_axis import weight_axis

    if w.ndim < 2 or (node.op_type == "MatMul" and input_index != 1):
        return None
    return weight_axis(node, input_index, w.ndim)


class _Builder:
    """Collects new initializers/nodes with deterministic names."""

    def __init__(self, model: "onnx.ModelProto"):
        from onnx import numpy_helper

        self.nh = numpy_helper
        self.graph = model.graph
        self.inits = {t.name: t for t in model.graph.initializer}
        self.new_inits: list[onnx.TensorProto] = []
        self.used = set(self.inits) | {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}

    def name(self, base: str) -> str:
        n, k = base, 1
        while n in self.used:
            k += 1
            n = f"{base}_{k}"
        self.used.add(n)
        return n

    def const(self, base: str, value: np.ndarray) -> str:
        n = self.name(base)
        self.new_inits.append(self.nh.from_array(np.asarray(value), n))
        return n


def balanced_range(r, share: float) -> bool:
    """Whether a calibrated range is signed with its smaller side at least ``share`` of its larger."""
    return r.rmin < 0 < r.rmax and min(-r.rmin, r.rmax) >= share * max(-r.rmin, r.rmax)


# Readers that quantize a depthwise output as it leaves the conv (no activation between).
_DEPTHWISE_OUTPUT_READERS = frozenset({"Conv", "MatMul", "Gemm"})


def symmetric_depthwise_outputs(proto, ranges: dict, share: float) -> list[str]:
    """Depthwise outputs read only by weighted ops whose calibrated range is ``share`` balanced
    (`QuantScheme.symmetric_depthwise_outputs`): the ones that get no zero point."""
    inits = {t.name: t for t in proto.graph.initializer}
    readers: dict[str, set[str]] = {}
    for n in proto.graph.node:
        for i in n.input:
            readers.setdefault(i, set()).add(n.op_type)
    return [n.output[0] for n in proto.graph.node
            if n.output and ranges.get(n.output[0]) is not None and readers.get(n.output[0])
            and readers[n.output[0]] <= _DEPTHWISE_OUTPUT_READERS and is_depthwise(n, inits)
            and balanced_range(ranges[n.output[0]], share)]


def is_depthwise(n, inits) -> bool:
    """A Conv whose every group is one input channel (MobileNet's depthwise 3x3)."""
    if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in inits:
        return False
    group = next((a.i for a in n.attribute if a.name == "group"), 1)
    dims = list(inits[n.input[1]].dims)
    return group > 1 and len(dims) >= 2 and dims[1] == 1 and dims[0] % group == 0


def depthwise_inputs(proto) -> list[str]:
    """Activation inputs of depthwise convolutions (candidates for per-channel activation scales)."""
    inits = {t.name: t for t in proto.graph.initializer}
    return list(dict.fromkeys(n.input[0] for n in proto.graph.node if is_depthwise(n, inits)))


def quantize_qdq(model: "ModelHandle", ranges: "dict[str, TensorRange]", scheme: "QuantScheme",
                 keep_float: tuple[str, ...] = (),
                 channel_absmax: "dict[str, np.ndarray] | None" = None) -> tuple["ModelHandle", dict[str, Any]]:
    """Quantize ``model`` to Q/DQ ONNX.

    Args:
        model: Float ONNX with static shapes.
        ranges: Calibrated ranges per tensor name (from `collect_ranges`).
        scheme: The target's placement and symmetry rules.
        keep_float: Node names to leave in float.
        channel_absmax: Per-channel magnitudes of depthwise-conv inputs
            (`collect_channel_absmax`); with ``scheme.per_channel_depthwise_inputs`` these
            tensors get symmetric per-channel scales (axis 1).

    Returns:
        The Q/DQ model and a summary for the manifest's ``passes`` entry.
    """
    import onnx
    from onnx import helper, numpy_helper

    # imported here: qdq_constants builds on this module's weight primitives
    from edgec.compiler.overflow_fix import weight_grids
    from edgec.compiler.qdq_constants import quantize_constants, quantize_embedding

    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    qg.ensure_opset(proto, qg.QDQ_MIN_OPSET)
    g = proto.graph
    nodes = list(g.node)
    names = {n.name for n in nodes}
    unknown = sorted(set(keep_float) - names)
    if unknown:
        raise ConfigError(f"--keep-float names unknown node(s) {unknown}; see `edgec inspect MODEL` for node names")

    ranges, dead_clamped = qg.clip_dead_relu_ranges(g, ranges, keep_float)
    b = _Builder(proto)
    full = scheme.placement == "full"
    if scheme.placement not in ("full", "weighted"):
        raise ValueError(f"unknown placement {scheme.placement}")
    float_tensors, shapes = qg.float_tensors(proto)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in nodes for o in n.output}  # noqa: F841 - used by is_quant_node
    graph_outputs = {o.name for o in g.output}
    graph_inputs = {i.name for i in g.input if i.name not in b.inits}

    int_ops = scheme.integer_ops if scheme.integer_ops is not None else FULL_INT_OPS
    preserving = scheme.scale_preserving_ops if scheme.scale_preserving_ops is not None else SCALE_PRESERVING_OPS
    fixed = ({op: (s, z) for op, s, z in scheme.fixed_output_params} if scheme.fixed_output_params is not None
             else FIXED_OUTPUT_PARAMS)

    def is_quant_node(n) -> bool:
        if n.name in keep_float:
            return False
        if not full and scheme.float_residual_adds and n.op_type == "Add" and \
                qg.is_residual_add(n, b.inits, shapes, ranges) and qg.fed_by_conv(n, producer):
            return False
        if full:
            return n.op_type in int_ops
        if n.op_type in WEIGHTED_OPS or n.op_type in scheme.int8_recurrent_ops:
            return True
        if n.op_type in scheme.int8_input_ops:
            if n.op_type in ("Add", "Mul"):
                return qg.is_int8_binary(n, b.inits, shapes, ranges, producer)
            return bool(qg.int8_op_inputs(n, b.inits)) and qg.in_conv_network(n, producer)
        if n.op_type == "Add" and scheme.quantize_add:
            return qg.is_residual_add(n, b.inits, shapes, ranges) and qg.fed_by_conv(n, producer)
        return False

    qnodes = {id(n) for n in nodes if is_quant_node(n)}

    def act_inputs_of(n) -> list[str]:
        if n.op_type in scheme.int8_recurrent_ops:  # the sequence X only: states, lengths stay float
            return [n.input[0]] if n.input[0] not in b.inits else []
        return (qg.int8_op_inputs(n, b.inits) if not full and n.op_type in scheme.int8_input_ops
                else qg.activation_inputs(n, b.inits))

    def per_tensor_reader(c, t) -> bool:
        return id(c) in qnodes and t in act_inputs_of(c) \
            and not (scheme.per_channel_depthwise_inputs and is_depthwise(c, b.inits))

    def shares_pair(src, p) -> bool:
        if p is None:
            # Every reader of a MaxPool's (Pad's) output quantizes it per tensor: the pair moves above it
            # (a MaxPool read by a Conv and a residual Add: ResNet's stem ran an f32 pool and requantize).
            # Not above layout ops: a channel shuffle's pair would reach its Concat, whose parts then share
            # one scale (a coarser grid for the smaller part); `layout_regions` joins a shuffle only where its parts'
            # ranges are alike.
            # A depthwise reader among others takes the shared per-tensor pair as well (per-channel scales need
            # every reader depthwise): ShuffleNet's stem pool, read by a depthwise and a 1x1 conv, ran in f32.
            readers = consumers[src]
            per_channel = scheme.per_channel_depthwise_inputs and all(is_depthwise(c, b.inits) for c in readers)
            return producer[src].op_type in ("MaxPool", "Pad") and not per_channel and all(
                id(c) in qnodes and src in act_inputs_of(c) and c.op_type != "MatMul" for c in readers)
        # Every other reader of ``src`` is a weighted op quantizing it per tensor: ``p`` (a MaxPool on a
        # residual branch) reads their pair and runs in int8, instead of a float pool between a
        # dequantize and a second requantize of the same tensor. With `pool_shares_depthwise_inputs` a
        # depthwise reader takes that one per-tensor pair too (BlazeBlocks' stride-2 branch pair).
        return all((per_tensor_reader(c, src) or (scheme.pool_shares_depthwise_inputs and id(c) in qnodes))
                   and c.op_type in WEIGHTED_OPS and c.input[0] == src for c in consumers.get(src, []) if c is not p)

    # Which activation tensors get a Q/DQ pair, and which consumers read the DQ output.
    fused: set[str] = set()
    if full:
        for n in nodes:
            if id(n) in qnodes and n.op_type in FUSING_PRODUCERS:
                out = n.output[0]
                cons = consumers.get(out, [])
                if len(cons) == 1 and cons[0].op_type in FUSIBLE_ACTIVATIONS and id(cons[0]) in qnodes \
                        and out not in graph_outputs:
                    fused.add(out)
    scalar_muls = {n.name for n in nodes if scheme.hoist_scalar_muls and n.op_type == "Mul" and len(n.input) == 2
                   and n.input[0] not in b.inits and n.input[1] in b.inits
                   and int(np.prod(b.inits[n.input[1]].dims)) == 1}
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer if t.name in {
        n.input[2] for n in nodes if n.op_type == "Pad" and len(n.input) > 2 and n.input[2]}}
    off_grid = {id(n) for n in nodes if n.op_type == "Pad" and not qg.zero_pad(n, consts)}
    targets: dict[str, list] = {}
    # A MatMul of two activations (`symmetric_activation_matmuls`): its second input symmetric, its first
    # symmetric unless the calibrated range is non-negative (softmax probabilities keep all 256 levels).
    symmetric_targets: set[str] = set()
    signed_targets: set[str] = set()
    balanced_targets: set[str] = set()  # FullyConnected inputs: symmetric where the range is about as signed
    state_targets: set[str] = set()  # sequence inputs of `int8_recurrent_ops`: their grid also carries the state
    for n in nodes:
        if id(n) not in qnodes:
            continue
        act_inputs = act_inputs_of(n)
        for i in act_inputs:
            if i in float_tensors and i not in fused:
                t, reader = (i, n) if full else qg.hoist(i, n, scheme.hoist_through, producer, consumers,
                                                          graph_outputs, float_tensors, ranges, qnodes,
                                                          shares_pair if scheme.hoist_shared_sources else None,
                                                          off_grid, scalar_muls)
                if n.op_type in scheme.int8_recurrent_ops:
                    state_targets.add(t)
                if scheme.symmetric_activation_matmuls and n.op_type == "MatMul" and n.input[1] in act_inputs:
                    (symmetric_targets if i == n.input[1] else signed_targets).add(t)
                elif scheme.symmetric_weighted_inputs is not None and n.op_type in ("MatMul", "Gemm"):
                    balanced_targets.add(t)
                targets.setdefault(t, [])
                if reader not in targets[t]:
                    targets[t].append(reader)
        if full:
            for o in n.output:
                if o in float_tensors and o not in fused:
                    targets.setdefault(o, [])

    unified: dict[str, "TensorRange"] = {}
    if not full and scheme.layout_region_ops:
        from edgec.compiler.layout_regions import shared_grid_regions

        unified = shared_grid_regions(nodes, scheme, keep_float, targets, producer, consumers, ranges, b.inits,
                                      float_tensors, graph_outputs, lambda c, t: id(c) in qnodes and c.op_type !=
                                      "MatMul" and t in act_inputs_of(c))
    if not full and scheme.unified_scale_ops:
        unified |= _through_unified_ops(nodes, keep_float, scheme, targets, producer, ranges, b.inits,
                                        float_tensors)

    # Quantization parameters, propagating scale-preserving ops and fixed outputs (full mode).
    params: dict[str, QParams] = {}
    chan_scales: dict[str, np.ndarray] = {}
    chan_zp: dict[str, np.ndarray] = {}
    if scheme.per_channel_depthwise_inputs and channel_absmax:
        for t, readers in targets.items():
            if t in channel_absmax and readers and all(is_depthwise(r, b.inits) and r.input[0] == t for r in readers):
                # A dead channel (all zero) needs no levels, but a tiny scale would overflow its int32 bias.
                amax = np.maximum(channel_absmax[t], DEAD_CHANNEL_REL * float(channel_absmax[t].max(initial=0.0)))
                chan_scales[t] = np.maximum(amax / 127.0, MIN_SCALE).astype(np.float32)
                chan_zp[t] = np.zeros(amax.shape, np.int8)
                bound = qg.nonnegative_bound(t, producer, b.inits, scheme.hoist_through)
                if scheme.unsigned_depthwise_inputs and bound is not None:
                    # The unsigned grid at the same step reaches twice the calibrated maximum (16 samples' maximum
                    # clips unseen photos: fer-emotion-keras cosine 0.9972 -> 0.9977), stopping at a Clip's bound,
                    # where the plugin fuses the two (mobilenet_v2's ReLU6: a range past 6 cost 7 % of its speed).
                    top = np.minimum(amax * (255.0 / 127.0), bound)
                    chan_scales[t] = np.maximum(top / 255.0, MIN_SCALE).astype(np.float32)
                    chan_zp[t] = np.full(amax.shape, -128, np.int8)
    share = scheme.symmetric_depthwise_outputs
    symmetric_outputs = set(symmetric_depthwise_outputs(model.proto, ranges, share)) if share is not None else set()
    missing: list[str] = []
    for t in qg.topo_tensors(nodes, graph_inputs):
        if t not in targets:
            continue
        p = producer.get(t)
        if full and p is not None and id(p) in qnodes:
            if p.op_type in fixed and not scheme.activation_symmetric:
                params[t] = QParams(*fixed[p.op_type])
                continue
            if p.op_type in preserving and p.input[0] in params:
                params[t] = params[p.input[0]]
                continue
        r = unified.get(t) or ranges.get(t)
        if r is None:
            missing.append(t)
            continue
        symmetric = t in symmetric_targets or (t in signed_targets and r.rmin < 0) or (
            t in balanced_targets and balanced_range(r, scheme.symmetric_weighted_inputs)) or t in symmetric_outputs
        rmin, rmax = r.rmin, r.rmax
        if t in state_targets:  # the runtime quantizes the hidden state (tanh: [-1, 1]) with X's scale and zero point
            rmin, rmax = min(rmin, -RECURRENT_STATE_BOUND), max(rmax, RECURRENT_STATE_BOUND)
        params[t] = activation_qparams(rmin, rmax, scheme.activation_symmetric or symmetric)
    if missing:
        raise ConfigError(f"no calibration range for tensor(s) {missing[:5]}: calibration did not observe them")

    new_nodes: list[onnx.NodeProto] = []
    rename: dict[tuple[int, str], str] = {}  # (id(consumer), tensor) -> dq name

    def qdq_pair(t: str, src: str, dst: str) -> list:
        kw: dict[str, int] = {}
        if t in chan_scales:
            scale, zp, kw = chan_scales[t], chan_zp[t], {"axis": 1}
        else:
            scale, zp = np.array(params[t].scale, dtype=np.float32), np.array(params[t].zero_point, dtype=np.int8)
        s = b.const(f"{t}_scale", scale)
        z = b.const(f"{t}_zero_point", zp)
        q_out = b.name(f"{t}_quantized")
        return [
            helper.make_node("QuantizeLinear", [src, s, z], [q_out], name=b.name(f"{t}_QuantizeLinear"), **kw),
            helper.make_node("DequantizeLinear", [q_out, s, z], [dst], name=b.name(f"{t}_DequantizeLinear"), **kw),
        ]

    def emit_activation(t: str) -> list:
        if t not in params:
            return []
        p = producer.get(t)
        if full and p is not None:
            # Rename the producer's output so every consumer (and a graph output) keeps its name.
            pre = b.name(f"{t}_float")
            for k, o in enumerate(p.output):
                if o == t:
                    p.output[k] = pre
            return qdq_pair(t, pre, t)
        dq = b.name(f"{t}_dq")
        readers = consumers.get(t, []) if full else targets[t]
        for c in readers:
            rename[(id(c), t)] = dq
        return qdq_pair(t, t, dq)

    for t in sorted(t for t in targets if t in graph_inputs):
        new_nodes.extend(emit_activation(t))
    weight_dq: list[onnx.NodeProto] = []
    stats = {"quantized_nodes": 0, "quantized_weights": 0, "activation_pairs": len(params), "embeddings": 0,
             "per_channel_activations": len(chan_scales), "seven_bit_weights": 0, "pair_bounded_weights": 0}
    grids = weight_grids(nodes, qnodes, graph_inputs, b.inits, scheme.overflow_fix)
    for n in nodes:
        if id(n) in qnodes:
            stats["quantized_nodes"] += 1
            weight_dq.extend(quantize_constants(n, b, params, rename, scheme, full, stats, chan_scales,
                                                grids.get(id(n))))
        elif scheme.quantize_embeddings and n.op_type == "Gather" and n.name not in keep_float:
            weight_dq.extend(quantize_embedding(n, b, stats))
        new_nodes.append(n)
        for o in list(n.output):
            if o in targets:
                new_nodes.extend(emit_activation(o))
    for n in nodes:
        for k, i in enumerate(n.input):
            if (id(n), i) in rename:
                n.input[k] = rename[(id(n), i)]

    del g.node[:]
    g.node.extend(weight_dq + new_nodes)
    g.initializer.extend(b.new_inits)
    qg.drop_unused_initializers(g)
    del g.value_info[:]
    summary = {
        "scheme": {"placement": scheme.placement, "activation_symmetric": scheme.activation_symmetric,
                   "per_channel": scheme.per_channel, "quantize_add": scheme.quantize_add,
                   "float_residual_adds": scheme.float_residual_adds,
                   "quantize_embeddings": scheme.quantize_embeddings},
        "keep_float": sorted(keep_float),
        **stats,
    }
    if dead_clamped:
        summary["relu_dead_ranges_clamped"] = len(dead_clamped)
    return model.with_proto(proto), summary


def _through_unified_ops(nodes, keep_float, scheme, targets, producer, ranges, inits,
                         float_tensors) -> "dict[str, TensorRange]":
    """Move quantizers up through ``scheme.unified_scale_ops`` nodes (Concat), with one range for all parts.

    A Concat whose output a quantized op reads gets its pairs on its inputs instead, all with the
    union of their ranges: the runtime concatenates int8 parts only when they share a scale, and
    the Concat then needs no pair of its own. A Concat nobody quantized downstream stays float
    (a detection head concatenating boxes and scores must not share one scale). Nodes are visited
    last to first, so nested Concats pass the quantizer on. A part that is a MaxPool (a
    ``hoist_through`` op) of another part reuses that part's pair (YOLOX's SPP block).
    """
    from edgec.calibration.types import TensorRange

    sets = qg.TensorSets()  # the parts that share one range

    parts_of = []
    for n in reversed(nodes):
        if n.op_type not in scheme.unified_scale_ops or n.name in keep_float or n.output[0] not in targets:
            continue
        ins = qg.int8_op_inputs(n, inits)
        if not ins or len(ins) != len([i for i in n.input if i]) or \
                not all(i in float_tensors and i in ranges for i in ins):
            continue
        parts = []
        for i in ins:
            p = producer.get(i)
            src = p.input[0] if p is not None and p.op_type in scheme.hoist_through and p.input else None
            t, reader = (src, p) if src in ins else (i, n)
            targets.setdefault(t, [])
            if reader not in targets[t]:
                targets[t].append(reader)
            parts.append(t)
        del targets[n.output[0]]
        parts_of.append(parts)
        for t in parts[1:]:
            sets.join(t, parts[0])
    joined: dict[str, TensorRange] = {}
    for parts in parts_of:
        for t in parts:
            root, r = sets.find(t), ranges[t]
            j = joined.get(root)
            joined[root] = r if j is None else TensorRange(min(j.rmin, r.rmin), max(j.rmax, r.rmax), r.method)
    return {t: joined[sets.find(t)] for parts in parts_of for t in parts}
