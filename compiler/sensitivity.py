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
# With more candidates than `SCREEN_KEEP`, each is first measured on 1/`SCREEN_SAMPLE_SHARE` of
# the samples (at least `SCREEN_MIN_SAMPLES`), and only the best `SCREEN_KEEP` on all of them.
SCREEN_KEEP = 6
SCREEN_SAMPLE_SHARE = 4
SCREEN_MIN_SAMPLES = 2
HEADROOM_EPS = 1e-4  # a shortfall lower by less than this is not headroom won
WHOLE_MODEL_KINDS = ("bias-correction", "weight-rounding")  # fallbacks that change every layer at once
PASS_THROUGH = frozenset({"MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Relu"})


@dataclass(frozen=True)
class Fallback:
    """One change to the quantization.

    Attributes:
        kind: ``keep-float``, ``calib-method``, ``bias-correction``, ``weight-rounding`` (GPTQ for every
            int8 weight) or ``int8``.
        key: Node name (keep-float, int8) or activation tensor name (calib-method).
        value: The calibration method (calib-method).
        op: The node's op type, for reports.
        drop: Metric drop in onnxruntime with this fallback alone (set by `rank`).
        base: The onnxruntime drop it was measured against (set by `rank`).
        shortfall: Its `Evaluator.shortfall` alone (set by `rank` when ranking for headroom).
    """

    kind: str
    key: str
    value: str | None = None
    op: str | None = None
    drop: float | None = None
    base: float | None = None
    shortfall: float | None = None
    why: str | None = None  # why the gate kept it, when not its effect alone (the group phase)

    def describe(self) -> str:
        if self.kind == "keep-float":
            return f"{self.key} ({self.op}) kept in float"
        if self.kind == "int8":
            return f"{self.key} ({self.op}) int8 instead of int4"
        if self.kind == "bias-correction":
            return "bias correction"
        if self.kind == "weight-rounding":
            return f"{self.value} weight rounding"
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
    weight_rounding: str | None = None
    applied: tuple[Fallback, ...] = field(default=())

    def plus(self, fb: Fallback) -> "FallbackState":
        if fb.kind == "bias-correction":
            return replace(self, bias_correction=True, applied=(*self.applied, fb))
        if fb.kind == "weight-rounding":
            return replace(self, weight_rounding=fb.value, applied=(*self.applied, fb))
        if fb.kind == "keep-float":
            return replace(self, keep_float=(*self.keep_float, fb.key), applied=(*self.applied, fb))
        if fb.kind == "int8":
            return replace(self, int8_nodes=(*self.int8_nodes, fb.key), applied=(*self.applied, fb))
        over = tuple((t, m) for t, m in self.overrides if t != fb.key) + ((fb.key, fb.value),)
        return replace(self, overrides=over, applied=(*self.applied, fb))

    def key(self) -> tuple:
        """What the quantized model depends on (the order fallbacks were added in does not matter)."""
        return (tuple(sorted(set(self.keep_float))), tuple(sorted(self.overrides)), tuple(sorted(set(self.int8_nodes))),
                self.bias_correction, self.weight_rounding)

    def quantize(self, quantizer):
        kw = {"bias_correction": True} if self.bias_correction else {}
        if self.weight_rounding:
            kw["weight_rounding"] = self.weight_rounding
        return quantizer.quantize(self.keep_float, dict(self.overrides), self.int8_nodes, **kw)


