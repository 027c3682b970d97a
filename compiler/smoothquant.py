"""SmoothQuant: move activation outliers into the weights before int8 quantization.

For a MatMul ``Y = X @ W`` (``W`` a constant ``[K, N]``), per input channel ``j``

    s_j = max|X_j| ** alpha / max|W_j,:| ** (1 - alpha)
    Y = (X / s) @ (diag(s) W)

(Xiao et al., 2023). The float function is unchanged; the activation ``X / s`` has flatter
channels, so its per-tensor int8 grid loses less. MatMuls reading the same activation
(Q/K/V projections) share one ``s`` (max over their weights). ``1 / s`` is folded into the
producer when that is a ``Mul`` by a constant vector (RMSNorm's weight) or a
``LayerNormalization`` whose output only feeds these MatMuls; otherwise a ``Mul`` node is
inserted in front of the MatMuls (it stays float; OpenVINO and onnxruntime fuse it cheaply).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.errors import ConfigError

if TYPE_CHECKING:
    from edgec.compiler.model import ModelHandle

MAX_SAMPLES = 64
SCALE_CLIP = (1e-4, 1e4)


def _trans_b(n) -> bool:
    return n.op_type == "Gemm" and any(a.name == "transB" and a.i for a in n.attribute)


def _groups(proto) -> dict[str, list]:
    """Activation tensor -> MatMul/Gemm nodes reading it with a 2-D constant weight."""
    inits = {t.name: t for t in proto.graph.initializer}
    groups: dict[str, list] = {}
    for n in proto.graph.node:
        if n.op_type not in ("MatMul", "Gemm") or len(n.input) < 2 or n.input[0] in inits or n.input[1] not in inits:
            continue
        if len(inits[n.input[1]].dims) != 2:
            continue
        if n.op_type == "Gemm" and any(a.name == "transA" and a.i for a in n.attribute):
            continue
        groups.setdefault(n.input[0], []).append(n)
    return groups


def weight_kn(node, inits) -> np.ndarray:
    """The node's constant weight as ``[K, N]`` (``x @ W``)."""
    from onnx import numpy_helper

    w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    return w.T if _trans_b(node) else w


def channel_absmax(proto, samples, tensors: list[str]) -> dict[str, np.ndarray]:
    """Per-last-axis-channel max |x| of ``tensors`` over ``samples`` (float model, onnxruntime)."""
    from edgec.runtimes.onnx_graph import make_session, with_outputs

    sess = make_session(with_outputs(proto, tensors), optimize=False)
    inputs = [i.name for i in sess.get_inputs()]
    out: dict[str, np.ndarray] = {}
    for s in samples[:MAX_SAMPLES]:
        vals = sess.run(tensors, {n: s[n] for n in inputs})
        for t, v in zip(tensors, vals):
            m = np.abs(np.asarray(v, dtype=np.float32)).reshape(-1, v.shape[-1]).max(0)
            out[t] = m if t not in out else np.maximum(out[t], m)
    return out


def smooth(model: "ModelHandle", samples: list[dict[str, np.ndarray]], alpha: float) -> tuple["ModelHandle", dict[str, Any]]:
    """The smoothed float model (same function) and a summary for the manifest.

    Args:
        model: Float ONNX model with static shapes.
        samples: Calibration feeds (model convention).
        alpha: Migration strength in [0, 1] (0.5 is the paper's default; higher moves more
            of the activation range into the weights).
    """

    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--smoothquant {alpha}: alpha must be in [0, 1] (0.5 is typical)")
    groups = _groups(model.proto)
    if not groups:
        return model, {"alpha": alpha, "smoothed": 0, "folded": 0, "inserted": 0}
    inits = {t.name: t for t in model.proto.graph.initializer}
    absmax = channel_absmax(model.proto, samples, list(groups))
    scales = {}
    for act, mms in groups.items():
        xmax = absmax.get(act)
        ws = [weight_kn(m, inits) for m in mms]
        if xmax is None or any(w.shape[0] != xmax.shape[0] for w in ws):
            continue
        wmax = np.max([np.abs(w).max(1) for w in ws], axis=0)
        s = np.where((xmax > 0) & (wmax > 0),
                     np.power(np.maximum(xmax, 1e-12), alpha) / np.power(np.maximum(wmax, 1e-12), 1.0 - alpha), 1.0)
        scales[act] = np.clip(s, *SCALE_CLIP).astype(np.float32)
    out, info = apply_channel_scales(model, scales)
    return out, {"alpha": alpha, **info}


