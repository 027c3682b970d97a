"""Per-layer sensitivity of a quantized model, measured on its Q/DQ ONNX in onnxruntime.

A *fallback* is one change that wins accuracy back: keep a node in float (``keep-float``),
give one activation tensor the range of another calibration method (``calib-method``), or
quantize an INT4 weight to INT8 instead (``int8``). Each candidate is applied alone on top of
the current state, the model is re-quantized and run in onnxruntime on the evaluation data,
and the metric's drop is recorded; the most helpful fallbacks come first. This works for
every target whose int8 form is Q/DQ ONNX, since that ONNX is what the target lowers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgec.compiler.progress import Progress
    from edgec.compiler.quality import Metric


# Above this many candidates, a one-run screen (the error each layer adds, from
# `edgec.compiler.debug_layers`) keeps the `SCREEN_LAYERS` worst layers and their input tensors.
MAX_MEASURED = 24
SCREEN_LAYERS = 8
SCREEN_SAMPLES = 16
PASS_THROUGH = frozenset({"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Relu"})


@dataclass(frozen=True)
class Fallback:
    """One change to the quantization.

    Attributes:
        kind: ``keep-float``, ``calib-method``, ``bias-correction`` or ``int8``.
        key: Node name (keep-float, int8) or activation tensor name (calib-method).
        value: The calibration method (calib-method).
        op: The node's op type, for reports.
        drop: Metric drop in onnxruntime with this fallback alone (set by `rank`).
        base: The onnxruntime drop it was measured against (set by `rank`).
    """

    kind: str
    key: str
    value: str | None = None
    op: str | None = None
    drop: float | None = None
    base: float | None = None

    def describe(self) -> str:
        if self.kind == "keep-float":
            return f"{self.key} ({self.op}) kept in float"
        if self.kind == "int8":
            return f"{self.key} ({self.op}) int8 instead of int4"
        if self.kind == "bias-correction":
            return "bias correction"
        return f"tensor {self.key} calibrated with {self.value}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "node" if self.kind != "calib-method" else "tensor": self.key,
                **({"method": self.value} if self.value else {}), **({"op": self.op} if self.op else {}),
                "drop_alone_onnxruntime": self.drop}


@dataclass(frozen=True)
class FallbackState:
    """The fallbacks applied so far (plus the user's ``--keep-float``)."""

    keep_float: tuple[str, ...] = ()
    overrides: tuple[tuple[str, str], ...] = ()
    int8_nodes: tuple[str, ...] = ()
    bias_correction: bool = False
    applied: tuple[Fallback, ...] = field(default=())

    def plus(self, fb: Fallback) -> "FallbackState":
        if fb.kind == "bias-correction":
            return replace(self, bias_correction=True, applied=(*self.applied, fb))
        if fb.kind == "keep-float":
            return replace(self, keep_float=(*self.keep_float, fb.key), applied=(*self.applied, fb))
        if fb.kind == "int8":
            return replace(self, int8_nodes=(*self.int8_nodes, fb.key), applied=(*self.applied, fb))
        over = tuple((t, m) for t, m in self.overrides if t != fb.key) + ((fb.key, fb.value),)
        return replace(self, overrides=over, applied=(*self.applied, fb))

    def quantize(self, quantizer):
        kw = {"bias_correction": True} if self.bias_correction else {}
        return quantizer.quantize(self.keep_float, dict(self.overrides), self.int8_nodes, **kw)


def rank(quantizer, state: FallbackState, kinds: tuple[str, ...], samples, reference_outputs, labels,
         metric: "Metric", progress: "Progress | None" = None) -> tuple[float, list[Fallback]]:
    """The onnxruntime drop of ``state`` and the candidate fallbacks that lower it, best first.

    Only the best method per tensor is kept for ``calib-method`` candidates.
    """
    from edgec.compiler.progress import SILENT
    from edgec.compiler.quality import run_onnx

    quant, _ = state.quantize(quantizer)
    base = metric.drop(run_onnx(quant.proto, samples), reference_outputs, labels)
    cands = [c for c in quantizer.candidates(quant, kinds)
             if not (c.kind == "keep-float" and c.key in state.keep_float)
             and not (c.kind == "int8" and c.key in state.int8_nodes)
             and not (c.kind == "bias-correction" and state.bias_correction)]
    if len(cands) > MAX_MEASURED:
        cands = screen(quantizer.reference.proto, quant.proto, cands, samples[:SCREEN_SAMPLES])
    scored: list[Fallback] = []
    with (progress or SILENT).task("measuring layer sensitivity", total=len(cands)) as task:
        for c in cands:
            q, _ = state.plus(c).quantize(quantizer)
            d = metric.drop(run_onnx(q.proto, samples), reference_outputs, labels)
            scored.append(replace(c, drop=d, base=base))
            task.advance()
    best_per_tensor: dict[tuple[str, str], Fallback] = {}
    for c in scored:
        k = (c.kind, c.key)
        if k not in best_per_tensor or c.drop < best_per_tensor[k].drop:
            best_per_tensor[k] = c
    helpful = [c for c in best_per_tensor.values() if c.drop < base]
    cost = {"calib-method": 0, "bias-correction": 0, "int8": 1, "keep-float": 2}  # on ties, the fallback that keeps more int
    helpful.sort(key=lambda c: (c.drop, cost[c.kind], c.key))
    return base, helpful


def screen(float_proto, quant_proto, cands: list[Fallback], samples) -> list[Fallback]:
    """The candidates touching the `SCREEN_LAYERS` layers that add the most error (one run of each model)."""
    from edgec.compiler.debug_layers import compare_layers

    rows = compare_layers(float_proto, quant_proto, samples)
    added = {r["node"]: r["added_noise"] for r in rows}
    g = quant_proto.graph
    dq_of = {n.input[0]: n.output[0] for n in g.node if n.op_type == "DequantizeLinear"}
    readers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def layer_readers(t: str, depth: int = 0) -> list[str]:
        """Nodes reading ``t``, looking through ops that only move values (MaxPool, Reshape ...)."""
        out = []
        for r in readers.get(t, []):
            out.append(r.name)
            if r.op_type in PASS_THROUGH and depth < 4:
                out += layer_readers(r.output[0], depth + 1)
        return out

    def tensor_score(t: str) -> float:
        outs = [t]  # full placement: the DequantizeLinear output keeps the tensor's name
        q = next((n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] in (t, f"{t}_float")), None)
        if q is not None and q.output[0] in dq_of:
            outs.append(dq_of[q.output[0]])
        return max((added.get(r, -1e9) for o in outs for r in layer_readers(o)), default=-1e9)

    def score(c: Fallback) -> float:
        return tensor_score(c.key) if c.kind == "calib-method" else added.get(c.key, -1e9)

    worst_nodes = sorted({c.key for c in cands if c.kind != "calib-method"}, key=lambda k: -added.get(k, -1e9))
    worst_tensors = sorted({c.key for c in cands if c.kind == "calib-method"}, key=lambda k: -tensor_score(k))
    keep = set(worst_nodes[:SCREEN_LAYERS]) | set(worst_tensors[:SCREEN_LAYERS])
    return sorted((c for c in cands if c.key in keep), key=lambda c: -score(c))