class Evaluator:
    """The onnxruntime drop of a fallback state on the gate's samples; each state is measured once.

    The Q/DQ model runs as written (`quality.exact_qdq_session`), so the ranking and the moves kept are the
    same on every CPU; the target's own runner verifies each build the gate accepts.

    States that quantize to the same model (the same fallbacks in another order, or a ranked
    candidate the gate then tries on top of the same state) reuse the first measurement. A
    state measured on a screen of samples with ``keep=True`` keeps its session and outputs, so
    measuring it on every sample later runs only the remaining ones.

    Args:
        quantizer: `Int8Quantizer` / `Int4Quantizer`.
        samples: Evaluation feeds.
        reference_outputs: The float model's outputs on ``samples``.
        labels: Labels of ``samples`` or None.
        metric: The gate's `Metric`.
    """

    def __init__(self, quantizer, samples, reference_outputs, labels, metric: "Metric"):
        self.quantizer, self.samples, self.refs, self.labels, self.metric = \
            quantizer, list(samples), list(reference_outputs), labels, metric
        self._drops: dict[tuple, tuple[float, float, float]] = {}
        self._kept: dict[tuple, tuple[Any, list]] = {}  # state key -> (session, outputs of the first samples)
        self._last: tuple[tuple, Any] | None = None  # the last quantized model
        self.sessions = self.samples_run = 0

    def quantized(self, state: "FallbackState"):
        """``state``'s quantized model (the last one is kept: ranking asks again for the state it measured)."""
        if self._last is None or self._last[0] != state.key():
            self._last = (state.key(), state.quantize(self.quantizer)[0])
        return self._last[1]

    def measure(self, state: "FallbackState", n: int | None = None,
                keep: bool = False) -> tuple[float, float, float]:
        """``(metric drop, relative output error, shortfall)`` of ``state`` on the first ``n`` samples (all: None)."""
        from edgec.compiler.quality import exact_qdq_session, run_onnx
        from edgec.runtimes.metrics import relative_output_error

        n = len(self.samples) if n is None else min(n, len(self.samples))
        key = (state.key(), n)
        if key not in self._drops:
            sess, outs = self._kept.pop(state.key(), (None, []))
            if sess is None:
                sess = exact_qdq_session(self.quantized(state).proto)
                self.sessions += 1
            if len(outs) < n:
                self.samples_run += n - len(outs)
                outs = outs + run_onnx(None, self.samples[len(outs):n], session=sess)
            outs = outs[:n]
            if keep and n < len(self.samples):
                self._kept[state.key()] = (sess, outs)
            labels = self.labels[:n] if self.labels is not None else None
            err = relative_output_error(outs, self.refs[:n])
            shortfall = -top1_margin(outs, self.refs[:n]) if self.metric.name == "top1" and labels is None else err
            self._drops[key] = (self.metric.drop(outs, self.refs[:n], labels), err, shortfall)
        return self._drops[key]

    def release(self, state: "FallbackState") -> None:
        """Drop the session kept for ``state``."""
        self._kept.pop(state.key(), None)

    def drop(self, state: "FallbackState") -> float:
        """The metric's drop of ``state`` on every sample."""
        return self.measure(state)[0]

    def shortfall(self, state: "FallbackState") -> float:
        """How close ``state`` is to losing more, on every sample (lower is safer): the top-1 metric without
        labels, minus the smallest margin its first output keeps the reference's class by (`top1_margin`);
        other metrics, the relative output error. A target whose runtime rounds a little differently from
        onnxruntime loses what onnxruntime keeps by a hair (a near-tie photo), so this is what the gate
        lowers when onnxruntime is within budget and the target is not."""
        return self.measure(state)[2]

    def work(self) -> dict[str, int]:
        return {"onnxruntime_sessions": self.sessions, "samples_run": self.samples_run}


