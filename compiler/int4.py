"""INT4 weight-only, block-wise quantization of MatMul/Gemm weights (transformers).

Each weight ``W [K, N]`` (``x @ W``) is cut into blocks of ``group_size`` rows along the
input dimension ``K``; every block of every output column has its own scale (and, for
``asym``, a uint4 zero point):

- ``sym``: int4 in [-8, 7], ``scale = max|w| / 7``, zero point 0.
- ``asym``: uint4 in [0, 15], ``scale = (max - min) / 15``, zero point ``round(-min / scale)``.

Methods:

- ``auto`` (default): with calibration data, the calibrated recipe below; without it ``rtn``
  (NNCF's data-free default: asym, group 128, int8 embeddings and head).
- ``rtn``: round to nearest.
- ``gptq``: GPTQ (Frantar et al., 2022): rows are quantized in order and each one's error is
  spread over the rows not yet quantized through the inverse Hessian ``(X^T X)^-1`` of the
  layer's calibration inputs. Group scales come from the updated weights at the start of
  each group.
- ``awq``: AWQ-style activation-aware scaling (Lin et al., 2023): per input channel
  ``s = mean|x| ** a``, ``a`` searched on a grid for the smallest ``||X W - X W_q||``,
  ``W' = diag(s) W`` is quantized and ``1 / s`` is folded into the producer of ``X`` (RMSNorm
  weight) or applied by an inserted ``Mul``.

The calibrated recipe (``auto`` with ``--calib``): GPTQ with act-order (damping
`CALIBRATED_DAMP`) on block scales chosen for the smallest activation-weighted error (`edgec.compiler.int4_weights`), group
`CALIBRATED_GROUP` unless ``--group-size`` says otherwise, and the layers whose round-to-nearest
int4 would add the most output error (``tr(E^T H E) / tr(W^T H W)`` on the calibration inputs,
NNCF's Hessian-input-activation idea) kept int8 up to `INT8_SHARE` of the weights. The
manifest records the bits per weight this costs.

Embedding tables (``Gather`` on a constant) and the LM head (the MatMul producing a graph
output) stay INT8 (per-row / per-column symmetric) by default. The result is standard ONNX
(opset 21): ``DequantizeLinear(int4/uint4, block_size) -> MatMul``, which onnxruntime runs
(and its target lowers to ``MatMulNBits``) and OpenVINO converts to compressed weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.compiler.int4_weights import Int4Weight, awq_scale, gptq, hessian, int8_weight, output_error, rtn
from edgec.errors import CalibrationDataError, ConfigError

if TYPE_CHECKING:
    from edgec.calibration import CalibrationData
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.progress import Progress

INT4_OPSET = 21
MAX_ROWS = 4096  # calibration activation rows per weight for gptq/awq
GROUP_SIZES = (16, 32, 64, 128, 256)
MODES = ("sym", "asym")
METHODS = ("auto", "rtn", "gptq", "awq")
DATA_FREE_GROUP = 128  # rtn's default group (NNCF's data-free default)
# The calibrated recipe, chosen on minilm and deit_tiny (16 calibration samples, worst-sample cosine on
# 8 others; benchmarks/int4_quality.py): group 64 -> 32 took minilm 0.9836 -> 0.9895, damping 0.01 -> 0.1
# (16 sentences span little of a 1536-wide input) 0.9895 -> 0.9923; no int8 share 0.9822.
CALIBRATED_GROUP = 32
CALIBRATED_DAMP = 0.1
INT8_SHARE = 0.2  # share of the int4-eligible weights the calibrated recipe keeps int8, most sensitive first


def check_int4_options(group_size: int | None, mode: str, method: str) -> None:
    """`ConfigError` unless the options are ones this module implements (``group_size`` None: the method's)."""
    from edgec.compiler.config import one_of

    if group_size is not None and group_size not in GROUP_SIZES:
        raise ConfigError(f"--group-size {group_size}: expected {one_of(GROUP_SIZES)}")
    if mode not in MODES:
        raise ConfigError(f"--int4-mode {mode}: expected {one_of(MODES)}")
    if method not in METHODS:
        raise ConfigError(f"--int4-method {method}: expected {one_of(METHODS)}")


def most_sensitive(errors: dict[str, float], sizes: dict[str, int], share: float) -> tuple[str, ...]:
    """The layers of largest ``errors`` whose weights add up to at most ``share`` of all (``sizes``)."""
    budget, chosen = share * sum(sizes.values()), []
    for name in sorted(errors, key=lambda n: (-errors[n], n)):
        if sizes[name] <= budget:
            chosen.append(name)
            budget -= sizes[name]
    return tuple(chosen)


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
        calibration: Calibration data (required for gptq/awq; ``auto`` uses it when given), or None.
        group_size: Block size (None: `CALIBRATED_GROUP` for the calibrated recipe, else
            `DATA_FREE_GROUP`).
        mode: ``sym`` or ``asym``.
        method: ``auto``, ``rtn``, ``gptq`` or ``awq``.
        int8_embeddings: Keep embeddings and the LM head at int8 (else int4 like the rest; embeddings
            are never int4).
    """

    kind = "int4"
    fallback_kinds = ("int8", "keep-float")

    def __init__(self, model: "ModelHandle", calibration: "CalibrationData | None", group_size: int | None = None,
                 mode: str = "asym", method: str = "auto", int8_embeddings: bool = True):
        check_int4_options(group_size, mode, method)
        if method not in ("rtn", "auto") and calibration is None:
            raise CalibrationDataError(f"--int4-method {method} needs calibration data: pass --calib (e.g. a .txt "
                                       "of texts), or use --int4-method rtn")
        self.calibrated = method == "auto" and calibration is not None
        if method == "auto":
            method = "gptq" if self.calibrated else "rtn"
        if group_size is None:
            group_size = CALIBRATED_GROUP if self.calibrated else DATA_FREE_GROUP
        self.model, self.calibration = model, calibration
        self.reference = model
        self.group_size, self.mode, self.method = group_size, mode, method
        self.int8_embeddings = int8_embeddings
        self.passes: list[dict[str, Any]] = []
        self._cache: dict[str, Int4Weight] = {}
        self._awq: tuple[Any, dict[str, Any]] | None = None
        self._hessians: dict[str, np.ndarray] = {}
        self.weights, self.heads, self.embeddings = self._find()
        if not self.weights:
            raise ConfigError("--precision int4 found no MatMul/Gemm with a constant 2-D weight to quantize "
                              "(int4 is weight-only, for transformer projections)")
        self.sensitive: tuple[str, ...] = ()  # int8 by the calibrated recipe's sensitivity ranking

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
        q = cls(handle, calibration, opts.group_size, opts.mode, opts.method)
        recipe = "calibrated: gptq act-order" if q.calibrated else q.method
        progress.message(f"int4 weights ({recipe}, {opts.mode}, group {q.group_size})")
        q.prepare()
        return q

    def prepare(self) -> None:
        """Work done once, before the first `quantize`: AWQ's scales, or the calibrated recipe's
        int4 weights and its sensitivity ranking (so the manifest lists the pass)."""
        if self.method == "awq":
            self._awq_model()
        elif self.calibrated:
            self._int4_weights(self.model.proto)

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
        int4 = [(n, op) for n, op in self.layers()
                if not (self.int8_embeddings and n in self.heads) and n not in self.sensitive]
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
        sym = self.mode == "sym"
        errors, sizes = {}, {}
        for name in todo:
            trans = self.weights[name][1]
            w = numpy_helper.to_array(inits[nodes[name].input[1]]).astype(np.float32)
            w = w.T if trans else w
            block = _effective_block(w.shape[0], self.group_size)
            if block is None:
                continue
            if self.method != "gptq":
                self._cache[name] = rtn(w, block, sym)
                continue
            act = nodes[name].input[0]
            if act not in self._hessians:
                self._hessians[act] = hessian(xs[act])
            h = self._hessians[act]
            self._cache[name] = (gptq(w, xs[act], block, sym, act_order=True, clip=True, h=h, damp=CALIBRATED_DAMP)
                                 if self.calibrated else gptq(w, xs[act], block, sym, h=h))
            if self.calibrated and not (self.int8_embeddings and name in self.heads):
                errors[name], sizes[name] = output_error(w, rtn(w, block, sym).dequantize(), h), w.size
        if errors:
            self.sensitive = most_sensitive(errors, sizes, INT8_SHARE)
            self.passes.append({"name": "int4-sensitivity", "config": {
                "metric": "relative output error of round-to-nearest int4 on the calibration inputs",
                "int8_share": INT8_SHARE, "int8_layers": list(self.sensitive)}})
        self._hessians.clear()
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

        int8 = set(int8_nodes) | set(self.sensitive)
        sizes = {n: int(np.prod(inits[nodes[n].input[1]].dims)) for n in self.weights}
        elements, bits = sum(sizes.values()), 0
        for name, (_, trans) in self.weights.items():
            if name in keep_float:
                bits += 32 * sizes[name]
                continue
            node = nodes[name]
            w_name = node.input[1]
            w = numpy_helper.to_array(inits[w_name]).astype(np.float32)
            as_int8 = name in int8 or (self.int8_embeddings and name in self.heads) or name not in q4
            if as_int8:
                qi, s = int8_weight(w, 0 if trans else 1)
                bits += 8 * qi.size + 32 * s.size
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
            bits += qw.bits()
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
                   "keep_float": stats["float"], "lm_head_and_embeddings": "int8" if self.int8_embeddings else "int4",
                   "recipe": "calibrated" if self.calibrated else self.method,
                   # stored bits (values, float32 scales, zero points) per MatMul/Gemm weight element
                   "bits_per_weight": round(bits / max(elements, 1), 3),
                   "int8_share": round(sum(sizes[n] for n in stats["int8"] if n in sizes) / max(elements, 1), 3)}
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