def apply_channel_scales(model: "ModelHandle", scales: dict[str, np.ndarray]) -> tuple["ModelHandle", dict[str, Any]]:
    """``X @ W`` -> ``(X / s) @ (diag(s) W)`` for the MatMuls reading each activation in ``scales``.

    ``1 / s`` is folded into the activation's producer where possible, else applied by an
    inserted ``Mul``. The float function is unchanged.
    """
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    groups = _groups(proto)
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}
    used_init_names = {t.name for t in g.initializer}
    new_nodes_before: dict[int, Any] = {}
    folded = inserted = 0

    def new_init(base: str, arr: np.ndarray) -> str:
        name, k = base, 1
        while name in used_init_names:
            k += 1
            name = f"{base}_{k}"
        used_init_names.add(name)
        g.initializer.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    for act, s in scales.items():
        mms = groups.get(act, [])
        if not mms:
            continue
        for m in mms:
            w = weight_kn(m, inits) * s[:, None]
            m.input[1] = new_init(f"{m.input[1]}_smoothed", w.T if _trans_b(m) else w)
        ids = {m.output[0] for m in mms}
        p = producer.get(act)
        only_group = act not in graph_outputs and all(c.output[0] in ids for c in consumers.get(act, []))
        if only_group and p is not None and p.op_type == "Reshape" and _keeps_last(p, inits, s.shape[0]) \
                and len(consumers.get(p.input[0], [])) == 1 and p.input[0] not in graph_outputs:
            p = producer.get(p.input[0])  # fold through: the Reshape only merges leading axes
        if only_group and p is not None and _fold(p, s, inits, new_init):
            folded += 1
            continue
        inv = new_init(f"{act}_smooth_inv", 1.0 / s)
        out = f"{act}_smoothed"
        mul = helper.make_node("Mul", [act, inv], [out], name=f"{act}_SmoothQuant")
        for m in mms:
            m.input[0] = out
        first = min(i for i, n in enumerate(g.node) if n.output and n.output[0] in ids)
        new_nodes_before.setdefault(first, []).append(mul)
        inserted += 1
    if new_nodes_before:
        nodes = list(g.node)
        ordered = []
        for i, n in enumerate(nodes):
            ordered.extend(new_nodes_before.get(i, []))
            ordered.append(n)
        del g.node[:]
        g.node.extend(ordered)
    _drop_unused(g)
    return model.with_proto(proto), {"smoothed": folded + inserted, "folded": folded, "inserted": inserted}


def _keeps_last(reshape, inits, k: int) -> bool:
    from onnx import numpy_helper

    shape = inits.get(reshape.input[1]) if len(reshape.input) > 1 else None
    return shape is not None and int(numpy_helper.to_array(shape).reshape(-1)[-1]) == k


def _fold(p, s: np.ndarray, inits, new_init) -> bool:
    """Divide the producer's per-channel constant(s) by ``s``; False when it has none."""
    from onnx import numpy_helper

    if p.op_type == "Mul":
        for k, name in enumerate(p.input):
            if name in inits and tuple(inits[name].dims)[-1:] == (s.shape[0],) and \
                    int(np.prod(inits[name].dims)) == s.shape[0] and p.input[1 - k] not in inits:
                c = numpy_helper.to_array(inits[name]).astype(np.float32)
                p.input[k] = new_init(f"{name}_smoothed", c / s.reshape(c.shape))
                return True
        return False
    if p.op_type == "LayerNormalization" and len(p.input) >= 2 and all(i in inits for i in p.input[1:] if i):
        for k in range(1, len(p.input)):
            if not p.input[k]:
                continue
            c = numpy_helper.to_array(inits[p.input[k]]).astype(np.float32)
            if c.shape != s.shape:
                return False
        for k in range(1, len(p.input)):
            if p.input[k]:
                c = numpy_helper.to_array(inits[p.input[k]]).astype(np.float32)
                p.input[k] = new_init(f"{p.input[k]}_smoothed", c / s)
        return True
    return False


def _drop_unused(g) -> None:
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