def rank(evaluator: Evaluator, state: FallbackState, kinds: tuple[str, ...],
         progress: "Progress | None" = None, headroom: bool = False) -> tuple[float, list[Fallback]]:
    """The onnxruntime drop of ``state`` and the candidate fallbacks that lower it, best first.

    With ``headroom``: the candidates that keep the drop and lower `Evaluator.shortfall` instead,
    least shortfall first.

    Only the best method per tensor is kept for ``calib-method`` candidates. With many
    candidates and samples, every candidate is first measured on a screen of
    `SCREEN_SAMPLE_SHARE` of the samples (by the metric, then the output error: a coarse
    metric such as top-1 on few samples ties often), and only the `SCREEN_KEEP` best are
    measured on all of them; the gate keeps a fallback only by its full measurement.
    """
    from edgec.compiler.progress import SILENT

    quantizer, samples = evaluator.quantizer, evaluator.samples
    base = evaluator.drop(state)
    quant = evaluator.quantized(state)
    cands = [c for c in quantizer.candidates(quant, kinds)
             if not (c.kind == "keep-float" and c.key in state.keep_float)
             and not (c.kind == "int8" and c.key in state.int8_nodes)
             and not (c.kind == "bias-correction" and state.bias_correction)
             and not (c.kind == "weight-rounding" and state.weight_rounding)]
    if len(cands) > MAX_MEASURED:
        cands = screen(quantizer.reference.proto, quant.proto, cands, samples[:SCREEN_SAMPLES])
    k = max(SCREEN_MIN_SAMPLES, len(samples) // SCREEN_SAMPLE_SHARE)
    if len(cands) > SCREEN_KEEP and k < len(samples):
        with (progress or SILENT).task(f"screening fallbacks on {k} samples", total=len(cands)) as task:
            on_screen: list[tuple] = []
            for c in cands:  # the best SCREEN_KEEP keep their sessions for the full measurement
                on_screen = sorted([*on_screen, (evaluator.measure(state.plus(c), k, keep=True), c.key, c)],
                                   key=lambda t: ((t[0][0], t[0][2] if headroom else t[0][1]), t[1]))
                for *_, out in on_screen[SCREEN_KEEP:]:
                    evaluator.release(state.plus(out))
                task.advance()
        cands = [c for *_, c in on_screen[:SCREEN_KEEP]]
    scored: list[Fallback] = []
    with (progress or SILENT).task("measuring layer sensitivity", total=len(cands)) as task:
        for c in cands:
            cand = state.plus(c)
            scored.append(replace(c, drop=evaluator.drop(cand), base=base,
                                  shortfall=evaluator.shortfall(cand) if headroom else None))
            task.advance()
    best_per_tensor: dict[tuple[str, str], Fallback] = {}
    for c in scored:
        k = (c.kind, c.key)
        if k not in best_per_tensor or (c.drop, c.shortfall or 0.0) < (best_per_tensor[k].drop,
                                                                        best_per_tensor[k].shortfall or 0.0):
            best_per_tensor[k] = c
    if headroom:
        least = evaluator.shortfall(state) - HEADROOM_EPS
        helpful = [c for c in best_per_tensor.values() if c.drop <= base and c.shortfall < least]
    else:
        helpful = [c for c in best_per_tensor.values() if c.drop < base]
    # on ties, the fallback that keeps more int
    cost = {"calib-method": 0, "bias-correction": 0, "weight-rounding": 0, "int8": 1, "keep-float": 2}
    helpful.sort(key=lambda c: (c.drop, c.shortfall or 0.0, cost[c.kind], c.key))
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

    # Whole-model moves touch no one layer: they always pass (else many range candidates screen them out).
    whole = [c for c in cands if c.kind in WHOLE_MODEL_KINDS]
    cands = [c for c in cands if c.kind not in WHOLE_MODEL_KINDS]
    worst_nodes = sorted({c.key for c in cands if c.kind != "calib-method"}, key=lambda k: -added.get(k, -1e9))
    worst_tensors = sorted({c.key for c in cands if c.kind == "calib-method"}, key=lambda k: -tensor_score(k))
    keep = set(worst_nodes[:SCREEN_LAYERS]) | set(worst_tensors[:SCREEN_LAYERS])
    return whole + sorted((c for c in cands if c.key in keep), key=lambda c: -score(c))


def top1_margin(outputs, reference) -> float:
    """The smallest margin, over samples, by which the first output's score of the reference's top class
    beats its best other class (negative: the class flipped)."""
    import numpy as np

    margins = []
    for o, r in zip(outputs, reference):
        name = next(iter(r))
        g = np.asarray(o[name], np.float64).reshape(-1, np.shape(r[name])[-1])
        want = np.asarray(r[name]).reshape(g.shape).argmax(-1)
        rows = np.arange(len(g))
        others = g.copy()
        others[rows, want] = -np.inf
        margins.append(float((g[rows, want] - others.max(-1)).min()))
    return min(margins, default=0.0)
