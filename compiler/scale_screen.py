"""The cheap screen behind ``--calib-method auto``: judge each tensor's ranges locally, measure few models.

Every calibration method gives each activation tensor one candidate range (TensorRT's target:
min/max, KL entropy, percentiles, MSE; all from one calibration pass). Trying every candidate
of every tensor in a full-model run costs tensors x candidates re-quantizations and
onnxruntime runs (400+ on a MobileNetV2: past ten minutes). TensorRT's own calibrators pick a
tensor's threshold from its histogram alone; so does the screen:

1. **Local error.** For each tensor and candidate, the expected int8 quantize-dequantize MSE of
   the tensor's own values (from the histogram the calibration pass kept, integrated exactly:
   `edgec.calibration.histogram.qdq_mse`), relative to the tensor's mean square.
2. **Whole-model candidates.** Each method applied to every tensor, plus "screened"
   assignments: per tensor, the widest range whose local error is within a slack of the
   tensor's best (slack 0 is the local optimum; larger slacks clip fewer outliers where that
   costs little locally, since a clipped outlier can matter more downstream than its MSE
   says). Each is measured once at the model's outputs; the best is kept.
3. **Refinement.** A fixed budget of single-tensor switches at the outputs, tensors with the
   largest local error first (where a different range can change the most).

So the search costs a constant number of full-model runs, not one per tensor and candidate.
Everything is deterministic (no time limits), so two builds choose the same ranges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from edgec.calibration import TensorRange
    from edgec.calibration.histogram import GrowingHistogram

# Local-error slacks of the screened assignments (0: each tensor's local optimum).
SLACKS = (0.0, 0.5, 2.0)
# Single-tensor switches measured at the outputs after the whole-model screen: at least
# REFINE_EVALS, more on cheap models, as many as REFINE_ELEMENTS activation values computed
# allow (a deterministic stand-in for time: about a minute of onnxruntime on one core), each
# node counting NODE_ELEMENTS for re-quantizing and loading the model. Capped at REFINE_MAX.
REFINE_EVALS = 4
REFINE_ELEMENTS = 4e9
NODE_ELEMENTS = 3e5
REFINE_MAX = 300
# Ranges closer than this (relative) are the same choice: no need to try them.
SAME_RANGE_RTOL = 0.02

Choice = dict[str, str]  # {tensor: candidate label}


def refine_budget(elements_per_eval: float, nodes: int) -> int:
    """How many single-tensor switches the refinement may measure (see `REFINE_ELEMENTS`)."""
    per_eval = max(elements_per_eval + NODE_ELEMENTS * nodes, 1.0)
    return int(min(max(REFINE_ELEMENTS / per_eval, REFINE_EVALS), REFINE_MAX))


def same_range(a: "TensorRange", b: "TensorRange") -> bool:
    """Whether two ranges are the same choice (within `SAME_RANGE_RTOL` of the span)."""
    span = max(abs(a.rmax - a.rmin), 1e-12)
    return abs(a.rmin - b.rmin) <= SAME_RANGE_RTOL * span and abs(a.rmax - b.rmax) <= SAME_RANGE_RTOL * span


def local_errors(hists: "dict[str, GrowingHistogram]", alt: "dict[str, dict[str, TensorRange]]",
                 tensors: list[str], symmetric: bool) -> dict[str, dict[str, float]]:
    """``{tensor: {label: relative int8 Q/DQ MSE of the tensor's values under that label's range}}``.

    Tensors without a histogram (or all zeros) are left out. A magnitude histogram is measured
    as symmetric (it holds no sign).
    """
    from edgec.calibration.histogram import qdq_mse

    out: dict[str, dict[str, float]] = {}
    for t in tensors:
        h = hists.get(t)
        if h is None or h.total == 0 or h.limit == 0.0:
            continue
        labels = [m for m in alt if t in alt[m]]
        lo = np.array([alt[m][t].rmin for m in labels], np.float64)
        hi = np.array([alt[m][t].rmax for m in labels], np.float64)
        sym = symmetric or h.absolute
        if sym:
            hi = np.maximum(-lo, hi)
            lo = -hi
        else:
            lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        counts, edges = h.counts.astype(np.float64), h.edges
        mids = 0.5 * (edges[:-1] + edges[1:])
        power = max(float((counts * mids * mids).sum() / counts.sum()), 1e-30)
        err = qdq_mse(counts, edges, lo, hi, symmetric=sym) / power
        out[t] = {m: float(e) for m, e in zip(labels, err)}
    return out


def screened(local: dict[str, dict[str, float]], alt: "dict[str, dict[str, TensorRange]]",
             slack: float) -> Choice:
    """Per tensor, the widest range whose local error is within ``(1 + slack)`` of its best."""
    choice: Choice = {}
    for t, errs in local.items():
        best = min(errs.values())
        ok = [m for m, e in errs.items() if e <= best * (1.0 + slack) + 1e-15]
        choice[t] = max(ok, key=lambda m: max(-alt[m][t].rmin, alt[m][t].rmax))
    return choice


def whole_model_candidates(local: dict[str, dict[str, float]], alt: "dict[str, dict[str, TensorRange]]",
                           tensors: list[str]) -> list[tuple[str, Choice]]:
    """``(name, choice)``: every method on every tensor, then the screened assignments; no duplicates."""
    out: list[tuple[str, Choice]] = [(m, {t: m for t in tensors if t in alt[m]}) for m in alt]
    out += [(f"screen-slack-{s:g}", screened(local, alt, s)) for s in SLACKS]
    unique: list[tuple[str, Choice]] = []
    for name, choice in out:
        if not any(_same_choice(choice, c, alt) for _, c in unique):
            unique.append((name, choice))
    return unique


def _same_choice(a: Choice, b: Choice, alt) -> bool:
    if a.keys() != b.keys():
        return False
    return all(same_range(alt[a[t]][t], alt[b[t]][t]) for t in a)


def search(alt: "dict[str, dict[str, TensorRange]]", local: dict[str, dict[str, float]], tensors: list[str],
           evaluate: Callable[[Choice], float], refine_evals: int = REFINE_EVALS) -> dict:
    """Screen whole-model candidates, then refine; ``evaluate(choice)`` is the output error of one choice.

    Returns ``{"choice", "error", "screen": {name: error}, "picked", "evaluations"}``.
    """
    scores: dict[str, float] = {}
    best_name, best, best_err = "", {}, float("inf")
    for name, choice in whole_model_candidates(local, alt, tensors):
        err = scores[name] = evaluate(choice)
        if err < best_err * (1 - 1e-6):
            best_name, best, best_err = name, choice, err
    evaluations = len(scores)
    # Worst-quantized tensors first: where another range can change the most.
    order = sorted((t for t in tensors if t in local and t in best), key=lambda t: -local[t][best[t]])
    budget = refine_evals
    for t in order:
        if budget <= 0:
            break
        for m in sorted(local[t], key=lambda m: local[t][m]):
            if budget <= 0:
                break
            if same_range(alt[m][t], alt[best[t]][t]):
                continue
            trial = {**best, t: m}
            err = evaluate(trial)
            budget -= 1
            evaluations += 1
            if err < best_err * (1 - 1e-6):
                best, best_err = trial, err
    return {"choice": best, "error": best_err, "screen": scores, "picked": best_name, "evaluations": evaluations}
