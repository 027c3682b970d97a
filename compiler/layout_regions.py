"""One int8 grid across a channel shuffle: Concat -> Reshape/Transpose -> Split chains (ShuffleNet V2).

A ShuffleNet V2 unit concatenates its two branches, shuffles the channels (Reshape, Transpose,
Reshape) and splits them again: one half feeds the next unit's convs, the other passes on to the next
unit's Concat untouched. With a pair on each conv input after the Split, every Concat, shuffle and
Split between them runs in f32 in a runtime that moves int8 data through layout ops (OpenVINO's CPU
plugin: shufflenet_v2_x1_0 ran 62 f32 kernels, NNCF's placement 1). With one grid for the whole chain,
the pairs sit where data enters it (the branch outputs), and every op inside moves int8 values
unchanged, as NNCF's unified-scale groups do. `QuantScheme.layout_region_ops` names the ops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from edgec.compiler.qdq_graph import TensorSets

if TYPE_CHECKING:
    from edgec.calibration.types import TensorRange
    from edgec.targets.base import QuantScheme


def _data_inputs(n, inits) -> list[str]:
    if n.op_type == "Concat":
        return [i for i in n.input if i]
    return [n.input[0]] if n.input and n.input[0] and n.input[0] not in inits else []


def shared_grid_regions(nodes, scheme: "QuantScheme", keep_float, targets: dict[str, list], producer, consumers,
                        ranges: "dict[str, TensorRange]", inits, float_tensors, graph_outputs,
                        reads_per_tensor: Callable) -> "dict[str, TensorRange]":
    """Move the pairs of a layout region (Concat + Split chains) onto its entries, with one range.

    A region is a connected set of tensors joined by ``scheme.layout_region_ops`` nodes; it is
    rewritten only when it has a Concat and a Split (a channel shuffle), every reader outside it is a
    quantized op that reads the tensor per tensor (``reads_per_tensor(node, tensor)``), no tensor of it
    is a graph output, and its entries' calibrated ranges differ by at most
    ``scheme.layout_region_max_spread`` in width (a much smaller branch would lose its levels on the
    joint grid). ``targets`` is updated in place: the region's own pairs go, its entries get one.

    Returns:
        ``{entry tensor: joint range}`` for the entries (the quantizer's unified ranges).
    """
    from edgec.calibration.types import TensorRange

    ops = scheme.layout_region_ops
    region_nodes = [n for n in nodes if n.op_type in ops and n.name not in keep_float]
    sets = TensorSets()

    node_root: dict[int, str] = {}
    for n in region_nodes:
        ins, outs = _data_inputs(n, inits), [o for o in n.output if o]
        if not ins or not all(t in float_tensors for t in ins + outs):
            continue
        for t in ins[1:] + outs:
            sets.join(t, ins[0])
        node_root[id(n)] = ins[0]
    groups: dict[str, list] = {}
    for n in region_nodes:
        if id(n) in node_root:
            groups.setdefault(sets.find(node_root[id(n)]), []).append(n)

    unified: dict[str, TensorRange] = {}
    for members in groups.values():
        kinds = {n.op_type for n in members}
        if not {"Concat", "Split"} <= kinds:
            continue
        inside = {id(n) for n in members}
        tensors = list(dict.fromkeys(t for n in members for t in (*_data_inputs(n, inits), *n.output) if t))
        entries = [t for t in tensors if id(producer.get(t)) not in inside]
        exits = [(c, t) for t in tensors for c in consumers.get(t, []) if id(c) not in inside]
        if any(t in graph_outputs for t in tensors) or not exits or \
                not all(reads_per_tensor(c, t) for c, t in exits) or not all(t in ranges for t in entries):
            continue
        widths = [max(ranges[t].rmax, 0.0) - min(ranges[t].rmin, 0.0) for t in entries]
        if min(widths) <= 0 or max(widths) > scheme.layout_region_max_spread * min(widths):
            continue
        for t in tensors:
            if t not in entries:
                targets.pop(t, None)
        joint = TensorRange(min(ranges[t].rmin for t in entries), max(ranges[t].rmax for t in entries),
                            ranges[entries[0]].method)
        for t in entries:
            readers = [r for r in targets.get(t, []) if id(r) not in inside]
            readers += [c for c in consumers.get(t, []) if id(c) in inside and c not in readers]
            targets[t] = readers
            unified[t] = joint
    return unified
