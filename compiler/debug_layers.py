"""``edgec debug layers``: where does a quantized model lose accuracy?

Every int8/int4 bundle carries the ONNX its target lowered (``reference/quantized.onnx``,
Q/DQ or int4 DequantizeLinear) next to the float reference. Both run in onnxruntime with
every intermediate tensor exposed; each compute node's output in the quantized model is
compared with the same node's output in the float model over the data:

- ``sqnr_db``: signal-to-quantization-noise ratio of the node's output (cumulative: it
  includes the error of everything upstream); ``cosine``; ``max_abs_err``.
- ``input_sqnr_db``: the SQNR of the node's activation inputs as the node reads them (after
  their DequantizeLinear), their relative noise powers summed.
- ``added_db``: ``input_sqnr_db - sqnr_db``; ``added_noise``: ``1/SQNR_out - 1/SQNR_in``
  (linear), the noise power relative to the signal that the node itself adds. Rows are sorted
  by ``added_noise``, worst first: a layer whose input is fine and whose output is not is the
  culprit, while layers downstream of it only inherit its error (and a layer adding many dB
  to an almost exact tensor, such as an int8 embedding at 45 dB, adds little noise).

``bisect`` names the first node in graph order whose output SQNR falls below the threshold.
``runtime="target"`` reads the same tensors through the bundle's own runner
(`Runner.intermediate_tensors`: the OpenVINO IR on the CPU plugin for intel-cpu, the
artifact ONNX for onnxruntime) instead of the reference onnxruntime run (what the device
really computes; tensors the runtime fused away are reported as missing).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import BundleError, ConfigError
from edgec.runtimes.registry import REFERENCE_RUNNER

SQNR_CAP = 120.0  # dB; exact tensors count as this for the added-error arithmetic
DEFAULT_THRESHOLD_DB = 20.0
SKIP_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "Constant", "Shape"})


def _unquantized(name: str, producer: dict) -> str:
    """The tensor a chain of QuantizeLinear/DequantizeLinear ending in ``name`` started from."""
    p = producer.get(name)
    while p is not None and p.op_type in ("QuantizeLinear", "DequantizeLinear"):
        name = p.input[0]
        p = producer.get(name)
    return name


def _cap(x: float) -> float:
    if math.isnan(x):  # a NaN or Inf in the tensor: the worst, never a small error
        return -SQNR_CAP
    return SQNR_CAP if x == math.inf else max(min(x, SQNR_CAP), -SQNR_CAP)


def compare_layers(float_proto, quant_proto, samples: list[dict[str, np.ndarray]], *,
                   quant_runner=None) -> list[dict[str, Any]]:
    """Per-node error rows of ``quant_proto`` against ``float_proto`` (graph order).

    Args:
        float_proto: The float reference ONNX.
        quant_proto: The quantized ONNX (node names shared with the float model).
        samples: Feeds (model convention).
        quant_runner: Optional ``fn(tensor_names, feeds) -> {name: array}`` that reads the
            quantized model's tensors from another runtime (the target's); names it cannot
            produce are reported as missing.
    """
    from edgec.runtimes.metrics import ErrorStats
    from edgec.runtimes.onnx_graph import float_tensors, make_session, with_outputs

    fnodes = {n.name: n for n in float_proto.graph.node if n.name}
    f_float = float_tensors(float_proto)
    q_float = float_tensors(quant_proto)
    producer_q = {o: n for n in quant_proto.graph.node for o in n.output}
    q_inits = {t.name for t in quant_proto.graph.initializer}
    pairs: list[dict[str, Any]] = []  # one per compared node
    rescaled: set[tuple[str, str]] = set()
    for n in quant_proto.graph.node:
        if n.op_type in SKIP_OPS or n.name not in fnodes:
            continue
        fn = fnodes[n.name]
        outs = [(qo, fo) for qo, fo in zip(n.output, fn.output) if qo in q_float and fo in f_float]
        if not outs:
            continue
        ins = []
        for k, (qi, fi) in enumerate(zip(n.input, fn.input)):
            if not qi or qi in q_inits or fi not in f_float:
                continue
            p = producer_q.get(qi)
            if p is not None and p.op_type == "DequantizeLinear" and p.input[0] in q_inits:
                continue  # a weight
            if qi != fi and _unquantized(qi, producer_q) != fi:
                rescaled.add((qi, fi))  # equalized or depthwise-scaled: x / s per channel, not the float x
            ins.append((qi, fi))
        reads_dq = any(producer_q.get(i) is not None and producer_q[i].op_type == "DequantizeLinear" for i in n.input)
        pairs.append({"node": n.name, "op": n.op_type, "out": outs[0], "ins": ins, "quantized": reads_dq
                      or n.domain == "com.microsoft"})
    if not pairs:
        raise ConfigError("the quantized model shares no node names with the float model; nothing to compare")
    q_names = list(dict.fromkeys([p["out"][0] for p in pairs] + [q for p in pairs for q, _ in p["ins"]]))
    f_names = list(dict.fromkeys([p["out"][1] for p in pairs] + [f for p in pairs for _, f in p["ins"]]))
    f_sess = make_session(with_outputs(float_proto, f_names), optimize=False)
    f_inputs = [i.name for i in f_sess.get_inputs()]
    q_sess = q_inputs = None
    if quant_runner is None:
        q_sess = make_session(with_outputs(quant_proto, q_names), optimize=False)
        q_inputs = [i.name for i in q_sess.get_inputs()]
    stats: dict[tuple[str, str], ErrorStats] = {}
    missing: set[str] = set()
    for s in samples:
        fv = dict(zip(f_names, f_sess.run(f_names, {k: s[k] for k in f_inputs})))
        if q_sess is not None:
            qv = dict(zip(q_names, q_sess.run(q_names, {k: s[k] for k in q_inputs})))
        else:
            qv = quant_runner(q_names, s)
        for qn, fnm in {*(p["out"] for p in pairs), *(x for p in pairs for x in p["ins"])}:
            if qn not in qv:
                missing.add(qn)
                continue
            if np.size(fv[fnm]) == np.size(qv[qn]):
                kind = _ChannelAlignedStats if (qn, fnm) in rescaled else ErrorStats
                stats.setdefault((qn, fnm), kind()).add(fv[fnm], qv[qn])
    rows = []
    for p in pairs:
        st = stats.get(p["out"])
        if st is None:
            continue
        # Noise of several inputs adds up (a product or sum of two noisy tensors carries both).
        in_noise = sum(_noise(stats[x].sqnr_db) for x in p["ins"] if x in stats) or _noise(SQNR_CAP)
        in_sqnr = _cap(-10.0 * math.log10(in_noise))
        out_sqnr = st.sqnr_db
        rows.append({"node": p["node"], "op": p["op"], "output": p["out"][1], "quantized": p["quantized"],
                     "sqnr_db": _round(_cap(out_sqnr)), "cosine": st.cosine, "max_abs_err": st.max_abs_err,
                     "input_sqnr_db": _round(in_sqnr), "added_db": _round(in_sqnr - _cap(out_sqnr)),
                     "added_noise": _noise(out_sqnr) - _noise(in_sqnr)})
    return rows


class _ChannelAlignedStats:
    """SQNR of a tensor the quantized model holds rescaled per channel (``x / s``, axis 1).

    Each channel of the quantized tensor is first fitted to the float one by least squares
    (which recovers ``s``); what the fit leaves is the quantization noise.
    """

    def __init__(self) -> None:
        self.ff = self.fq = self.qq = 0.0

    def add(self, reference, got) -> "_ChannelAlignedStats":
        f = np.asarray(reference, np.float64)
        q = np.asarray(got, np.float64).reshape(f.shape)
        red = tuple(i for i in range(f.ndim) if i != min(1, f.ndim - 1))
        self.ff, self.fq, self.qq = (self.ff + (f * f).sum(red), self.fq + (f * q).sum(red),
                                     self.qq + (q * q).sum(red))
        return self

    @property
    def sqnr_db(self) -> float:
        ff, fq, qq = (np.asarray(v, np.float64) for v in (self.ff, self.fq, self.qq))
        noise = float(np.sum(ff - np.where(qq > 0, fq * fq / np.maximum(qq, 1e-300), 0.0)))
        sig = float(np.sum(ff))
        if noise <= 0.0:
            return math.inf
        return -math.inf if sig == 0.0 else 10.0 * math.log10(sig / noise)


def _noise(sqnr_db: float) -> float:
    """Noise power relative to the signal (1 / SQNR, linear)."""
    return 10.0 ** (-_cap(sqnr_db) / 10.0)


def _round(x: float) -> float:
    return x if not math.isfinite(x) else round(x, 3)


def rank_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Worst first: most relative noise power added by the node (1/SQNR out - 1/SQNR in), then lowest SQNR."""
    return sorted(rows, key=lambda r: (-r["added_noise"], _cap(r["sqnr_db"])))


