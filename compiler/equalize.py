"""Cross-layer equalization of Conv -> [Relu] -> Conv pairs, from calibrated activation ranges.

A convolution's output channels can differ in range by 100x: in MediaPipe's BlazeFace one
channel of the last depthwise conv reaches -446 while the median channel stays under 3.2.
The pointwise conv that reads it has one per-tensor int8 activation scale, so that channel
leaves the others a couple of levels (blazeface-short: the pointwise conv took the output's
SQNR from 20 to 12 dB, cosine 0.90 on intel-cpu). Since a positive per-channel scale passes
through a linear link and through ``Relu``, it can be moved between the two convolutions:

    y = conv2(relu(conv1(x, W1, b1)), W2) = conv2(relu(conv1(x, W1 / s, b1 / s)), W2 * s)

(``s`` scales output channel ``c`` of ``conv1`` and input channel ``c`` of ``conv2``;
Nagel et al., "Data-Free Quantization", 2019, equalize the weights this way; here the
activation's calibrated range takes the first weight's place, as SmoothQuant does for
MatMuls). With ``r_c`` the channel's largest magnitude over the calibration samples and
``w_c`` the largest ``|W2[:, c]|``, ``s_c = sqrt(r_c / w_c)`` leaves both the activation
channel and the weight column at ``sqrt(r_c * w_c)``. ``conv1``'s weights are quantized per
output channel, so ``W1 / s`` costs nothing; a depthwise ``conv2`` takes ``s`` per channel,
also for free. The float function is unchanged (up to float rounding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgec.compiler.model import ModelHandle

ALPHA = 0.5  # share of the activation's channel spread moved into the second conv's weights
MIN_SPREAD = 4.0  # largest / median channel range below which one per-tensor scale serves every channel
FLOOR = 1e-3  # channel ranges and weight columns below this share of the largest are floored


def _group(n) -> int:
    return next((a.i for a in n.attribute if a.name == "group"), 1)


def equalization_pairs(proto) -> list[tuple[Any, Any | None, list]]:
    """``(conv1, relu or None, [conv2 ...])`` whose link a channel scale can cross exactly.

    ``conv1`` has constant weights (and bias); its output (or the output of the ``Relu`` that
    is its only reader) is no graph output and is read only as the data input of
    convolutions with constant weights, at least one of them not depthwise (a depthwise
    reader alone is already quantized per channel where the target can).
    """
    g = proto.graph
    inits = {t.name for t in g.initializer}
    outputs = {o.name for o in g.output}
    users: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    shapes = {t.name: list(t.dims) for t in g.initializer}

    pairs = []
    for n in g.node:
        if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in inits or \
                (len(n.input) > 2 and n.input[2] and n.input[2] not in inits) or n.input[0] in inits:
            continue
        t, relu = n.output[0], None
        if t in outputs:
            continue
        readers = users.get(t, [])
        if len(readers) == 1 and readers[0].op_type == "Relu":
            relu = readers[0]
            t = relu.output[0]
            readers = users.get(t, [])
        channels = shapes[n.input[1]][0]
        if t in outputs or not readers or any(
                r.op_type != "Conv" or r.input[0] != t or len(r.input) < 2 or r.input[1] not in inits
                or r.input[1] == t for r in readers):
            continue
        kinds = []
        for r in readers:
            w = shapes[r.input[1]]
            if _group(r) == 1 and w[1] == channels:
                kinds.append("dense")
            elif _group(r) == channels and w[1] == 1:
                kinds.append("depthwise")
            else:
                break
        if len(kinds) == len(readers) and "dense" in kinds:
            pairs.append((n, relu, readers))
    return pairs


def equalize(model: "ModelHandle", samples: list[dict[str, np.ndarray]], streams: bool = False,
             min_spread: float = MIN_SPREAD) -> tuple["ModelHandle", dict[str, Any]]:
    """The equalized float model (same function) and a summary for the manifest.

    ``streams``: also residual streams (`edgec.compiler.equalize_stream`), for targets whose
    every activation is quantized per tensor. ``min_spread``: a link is equalized when its
    largest channel range is at least this multiple of the median one (1: every link).
    """
    import onnx
    from onnx import numpy_helper

    from edgec.calibration.channels import collect_channel_absmax

    from edgec.compiler.equalize_stream import rescale_stream, stream_groups, stream_scales

    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    pairs = equalization_pairs(proto)
    groups = stream_groups(proto) if streams else []
    if not pairs and not groups:
        return model, {"equalized": 0}
    read = {(relu or conv).output[0]: (conv, readers) for conv, relu, readers in pairs}
    relu_of = {conv.output[0]: relu for conv, relu, _ in pairs if relu is not None}
    absmax = collect_channel_absmax(proto, samples, list(read) + [t for st in groups for t in st["tensors"]])
    inits = {t.name: t for t in proto.graph.initializer}

    def get(name: str) -> np.ndarray:
        return numpy_helper.to_array(inits[name]).astype(np.float32)

    taken = set(inits) | {o for n in proto.graph.node for o in n.output}

    def put(node, k: int, value: np.ndarray) -> None:
        """A fresh initializer for ``node.input[k]``: constants may be shared (tf2onnx's zero biases)."""
        name = _fresh(node.input[k], taken)
        inits[name] = numpy_helper.from_array(value.astype(np.float32), name)
        proto.graph.initializer.append(inits[name])
        node.input[k] = name

    done, streamed = [], 0
    # Streams first: they rescale the pointwise convs' rows, which the pairs' weight columns then see.
    # A pair's own tensor (a depthwise output) keeps its values: the stream's readers undo the scale.
    for st in groups:
        s = stream_scales(st, absmax, get, ALPHA, FLOOR)
        if s is None:
            continue
        rescale_stream(st, s, absmax, get, put)
        streamed += 1
        members = set(st["tensors"])
        _rename_rescaled(proto.graph, [n for n in proto.graph.node if n.output and n.output[0] in members], taken)
    for t, (conv, readers) in read.items():
        r = absmax[t].astype(np.float64)
        top = float(r.max(initial=0.0))
        if top <= 0 or top < min_spread * float(np.median(r)):
            continue
        dense = [get(c.input[1]) for c in readers if _group(c) == 1]
        w = np.max([np.abs(d).max(axis=tuple(i for i in range(d.ndim) if i != 1)) for d in dense], axis=0)
        r = np.maximum(r, FLOOR * top)
        w = np.maximum(w, FLOOR * float(w.max(initial=0.0)) + 1e-30)
        s = np.power(r, ALPHA) / np.power(w, 1.0 - ALPHA)
        s = s / float(np.exp(np.mean(np.log(s))))  # geometric mean 1: magnitudes stay where they were
        w1 = get(conv.input[1])
        put(conv, 1, w1 / s.reshape([-1] + [1] * (w1.ndim - 1)))
        if len(conv.input) > 2 and conv.input[2]:
            put(conv, 2, get(conv.input[2]) / s)
        for c in readers:
            w2 = get(c.input[1])
            if _group(c) == 1:
                put(c, 1, w2 * s.reshape([1, -1] + [1] * (w2.ndim - 2)))
            else:
                mult = w2.shape[0] // s.size  # output channel o reads input channel o // multiplier
                put(c, 1, w2 * np.repeat(s, mult).reshape([-1] + [1] * (w2.ndim - 1)))
        done.append(conv.name or conv.output[0])
        _rename_rescaled(proto.graph, [conv, relu_of.get(conv.output[0])], taken)
    from edgec.compiler.qdq_graph import drop_unused_initializers

    drop_unused_initializers(proto.graph)
    info = {"equalized": len(done), "nodes": done, "alpha": ALPHA}
    if min_spread != MIN_SPREAD:
        info["min_spread"] = min_spread
    if streams:
        info["streams"] = streamed
    return model.with_proto(proto), info


def _fresh(base: str, taken: set[str]) -> str:
    """``{base}_equalized`` (``_2``, ``_3``... when taken), now taken."""
    name, i = f"{base}_equalized", 1
    while name in taken:
        i += 1
        name = f"{base}_equalized_{i}"
    taken.add(name)
    return name


def _rename_rescaled(g, nodes, taken: set[str]) -> None:
    """New names for the tensors (and nodes) whose values the scale changed.

    ``edgec debug layers`` pairs nodes and tensors of the quantized model with the float
    reference by name; these now hold ``x / s``, not the reference's values.
    """
    for node in nodes:
        if node is None:
            continue
        old = node.output[0]
        new = _fresh(old, taken)
        node.output[0] = new
        if node.name:
            node.name = f"{node.name}_equalized"  # node names are their own namespace (unique already)
        for n in g.node:
            for k, i in enumerate(n.input):
                if i == old:
                    n.input[k] = new
