"""A default build's cheap fallback: leave a few nodes' Q/DQ out where the int8 error concentrates.

Runtimes that mix precisions per layer (TensorRT runs any layer without Q/DQ in fp16) can take
back the few layers that carry most of a model's int8 error at little cost in speed. The
target names, as data (`QuantScheme.float_fallback_ops`), the op types a default build may
leave out: TensorRT's symmetric activations, for instance, lose most on the inputs of
BlazeFace's residual Adds (a wide residual stream added to a narrow branch).

The search runs only when the quantized model's worst sample (lowest cosine of any output on
any calibration sample) is below `QuantScheme.float_fallback_cosine`. It is scored by the
gate's ``cosine`` metric (1 - the mean cosine over samples of the lowest output: the worst
sample alone hangs on one image, and on BlazeFace nodes that raised it on the calibration
samples lowered it on others):

1. Every candidate (a quantized node of those op types) in fp16 at once. One node alone
   barely moves the error (BlazeFace-short: 16 Adds, each alone under 2 % of it), together
   they carry much of it; kept only when that lowers the error by `MIN_GAIN`.
2. Then candidates go back to int8 one at a time, the least harmful first (smallest local
   error of their inputs), while the error stays within `KEEP_SHARE` of the gain, up to
   ``max_back`` tries: the fp16 layers that do not earn their cost are given back.

So it never returns a state worse than the plain int8 model, costs at most ``2 + max_back``
model runs, and it is deterministic (no time limits).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MAX_BACK = 24  # candidates tried back in int8
MIN_GAIN = 0.05  # fp16 layers only when they lower the output error by this share
KEEP_SHARE = 0.1  # giving layers back to int8 may lose this share of the fp16 gain, all together


def worst_cosine(outs: list[dict[str, np.ndarray]], refs: list[dict[str, np.ndarray]]) -> float:
    """The lowest cosine of any output on any sample (the sample-level floor the build is judged by)."""
    from edgec.runtimes.metrics import cosine

    worst = 1.0
    for o, r in zip(outs, refs):
        for k in r:
            c = cosine(np.asarray(o[k], np.float64), np.asarray(r[k], np.float64))
            worst = min(worst, c if c == c else -1.0)  # NaN counts as the worst
    return float(worst)


def cosine_error(outs: list[dict[str, np.ndarray]], refs: list[dict[str, np.ndarray]]) -> float:
    """1 - the mean cosine over samples of the output where it is lowest (the gate's ``cosine`` metric)."""
    from edgec.runtimes.metrics import cosine

    per_output = [np.mean([cosine(np.asarray(o[k], np.float64), np.asarray(r[k], np.float64))
                           for o, r in zip(outs, refs)]) for k in (refs[0] if refs else ())]
    worst = min(per_output, default=1.0)
    return float(1.0 - worst) if worst == worst else 2.0


def search(candidates: list[str], evaluate: Callable[[tuple[str, ...]], tuple[float, float]], bar: float,
           base: tuple[float, float] | None = None, max_back: int = MAX_BACK) -> dict:
    """Nodes to keep in float; ``evaluate(nodes)`` is ``(output error, worst cosine)`` with them in float.

    ``candidates`` come most useful in float first (the last ones are tried back in int8 first);
    ``base`` is the plain model's score when already measured. Returns ``{"kept_float",
    "error_before", "error", "worst_cosine_before", "worst_cosine", "evaluations"}``.
    """
    before = evaluate(()) if base is None else base
    evaluations = 0 if base is not None else 1
    kept: tuple[str, ...] = ()
    best = before
    if before[1] < bar and candidates:
        every = evaluate(tuple(candidates))
        evaluations += 1
        if every[0] < before[0] * (1.0 - MIN_GAIN):
            kept, best = tuple(candidates), every
            allowed = every[0] + KEEP_SHARE * (before[0] - every[0])
            for node in list(reversed(candidates))[:max_back]:
                trial = tuple(n for n in kept if n != node)
                if not trial:
                    break
                score = evaluate(trial)
                evaluations += 1
                if score[0] <= allowed:
                    kept, best = trial, score
    return {"kept_float": list(kept), "error_before": before[0], "error": best[0],
            "worst_cosine_before": before[1], "worst_cosine": best[1], "evaluations": evaluations}