def bisect(rows: list[dict[str, Any]], threshold_db: float) -> dict[str, Any] | None:
    """The first row in graph order whose output SQNR is below ``threshold_db``."""
    return next((r for r in rows if r["sqnr_db"] < threshold_db), None)


def debug_bundle(bundle: Path, data: str, *, threshold_db: float = DEFAULT_THRESHOLD_DB, max_samples: int = 64,
                 runtime: str = REFERENCE_RUNNER) -> dict[str, Any]:
    """Per-layer errors of a bundle's quantized model on ``data`` (see the module docstring)."""
    import onnx

    from edgec.compiler.bundle import open_bundle
    from edgec.calibration import load_calibration_data
    from edgec.runtimes import io as rio

    bundle = Path(bundle)
    manifest = open_bundle(bundle)
    ref = manifest.get("reference") or {}
    qpath = ref.get("quantized")
    if not qpath:
        raise BundleError(f"bundle {bundle} ({manifest['target']}, {manifest['precision']}) has no quantized ONNX: "
                          "only int8/int4 bundles quantized by edgec have per-layer errors (the arm target quantizes "
                          "in its own converter; fp32/fp16 bundles have nothing quantized)")
    float_proto = onnx.load(str(bundle / ref["path"]))
    quant_proto = onnx.load(str(bundle / qpath))
    specs = [rio.spec(d) for d in manifest["model_inputs"]]
    tok = bundle / manifest["tokenizer"] if manifest.get("tokenizer") else None
    samples = load_calibration_data(data, specs, max_samples=max_samples, tokenizer_dir=tok).samples
    quant_runner = None
    if runtime == "target":
        quant_runner = _target_tensors(bundle, manifest)
    elif runtime != REFERENCE_RUNNER:
        raise ConfigError(f"--runtime {runtime}: expected {REFERENCE_RUNNER} or target")
    rows = compare_layers(float_proto, quant_proto, samples, quant_runner=quant_runner)
    first = bisect(rows, threshold_db)
    return {"bundle": str(bundle), "target": manifest["target"], "precision": manifest["precision"],
            "runtime": runtime if runtime == REFERENCE_RUNNER else manifest["runner"], "samples": len(samples),
            "threshold_db": threshold_db, "layers": rank_rows(rows), "graph_order": [r["node"] for r in rows],
            "first_above_threshold": first}


def _target_tensors(bundle: Path, manifest: dict[str, Any]):
    """A reader of intermediate tensors from the bundle's own runner (`Runner.intermediate_tensors`)."""
    from edgec.runtimes.registry import RUNNERS, create_runner

    if not RUNNERS.get(manifest["runner"]).exposes_intermediate_tensors:
        raise ConfigError(f"--runtime target: the {manifest['runner']} runner does not expose intermediate tensors; "
                          f"use --runtime {REFERENCE_RUNNER} (the Q/DQ ONNX the target lowered)")
    runner = create_runner(manifest["runner"], bundle, manifest).load()
    return runner.intermediate_tensors
