"""INT4 weight-only, block-wise quantization of MatMul/Gemm weights (transformers).

Each weight ``W [K, N]`` (``x @ W``) is cut into blocks of ``group_size`` rows along the
input dimension ``K``; every block of every output column has its own scale (and, for
``asym``, a uint4 zero point):

- ``sym``: int4 in [-8, 7], ``scale = max|w| / 7``, zero point 0.
- ``asym``: uint4 in [0, 15], ``scale = (max - min) / 15``, zero point ``round(-min / scale)``.

Methods:

- ``rtn``: round to nearest.
- ``gptq``: GPTQ (Frantar et al., 2022): rows are quantized in order and each one's error is
  spread over the rows not yet quantized through the inverse Hessian ``(X^T X)^-1`` of the
  layer's calibration inputs. Group scales come from the updated weights at the start of
  each group.
- ``awq``: AWQ-style activation-aware scaling (Lin et al., 2023): per input channel
  ``s = mean|x| ** a``, ``a`` searched on a grid for the smallest ``||X W - X W_q||``,
  ``W' = diag(s) W`` is quantized and ``1 / s`` is folded into the producer of ``X`` (RMSNorm
  weight) or applied by an inserted ``Mul``.

Embedding tables (``Gather`` on a constant) and the LM head (the MatMul producing a graph
output) stay INT8 (per-row / per-column symmetric) by default. The result is standard ONNX
(opset 21): ``DequantizeLinear(int4/uint4, block_size) -> MatMul``, which onnxruntime runs
(and its target lowers to ``MatMulNBits``) and OpenVINO converts to compressed weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.errors import CalibrationDataError, ConfigError

if TYPE_CHECKING:
    from edgec.calibration import CalibrationData
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.progress import Progress

INT4_OPSET = 21
MAX_ROWS = 4096  # calibration activation rows per weight for gptq/awq
GPTQ_DAMP = 0.01
AWQ_GRID = tuple(i / 10 for i in range(11))
GROUP_SIZES = (16, 32, 64, 128, 256)
MODES = ("sym", "asym")
METHODS = ("rtn", "gptq", "awq")


def check_int4_options(group_size: int, mode: str, method: str) -> None:
    """`ConfigError` unless the options are ones this module implements."""
    from edgec.compiler.config import one_of

    if group_size not in GROUP_SIZES:
        raise ConfigError(f"--group-size {group_size}: expected {one_of(GROUP_SIZES)}")
    if mode not in MODES:
        raise ConfigError(f"--int4-mode {mode}: expected {one_of(MODES)}")
    if method not in METHODS:
        raise ConfigError(f"--int4-method {method}: expected {one_of(METHODS)}")


@dataclass
class Int4Weight:
    """One quantized weight.

    Attributes:
        q: Integer values ``[K, N]`` (int8 array holding int4 or uint4 values).
        scale: ``[K // block, N]`` float32.
        zero_point: ``[K // block, N]`` (asym) or None.
        block: Block size along K.
    """

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray | None
    block: int

    def dequantize(self) -> np.ndarray:
        k = self.q.shape[0]
        s = np.repeat(self.scale, self.block, axis=0)[:k]
        z = np.repeat(self.zero_point, self.block, axis=0)[:k] if self.zero_point is not None else 0
        return ((self.q.astype(np.float32) - z) * s).astype(np.float32)


def _block_params(w: np.ndarray, sym: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Scale (and zero point) of one block ``w [g, N]`` -> ``[N]`` each."""
    if sym:
        s = np.abs(w).max(0) / 7.0
        return np.where(s > 1e-12, s, 1.0).astype(np.float32), None
    lo, hi = np.minimum(w.min(0), 0.0), np.maximum(w.max(0), 0.0)
    s = (hi - lo) / 15.0
    s = np.where(s > 1e-12, s, 1.0).astype(np.float32)
    z = np.clip(np.round(-lo / s), 0, 15).astype(np.int8)
    return s, z


def _q(w: np.ndarray, s: np.ndarray, z: np.ndarray | None) -> np.ndarray:
    if z is None:
        return np.clip(np.round(w / s), -8, 7).astype(np.int8)
    return np.clip(np.round(w / s) + z, 0, 15).astype(np.int8)


def _dq(q: np.ndarray, s: np.ndarray, z: np.ndarray | None) -> np.ndarray:
    return (q.astype(np.float32) - (0 if z is None else z)) * s


def rtn(w: np.ndarray, block: int, sym: bool) -> Int4Weight:
    """Round-to-nearest block-wise int4 of ``w [K, N]``."""
    k, n = w.shape
    nb = -(-k // block)
    q = np.zeros((k, n), np.int8)
    scale = np.zeros((nb, n), np.float32)
    zp = None if sym else np.zeros((nb, n), np.int8)
    for b in range(nb):
        rows = slice(b * block, min((b + 1) * block, k))
        s, z = _block_params(w[rows], sym)
        scale[b] = s
        if zp is not None:
            zp[b] = z
        q[rows] = _q(w[rows], s, z)
    return Int4Weight(q, scale, zp, block)


def gptq(w: np.ndarray, x: np.ndarray, block: int, sym: bool) -> Int4Weight:
    """GPTQ of ``w [K, N]`` given calibration inputs ``x [rows, K]``."""
    k, n = w.shape
    w = w.astype(np.float64).copy()
    h = x.T.astype(np.float64) @ x.astype(np.float64) / max(len(x), 1)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[dead] = 0.0
    h += GPTQ_DAMP * np.mean(np.diag(h)) * np.eye(k)
    try:
        hinv = np.linalg.cholesky(np.linalg.inv(h)).T  # upper
    except np.linalg.LinAlgError:
        return rtn(w.astype(np.float32), block, sym)
    nb = -(-k // block)
    q = np.zeros((k, n), np.int8)
    scale = np.zeros((nb, n), np.float32)
    zp = None if sym else np.zeros((nb, n), np.int8)
    s = z = None
    for i in range(k):
        if i % block == 0:
            b = i // block
            s, z = _block_params(w[i:i + block].astype(np.float32), sym)
            scale[b] = s
            if zp is not None:
                zp[b] = z
        qi = _q(w[i].astype(np.float32), s, z)
        q[i] = qi
        err = (w[i] - _dq(qi, s, z)) / hinv[i, i]
        w[i + 1:] -= np.outer(hinv[i, i + 1:], err)
    return Int4Weight(q, scale, zp, block)


def awq_scale(ws: list[np.ndarray], x: np.ndarray, block: int, sym: bool) -> tuple[np.ndarray, float]:
    """Per-input-channel scale ``s`` (and the chosen exponent) for weights sharing input ``x``."""
    xmean = np.abs(x).mean(0).astype(np.float64)
    xmean = np.where(xmean > 0, xmean, xmean[xmean > 0].min() if (xmean > 0).any() else 1.0)
    ref = [x @ w for w in ws]
    best = (np.inf, np.ones_like(xmean, dtype=np.float32), 0.0)
    for a in AWQ_GRID:
        s = np.power(xmean, a)
        s = (s / np.sqrt(s.max() * s.min())).astype(np.float32)
        err = 0.0
        for w, r in zip(ws, ref):
            wq = rtn(w * s[:, None], block, sym).dequantize() / s[:, None]
            err += float(((x @ wq - r) ** 2).mean())
        if err < best[0]:
            best = (err, s, a)
    return best[1], best[2]


def int8_weight(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 of ``w`` with one scale per index of ``axis``."""
    red = tuple(i for i in range(w.ndim) if i != axis)
    s = (np.abs(w).max(axis=red) / 127.0).astype(np.float32)
    s = np.where(s > 1e-12, s, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    return np.clip(np.round(w / s.reshape(shape)), -127, 127).astype(np.int8), s


def _effective_block(k: int, block: int) -> int | None:
    if k % block == 0:
        return block
    for b in (128, 64, 32, 16):
        if b < block and k % b == 0:
            return b
    return None


class Int4Quantizer:
    """Quantizes a float model's MatMul weights to int4 (with the gate's int8/float fallbacks).

    Args:
        model: Float ONNX model.
        calibration: Calibration data (required for gptq/awq), or None.
        group_size: Block size.
        mode: ``sym`` or ``asym``.
        method: ``rtn``, ``gptq`` or ``awq``.
        int8_embeddings: Keep embeddings and the LM head at int8 (else int4 like the rest; embeddings
            are never int4).
    """

    kind = "int4"
    fallback_kinds = ("int8", "keep-float")

    def __init__(self, model: "ModelHandle", calibration: "CalibrationData | None", group_size: int = 128,
                 mode: str = "asym", method: str = "rtn", int8_embeddings: bool = True):
        check_int4_options(group_size, mode, method)
        if method != "rtn" and calibration is None:
            raise CalibrationDataError(f"--int4-method {method} needs calibration data: pass --calib (e.g. a .txt "
                                       "of texts), or use --int4-method rtn")
        self.model, self.calibration = model, calibration
        self.reference = model
        self.group_size, self.mode, self.method = group_size, mode, method
        self.int8_embeddings = int8_embeddings
        self.passes: list[dict[str, Any]] = []
        self._cache: dict[str, Int4Weight] = {}
        self._awq: tuple[Any, dict[str, Any]] | None = None
        self.weights, self.heads, self.embeddings = self._find()
        if not self.weights:
            raise ConfigError("--precision int4 found no MatMul/Gemm with a constant 2-D weight to quantize "
                              "(int4 is weight-only, for transformer projections)")

    @classmethod
    def create(cls, config: "BuildConfig", handle: "ModelHandle", progress: "Progress") -> "Int4Quantizer":
        """From the build config: loads ``--calib`` when given."""
        calibration = None
        if config.calib:
            from edgec.calibration import load_calibration_data

            progress.message(f"loading calibration data from {config.calib}")
            calibration = load_calibration_data(config.calib, handle.inputs, max_samples=config.calib_samples,
                                                tokenizer_dir=handle.tokenizer_dir, preprocess=config.preprocess,
                                                seed=config.seed)
        opts = config.int4
        progress.message(f"int4 weights ({opts.method}, {opts.mode}, group {opts.group_size})")
        q = cls(handle, calibration, opts.group_size, opts.mode, opts.method)
        if q.method == "awq":
            q._awq_model()  # scales are searched once, now, so the manifest lists the pass
        return q

    # -- what gets quantized -------------------------------------------------------------
    def _find(self) -> tuple[dict[str, tuple[str, bool]], set[str], dict[str, str]]:
        """``{node: (weight initializer, transposed)}``, LM head nodes, ``{gather node: table}``."""
        g = self.model.proto.graph
        inits = {t.name: t for t in g.initializer}
        outputs = {o.name for o in g.output}
        weights, heads, embeddings = {}, set(), {}
        for n in g.node:
            if n.op_type == "MatMul" and n.input[1] in inits and n.input[0] not in inits \
                    and len(inits[n.input[1]].dims) == 2:
                weights[n.name] = (n.input[1], False)
            elif n.op_type == "Gemm" and len(n.input) > 1 and n.input[1] in inits and len(inits[n.input[1]].dims) == 2:
                tb = next((a.i for a in n.attribute if a.name == "transB"), 0)
                ta = next((a.i for a in n.attribute if a.name == "transA"), 0)
                if not ta:
                    weights[n.name] = (n.input[1], bool(tb))
            elif n.op_type == "Gather" and n.input[0] in inits and len(inits[n.input[0]].dims) == 2:
                embeddings[n.name] = n.input[0]
            else:
                continue
            if n.op_type != "Gather" and n.output[0] in outputs:
                heads.add(n.name)
        return weights, heads, embeddings

    def layers(self) -> list[tuple[str, str]]:
        ops = {n.name: n.op_type for n in self.model.proto.graph.node}
        return [(n, ops[n]) for n in self.weights]

    def candidates(self, quant: "ModelHandle", kinds: tuple[str, ...]) -> list:
        from edgec.compiler.sensitivity import Fallback

        out = []
        int4 = [(n, op) for n, op in self.layers() if not (self.int8_embeddings and n in self.heads)]
        if "int8" in kinds:
            out += [Fallback("int8", n, op=op) for n, op in int4]
        if "keep-float" in kinds:
            out += [Fallback("keep-float", n, op=op) for n, op in self.layers()]
        return out

    # -- calibration activations -----------------------------------------------------------
    def _activations(self, names: list[str]) -> dict[str, np.ndarray]:
        from edgec.runtimes.onnx_graph import make_session, with_outputs

        sess = make_session(with_outputs(self.model.proto, names), optimize=False)
        feeds_names = [i.name for i in sess.get_inputs()]
        rows: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for s in self.calibration.samples:
            feed = {k: s[k] for k in feeds_names}
            vals = sess.run(names, feed)
            mask = s.get("attention_mask")
            for n, v in zip(names, vals):
                v = np.asarray(v, np.float32)
                r = v.reshape(-1, v.shape[-1])
                if mask is not None and v.ndim == 3 and v.shape[:2] == np.asarray(mask).shape:
                    r = r[np.asarray(mask).reshape(-1) > 0]
                rows[n].append(r)
        out = {}
        rng = np.random.default_rng(0)
        for n, rs in rows.items():
            x = np.concatenate(rs, 0)
            if len(x) > MAX_ROWS:
                x = x[np.sort(rng.choice(len(x), MAX_ROWS, replace=False))]
            out[n] = x
        return out

    def _int4_weights(self, proto) -> dict[str, Int4Weight]:
        """Quantize every int4-eligible weight once (cached across gate attempts)."""
        from onnx import numpy_helper

        inits = {t.name: t for t in proto.graph.initializer}
        nodes = {n.name: n for n in proto.graph.node}
        todo = [n for n in self.weights if n not in self._cache]
        xs = {}
        if self.method == "gptq" and todo:
            xs = self._activations(list(dict.fromkeys(nodes[n].input[0] for n in todo)))
        for name in todo:
            trans = self.weights[name][1]
            w = numpy_helper.to_array(inits[nodes[name].input[1]]).astype(np.float32)
            w = w.T if trans else w
            block = _effective_block(w.shape[0], self.group_size)
            if block is None:
                continue
            if self.method == "gptq":
                self._cache[name] = gptq(w, xs[nodes[name].input[0]], block, self.mode == "sym")
            else:
                self._cache[name] = rtn(w, block, self.mode == "sym")
        return self._cache

    def _awq_model(self) -> "ModelHandle":
        """The float model with AWQ scales applied (function unchanged), computed once."""
        if self._awq is None:
            from edgec.compiler.smoothquant import apply_channel_scales, weight_kn

            g = self.model.proto.graph
            inits = {t.name: t for t in g.initializer}
            nodes = {n.name: n for n in g.node}
            groups: dict[str, list[str]] = {}
            for n in self.weights:
                if not (self.int8_embeddings and n in self.heads):
                    groups.setdefault(nodes[n].input[0], []).append(n)
            xs = self._activations(list(groups))
            scales, chosen = {}, {}
            for act, members in groups.items():
                ws = [weight_kn(nodes[m], inits) for m in members]
                block = _effective_block(ws[0].shape[0], self.group_size)
                if block is None:
                    continue
                s, a = awq_scale(ws, xs[act], block, self.mode == "sym")
                scales[act], chosen[act] = s, a
            model, info = apply_channel_scales(self.model, scales)
            info["exponents"] = chosen
            self._awq = (model, info)
            self.passes.append({"name": "awq", "config": {"groups": len(scales), "folded": info["folded"],
                                                          "inserted": info["inserted"]}})
        return self._awq[0]

    # -- writing the model ------------------------------------------------------------------
    def quantize(self, keep_float: tuple[str, ...] = (), overrides: dict[str, str] | None = None,
                 int8_nodes: tuple[str, ...] = ()) -> tuple["ModelHandle", dict[str, Any]]:
        """The int4 ONNX (opset 21 DequantizeLinear) and a summary for the manifest."""
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        base = self._awq_model() if self.method == "awq" else self.model
        unknown = sorted(set(keep_float) - {n.name for n in base.proto.graph.node})
        if unknown:
            raise ConfigError(f"--keep-float names unknown node(s) {unknown}; see `edgec inspect MODEL` for node names")
        proto = onnx.ModelProto()
        proto.CopyFrom(base.proto)
        _set_opset(proto, INT4_OPSET)
        g = proto.graph
        inits = {t.name: t for t in g.initializer}
        q4 = self._int4_weights(proto)
        nodes = {n.name: n for n in g.node}
        new_inits, dq_nodes = [], []
        stats = {"int4": [], "int8": [], "float": sorted(keep_float)}

        def add_dq(prefix: str, q_tensor, scale: np.ndarray, zp_tensor, axis: int, block: int | None) -> str:
            qn, sn = f"{prefix}_q", f"{prefix}_scale"
            q_tensor.name = qn
            new_inits.extend([q_tensor, numpy_helper.from_array(scale.astype(np.float32), sn)])
            ins = [qn, sn]
            if zp_tensor is not None:
                zp_tensor.name = f"{prefix}_zero_point"
                new_inits.append(zp_tensor)
                ins.append(zp_tensor.name)
            kw = {"axis": axis} | ({"block_size": block} if block else {})
            out = f"{prefix}_dequantized"
            dq_nodes.append(helper.make_node("DequantizeLinear", ins, [out], name=f"{prefix}_DequantizeLinear", **kw))
            return out

        for name, (_, trans) in self.weights.items():
            if name in keep_float:
                continue
            node = nodes[name]
            w_name = node.input[1]
            w = numpy_helper.to_array(inits[w_name]).astype(np.float32)
            as_int8 = name in int8_nodes or (self.int8_embeddings and name in self.heads) or name not in q4
            if as_int8:
                qi, s = int8_weight(w, 0 if trans else 1)
                node.input[1] = add_dq(w_name + "_" + name, numpy_helper.from_array(qi), s, None, 0 if trans else 1,
                                       None)
                stats["int8"].append(name)
                continue
            qw = q4[name]
            q = qw.q.T if trans else qw.q
            sc = qw.scale.T if trans else qw.scale
            axis = 1 if trans else 0
            dtype = TensorProto.INT4 if qw.zero_point is None else TensorProto.UINT4
            qt = _int4_tensor("q", dtype, q)
            zt = None
            if qw.zero_point is not None:
                z = qw.zero_point.T if trans else qw.zero_point
                zt = _int4_tensor("z", TensorProto.UINT4, z)
            node.input[1] = add_dq(w_name + "_" + name, qt, sc, zt, axis, qw.block)
            stats["int4"].append(name)
        for name, table in self.embeddings.items():
            if name in keep_float:
                continue
            w = numpy_helper.to_array(inits[table]).astype(np.float32)
            qi, s = int8_weight(w, 0)
            nodes[name].input[0] = add_dq(table + "_" + name, numpy_helper.from_array(qi), s, None, 0, None)
            stats["int8"].append(name)
        nodes_list = list(g.node)
        del g.node[:]
        g.node.extend(dq_nodes + nodes_list)
        g.initializer.extend(new_inits)
        used = {i for n in g.node for i in n.input}
        keep = [t for t in g.initializer if t.name in used]
        del g.initializer[:]
        g.initializer.extend(keep)
        del g.value_info[:]
        summary = {"method": self.method, "mode": self.mode, "group_size": self.group_size,
                   "int4_nodes": len(stats["int4"]), "int8_nodes": sorted(stats["int8"]),
                   "keep_float": stats["float"], "lm_head_and_embeddings": "int8" if self.int8_embeddings else "int4"}
        return self.model.with_proto(proto), summary


def _int4_tensor(name: str, dtype: int, values: np.ndarray):
    """An INT4/UINT4 TensorProto from values in an int8 array, packed two per byte (low nibble first).

    Packing with NumPy keeps large models fast and small: a list of Python ints per element
    (``make_tensor(..., values.tolist())``) costs gigabytes for a 100M-weight model.
    """
    from onnx import helper

    flat = values.reshape(-1).astype(np.uint8) & 0x0F
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.uint8)])
    packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)
    return helper.make_tensor(name, dtype, list(values.shape), packed.tobytes(), raw=True)


def _set_opset(proto, version: int) -> None:
    """Raise the default-domain opset to ``version`` (ops used by exports keep their semantics)."""
    for op in proto.opset_import:
        if op.domain in ("", "ai.onnx") and op.version < version:
            op.version = version
    if proto.ir_version < 10:
        proto.ir_version = 10
