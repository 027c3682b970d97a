"""Error-aware rounding of int8 Conv/Gemm/MatMul weights on their per-channel grid (GPTQ).

Round to nearest makes each weight's own error smallest; GPTQ (`edgec.compiler.gptq`) makes
the layer's output error ``||x W - x W_q||`` on the calibration inputs smaller by letting the
rounding of one input row pull the rows not yet rounded. The scale grid is unchanged (the
symmetric per-output-channel scales every int8 target consumes): only which integer in
[-127, 127] (or the 7-bit [-63, 63]) each weight gets changes, so OpenVINO, TensorRT and TFLite read the same
scales.

The Hessian ``H = x^T x`` of a Conv is built from the im2col patches of its input (padding,
strides and dilations as the conv reads them), one per group, so a depthwise conv gets one
``kh*kw``-sized Hessian per channel; a Gemm/MatMul's from its input rows. The inputs are the
float model's (``source="float"``) or the Q/DQ model's own, dequantized (``"quant"``: ppocr-v4-det
intel-cpu cosine 0.9842 against 0.9873 from the float inputs, so the build uses ``float``).

Measured (benchmarks/weight_rounding.py, results/weight_rounding.json; 16 calibration, 16 evaluation
samples): the int8 weights' own error falls on every model tried (weights int8, activations float:
ppocr-v4-det cosine 0.9932 -> 0.9966, ddddocr-det 0.99972 -> 0.99999), but in the intel-cpu int8
builds the activations' error dominates: ppocr-v4-det 0.98725 -> 0.98727 (worst sample 0.9623 ->
0.9687), ddddocr-det 0.99881 -> 0.99907, efficientnet_b0 cosine up but one near-tie top-1 flip
(0.875 -> 0.8125), blazeface-back down (0.99750 -> 0.99735, worst 0.9805 -> 0.9763). So no target
defaults to it; the accuracy gate tries it as a cheap move, kept only where it measurably helps. Cost:
5 s of one core on ppocr-v4-det at 320x320 (Hessians 4.6 s, rounding 0.6 s), 11 s on ddddocr-det.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.compiler import gptq as _gptq
from edgec.compiler.overflow_fix import PAIR_GRIDS, fit_pairs, layer_grid
from edgec.compiler.qdq_graph import node_attribute

if TYPE_CHECKING:
    import onnx

MAX_SAMPLES = 16  # calibration samples the Hessians are built from
# Input rows (conv patches) per sample and layer: a fixed-seed subset beyond it. The largest K here is
# a few thousand, and 16 samples of 4096 rows span it; all of a 160x160 map cost seconds more per build.
MAX_ROWS = 4096
DAMP = 0.1  # ppocr-v4-det weights alone, 16 samples: 0.01 -> cosine 0.9959, 0.1 -> 0.9966, 0.3 -> 0.9957
ACT_ORDER = True


def settings() -> dict[str, Any]:
    """What the manifest records of this pass's fixed settings."""
    return {"damp": DAMP, "act_order": ACT_ORDER, "samples": MAX_SAMPLES, "rows_per_sample": MAX_ROWS}


