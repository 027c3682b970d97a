"""Which 4-D tensors of a Q/DQ ONNX graph the mcu target stores in NHWC, and which in the
graph's own order.

The kernels are NHWC. An ONNX graph is NCHW, so by default a 4-D activation is stored NHWC
and every op importer maps its axes (``ctx.rank4`` holds those tensors). Graphs converted
from TensorFlow (tf2onnx: .tflite, Keras) are NHWC at their edges and wrap the NCHW body in
Transposes: ``input[NHWC] -> Transpose(0,3,1,2) -> Conv ... Conv -> Transpose(0,2,3,1) ->
Reshape``. Executed, each would copy a whole activation. Instead, a tensor on the NHWC side
of such a Transpose is stored in the graph's own order, which is the very same bytes as
the NHWC tensor on the other side: the Transpose becomes a view (no code, no RAM).

A tensor is kept in the graph's order (a "plain" tensor) when it is:

* a graph input or output the model declares NHWC (the user's bytes pass through unchanged);
* a graph input, or the output of a reshape, whose every reader is a ``Transpose(0,3,1,2)``;
* the output of a Transpose whose input layout makes the graph's order the no-copy choice.

Everything else 4-D is NHWC. Ops whose importers take either layout are the records'
``any_layout`` ops; the importer transposes a plain 4-D input for every other op.
"""

from __future__ import annotations

from edgec.targets.mcu.ops.record import attrs

NHWC_OF_NCHW = (0, 2, 3, 1)  # physical axis j holds logical (ONNX) axis NHWC_OF_NCHW[j]
NCHW_OF_NHWC = (0, 3, 1, 2)
_RESHAPES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})


def physical_perm(perm: list[int], in_axes: tuple[int, ...], out_axes: tuple[int, ...]) -> list[int]:
    """The permutation of stored axes that an ONNX ``Transpose(perm)`` is, given how each side
    stores its logical axes (stored axis j holds logical axis ``axes[j]``)."""
    inv = {a: j for j, a in enumerate(in_axes)}
    return [inv[perm[a]] for a in out_axes]


def no_copy_axes(perm: list[int], in_axes: tuple[int, ...]) -> tuple[int, ...]:
    """How the output of ``Transpose(perm)`` must be stored for the Transpose to move no data."""
    inv = {p: i for i, p in enumerate(perm)}
    return tuple(inv[a] for a in in_axes)


def transpose_perm(node, rank: int) -> list[int]:
    """A Transpose node's ``perm`` (ONNX's default: the axes reversed)."""
    perm = attrs(node).get("perm")
    return [int(p) for p in perm] if perm else list(range(rank))[::-1]


def plain_tensors(graph, consumers, shapes: dict, nhwc_io: frozenset[str]) -> set[str]:
    """Names of the int8 tensors (QuantizeLinear outputs) stored in the graph's own order.

    Args:
        graph: The ONNX GraphProto (Q/DQ form, nodes in topological order).
        consumers: Float tensor name -> nodes reading it.
        shapes: Tensor name -> static shape.
        nhwc_io: Graph inputs/outputs the model declares NHWC.
    """
    producer = {o: n for n in graph.node for o in n.output}
    graph_in = {i.name for i in graph.input}
    graph_out = {o.name for o in graph.output}
    plain: set[str] = set()

    def readers(q: str) -> list:
        """The ops reading int8 tensor ``q`` (through its DequantizeLinear nodes)."""
        return [c for dq in consumers.get(q, []) if dq.op_type == "DequantizeLinear"
                for c in consumers.get(dq.output[0], [])]

    def dq_outputs(q: str) -> set[str]:
        return {dq.output[0] for dq in consumers.get(q, []) if dq.op_type == "DequantizeLinear"}

    def only_into_nchw(qs: list[str]) -> bool:
        rs = [r for q in qs for r in readers(q)]
        return bool(rs) and all(r.op_type == "Transpose" and tuple(transpose_perm(r, 4)) == NCHW_OF_NHWC
                                for r in rs)

    for node in graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        x, q = node.input[0], node.output[0]
        shape = shapes.get(x) or shapes.get(q)
        if shape is None or len(shape) != 4:
            continue
        src = producer.get(x)
        if (dq_outputs(q) & graph_out & nhwc_io) or x in nhwc_io:
            plain.add(q)
        elif x in graph_in:
            qs = [c.output[0] for c in consumers.get(x, []) if c.op_type == "QuantizeLinear"]
            if only_into_nchw(qs):
                plain.add(q)
        elif src is not None and src.op_type == "DequantizeLinear":  # a requantization keeps the layout
            if src.input[0] in plain:
                plain.add(q)
        elif src is not None and src.op_type == "Transpose":
            dq = producer.get(src.input[0])
            in_axes = tuple(range(4)) if dq is not None and dq.input[0] in plain else NHWC_OF_NCHW
            if no_copy_axes(transpose_perm(src, 4), in_axes) == (0, 1, 2, 3):
                plain.add(q)
        elif src is not None and src.op_type in _RESHAPES and only_into_nchw([q]):
            plain.add(q)
    return plain
