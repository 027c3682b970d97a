"""A default build's cheap fallback: leave a few nodes' Q/DQ out where the int8 error concentrates.

Runtimes that mix precisions per layer (TensorRT runs any layer without Q/DQ in fp16) can take
back the few layers that carry most of a model's int8 error at little cost in speed. The
target names, as data (`QuantScheme.float_fallback_ops`), the op types a default build may
leave out: TensorRT's symmetric activations, for instance, lose most on the inputs of
BlazeFace's residual Adds (a wide residual stream added to a narrow branch).

The search runs only when the quantized model's worst sample (lowest cosine of any output on
any calibration sample) is below `QuantScheme.float_fallback_cosine`. It is scored by the
relative output error (each output's squared error over its spread between samples, averaged
over outputs: smooth, where the worst sample's cosine hangs on one sample and one output):

1. Each candidate node (a quantized node of those op types) is measured alone, at most
   ``max_single`` of them (those whose quantized inputs have the largest local error first).
2. The helpful ones are added best first, each kept only when it lowers the error of
   everything kept so far by `MIN_GAIN`; at most `MAX_SHARE` of the candidates go to float.

So it never returns a state worse than the plain int8 model, it costs at most about twice
``max_single`` model runs, and it is deterministic (no time limits).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MAX_SINGLE = 24  # candidates measured alone
MAX_SHARE = 0.5  # of the candidates, at most this share kept in float
MIN_GAIN = 0.02  # a node goes to float only when it lowers the output error by this share


def worst_cosine(outs: list[dict[str, np.ndarray]], refs: list[dict[str, np.ndarray]]) -> float:
    """The lowest cosine of any output on any sample (the sample-level floor the build is judged by)."""
    from edgec.runtimes.metrics import cosine

    worst = 1.0
    for o, r in zip(outs, refs):
        for k in r:
            c = cosine(np.asarray(o[k], np.float64), np.asarray(r[k], np.float64))
            worst = min(worst, c if c == c else -1.0)  # NaN counts as the worst
    return float(worst)


def search(candidates: list[str], evaluate: Callable[[tuple[str, ...]], tuple[float, float]], bar: float,
           base: tuple[float, float] | None = None, max_single: int = MAX_SINGLE) -> dict:
    """Nodes to keep in float; ``evaluate(nodes)`` is ``(relative output error, worst cosine)`` with them in float.

    ``candidates`` come most promising first (only the first ``max_single`` are measured alone);
    ``base`` is the plain model's score when already measured.
    Returns ``{"kept_float", "error_before", "error", "worst_cosine_before", "worst_cosine", "evaluations"}``.
    """
    before = evaluate(()) if base is None else base
    evaluations = 0 if base is not None else 1
    alone: dict[str, tuple[float, float]] = {}
    if before[1] < bar:
        for node in candidates[:max_single]:
            alone[node] = evaluate((node,))
            evaluations += 1
    kept: tuple[str, ...] = ()
    best = before
    limit = max(1, int(len(candidates) * MAX_SHARE))
    for node in sorted((n for n in alone if alone[n][0] < before[0]), key=lambda n: alone[n][0]):
        if len(kept) >= limit:
            break
        if not kept:  # measured already
            score = alone[node]
        else:
            score = evaluate((*kept, node))
            evaluations += 1
        if score[0] < best[0] * (1.0 - MIN_GAIN):
            kept, best = (*kept, node), score
    return {"kept_float": list(kept), "error_before": before[0], "error": best[0],
            "worst_cosine_before": before[1], "worst_cosine": best[1], "evaluations": evaluations}