def conv_patches(x: np.ndarray, node, kernel: tuple[int, int]) -> np.ndarray:
    """im2col of one image ``x [C, H, W]`` as Conv ``node`` reads it: ``[groups, C/groups*kh*kw, Ho*Wo]``."""
    c, hgt, wid = x.shape
    kh, kw = kernel
    sh, sw = node_attribute(node, "strides", [1, 1])
    dh, dw = node_attribute(node, "dilations", [1, 1])
    group = int(node_attribute(node, "group", 1))
    auto = node_attribute(node, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in ((hgt, kh, sh, dh), (wid, kw, sw, dw)):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            pads.append((total - small, small) if auto == "SAME_LOWER" else (small, total - small))
        (pt, pb), (pl, pr) = pads
    elif auto == "VALID":
        pt = pb = pl = pr = 0
    else:
        pt, pl, pb, pr = node_attribute(node, "pads", [0, 0, 0, 0])
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr)))
    ho = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((c, kh, kw, ho, wo), np.float32)
    for a in range(kh):
        for b in range(kw):
            cols[:, a, b] = xp[:, a * dh:a * dh + sh * (ho - 1) + 1:sh, b * dw:b * dw + sw * (wo - 1) + 1:sw]
    return cols.reshape(group, (c // group) * kh * kw, ho * wo)


def _rows(node, x: np.ndarray, wshape: tuple[int, ...]) -> np.ndarray:
    """The layer's input as ``[groups, K, rows]`` (conv patches, or Gemm/MatMul input rows)."""
    if node.op_type == "Conv":
        return np.concatenate([conv_patches(xi, node, wshape[2:]) for xi in x.reshape(-1, *x.shape[-3:])], axis=2)
    return x.reshape(-1, x.shape[-1]).T[None]  # Gemm without transA (`eligible`), MatMul


def eligible(node, w: np.ndarray) -> bool:
    """Whether ``node``'s weight ``w`` (its input 1) has a rounding this module improves."""
    if node.op_type == "Conv":
        return w.ndim == 4
    if node.op_type == "Gemm":
        return w.ndim == 2 and not node_attribute(node, "transA", 0)
    return node.op_type == "MatMul" and w.ndim == 2


def layer_hessians(proto: "onnx.ModelProto", layers: dict[str, tuple[Any, tuple[int, ...]]],
                   samples: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``{node: H [groups, K, K]}`` (float64, mean over rows) of each layer's input in ``proto``.

    Args:
        proto: The model whose activations are read (float, or Q/DQ).
        layers: ``{node name: (node in proto, weight shape)}``.
        samples: Calibration feeds.
    """
    from edgec.runtimes.onnx_graph import make_session, with_outputs

    graph_inputs = {i.name for i in proto.graph.input}
    acts = list(dict.fromkeys(n.input[0] for n, _ in layers.values() if n.input[0] not in graph_inputs))
    sess = make_session(with_outputs(proto, acts), optimize=False)
    feeds = [i.name for i in sess.get_inputs()]
    sums: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    for s in samples:
        vals = dict(zip(acts, sess.run(acts, {k: s[k] for k in feeds})))
        for name, (node, wshape) in layers.items():
            x = vals[node.input[0]] if node.input[0] in vals else s[node.input[0]]
            p = _rows(node, np.asarray(x, np.float32), wshape)
            if p.shape[2] > MAX_ROWS:
                pick = np.sort(np.random.default_rng(rows.get(name, 0)).choice(p.shape[2], MAX_ROWS, replace=False))
                p = np.ascontiguousarray(p[:, :, pick])
            # float32 products (float64 ones took 44 s on ppocr-v4-det's 16 samples), summed in float64
            h = (p @ p.transpose(0, 2, 1)).astype(np.float64)
            sums[name] = sums[name] + h if name in sums else h
            rows[name] = rows.get(name, 0) + p.shape[2]
    return {n: h / max(rows[n], 1) for n, h in sums.items()}


def gptq_int8(w: np.ndarray, scale: np.ndarray, h: np.ndarray, damp: float | None = None,
              act_order: bool = ACT_ORDER, qmax: int = 127) -> np.ndarray:
    """int8 ``[G, K, N]`` in ``[-qmax, qmax]`` of ``w [G, K, N]`` (``G`` groups of one conv, or one layer) on the
    fixed grid ``scale [G, N]`` (one per output column), by GPTQ under Hessians ``h [G, K, K]`` (round to nearest
    where one ``h`` cannot be inverted)."""
    s = np.asarray(scale, np.float32)
    p = _gptq.prepare(w, h, DAMP if damp is None else damp, act_order)
    if p.hinv is None:
        return np.clip(np.round(w / s[:, None, :]), -qmax, qmax).astype(np.int8)
    q = np.zeros(w.shape, np.int8)
    at = np.arange(w.shape[0])

    def quantize(rows: np.ndarray, w1: np.ndarray, i: int) -> np.ndarray:
        qi = np.clip(np.round(w1[:, i].astype(np.float32) / s), -qmax, qmax).astype(np.int8)
        q[at, rows] = qi
        return qi.astype(np.float32) * s

    _gptq.run(p, quantize)
    return q


def round_weight(node, w: np.ndarray, scale: np.ndarray, h: np.ndarray, qmax: int = 127) -> np.ndarray:
    """GPTQ int8 of ``node``'s weight ``w`` in its own layout (Conv ``[O, I/g, kh, kw]``, Gemm/MatMul
    ``[K, N]`` or transB ``[N, K]``), with ``scale`` one per output channel, ``h`` from `layer_hessians`, in
    ``[-qmax, qmax]`` (63: the 7-bit grid of `QuantScheme.overflow_fix`)."""
    if node.op_type == "Conv":
        groups, o = h.shape[0], w.shape[0]
        per = o // groups
        wg = w.reshape(groups, per, -1).transpose(0, 2, 1)  # [G, K, per]: every group at once (depthwise: per 1)
        q = gptq_int8(wg, scale.reshape(groups, per), h, qmax=qmax)
        return np.ascontiguousarray(q.transpose(0, 2, 1)).reshape(w.shape)
    trans = node.op_type == "Gemm" and node_attribute(node, "transB", 0)
    wk = w.T if trans else w
    q = gptq_int8(wk[None], scale[None], h, qmax=qmax)[0]
    return np.ascontiguousarray(q.T) if trans else q


def _dq_weight(quant: "onnx.ModelProto"):
    """``{node name: (node, DequantizeLinear, int8 initializer, scale)}`` for weights quantized per channel."""
    from onnx import numpy_helper

    from edgec.compiler.weight_axis import weight_axis

    inits = {t.name: t for t in quant.graph.initializer}
    producer = {o: n for n in quant.graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in quant.graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    out = {}
    for n in quant.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul") or len(n.input) < 2 or not n.name:
            continue
        dq = producer.get(n.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or dq.input[1] not in inits:
            continue
        qt = inits[dq.input[0]]
        if qt.data_type != 3 or readers.get(dq.input[0], 0) != 1:  # int8, read by this DQ alone
            continue
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
        axis = weight_axis(n, 1, len(qt.dims))
        if scale.ndim != 1 or axis is None or node_attribute(dq, "axis", 1) != axis:
            continue
        out[n.name] = (n, dq, qt, scale)
    return out


class WeightRounding:
    """GPTQ rounding applied to the int8 weights of Q/DQ models built from one float model.

    Hessians are measured once (on the first model, for ``source="quant"``) and the rounded
    integers are cached per layer and scale, so the accuracy gate's variants cost little.

    Args:
        model: The float model the Q/DQ models are quantized from (same node names and weights).
        samples: Calibration feeds (the first `MAX_SAMPLES` are used).
        source: ``float`` (the float model's layer inputs) or ``quant`` (the Q/DQ model's).
        overflow_fix: The quantizer's `QuantScheme.overflow_fix`: the layers it put on a pair-bounded grid
            (`overflow_fix.layer_grid`) keep that bound after rounding too.
    """

    def __init__(self, model, samples: list[dict[str, np.ndarray]], source: str = "float",
                 overflow_fix: str | None = None):
        self.model, self.samples, self.source = model, list(samples[:MAX_SAMPLES]), source
        self.overflow_fix = overflow_fix
        self._hessians: dict[str, np.ndarray] | None = None
        self._rounded: dict[str, np.ndarray] = {}

    def apply(self, quant) -> tuple[Any, dict[str, Any]]:
        """``quant`` (a ModelHandle) with its eligible weights GPTQ-rounded, and a summary for the manifest."""
        import onnx
        from onnx import numpy_helper

        proto = onnx.ModelProto()
        proto.CopyFrom(quant.proto)
        finits = {t.name: t for t in self.model.proto.graph.initializer}
        fnodes = {n.name: n for n in self.model.proto.graph.node if n.name}
        found = {}
        for name, (n, dq, qt, scale) in _dq_weight(proto).items():
            f = fnodes.get(name)
            if f is None or f.op_type != n.op_type or len(f.input) < 2 or f.input[1] not in finits:
                continue
            w = numpy_helper.to_array(finits[f.input[1]]).astype(np.float32)
            if tuple(w.shape) == tuple(qt.dims) and eligible(f, w):
                found[name] = (n, f, qt, scale, w)
        if not found:
            return quant, {"method": "gptq", "layers": 0}
        if self._hessians is None:
            src = self.model.proto if self.source == "float" else proto
            nodes = {m: (f if self.source == "float" else n, tuple(w.shape)) for m, (n, f, _, _, w) in found.items()}
            self._hessians = layer_hessians(src, nodes, self.samples)
        changed = total = 0
        for name, (n, f, qt, scale, w) in found.items():
            h = self._hessians.get(name)
            if h is None:
                continue
            old = numpy_helper.to_array(qt)
            # the quantizer's grid (7-bit or pair-bounded where `QuantScheme.overflow_fix` asked): its largest
            # integer, which round to nearest reaches in every channel's largest weight or pair
            qmax = int(np.abs(old.astype(np.int32)).max(initial=0))
            key = f"{name}:{qmax}:" + hashlib.sha1(scale.tobytes()).hexdigest()
            if key not in self._rounded:
                q = round_weight(f, w, scale, h, qmax)
                grid = layer_grid(f, finits, self.overflow_fix)
                self._rounded[key] = fit_pairs(q, f, 1, grid) if grid in PAIR_GRIDS else q
            q = self._rounded[key]
            changed += int((q != old).sum())
            total += q.size
            qt.CopyFrom(numpy_helper.from_array(q, qt.name))
        info = {"method": "gptq", "source": self.source, "layers": len(found), "samples": len(self.samples),
                "damp": DAMP, "act_order": ACT_ORDER, "changed_share": round(changed / max(total, 1), 4)}
        return quant.with_proto(proto), info
