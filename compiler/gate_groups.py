"""The accuracy gate's group phase: when single fallbacks stall, keep a ranked prefix of layers in float.

Greedy single moves (`edgec.compiler.accuracy_gate`) stall when the error is spread over many
layers: each layer kept in float alone barely moves the drop, or moves it the wrong way, while
keeping a few dozen of them together fits (a MobileNetV3 text detector on intel-cpu: no single
layer lowers the drop from 2.1 below 1.9, its 64 noisiest layers together bring it to 0.23).
Like NNCF's ``quantize_with_accuracy_control``, which reverts ranked groups until the metric fits,
this phase

1. ranks every quantized layer by the error it adds to its own output (`edgec debug layers`: one
   run of the float and the quantized model);
2. checks that keeping all of them in float fits at all (otherwise no keep-float set can, and
   the gate says so);
3. binary-searches the shortest ranked prefix whose onnxruntime drop fits (log2(N) measurements):
   if keeping more float reaches the budget, the phase reaches it, with as few float layers as
   the ranking allows;
4. shrinks that set: the fit hinges on the prefix's last layer, so that one is kept and the search
   repeats over the layers ranked above it (`shrink`);
5. re-verifies with the target's runner; when the target loses more than onnxruntime (its runtime
   rounds differently), the onnxruntime goal is lowered by the gap and the search resumes above
   the prefix that failed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from edgec.errors import EdgecError

if TYPE_CHECKING:
    from edgec.compiler.progress import Progress
    from edgec.compiler.sensitivity import Evaluator, Fallback, FallbackState

RANK_SAMPLES = 8  # samples the per-layer error ranking runs on
SHRINK_ROUNDS = 3
GOAL_MARGIN = 0.05  # of the budget: the onnxruntime goal after a target miss sits this far below the gap


def rank_layers(evaluator: "Evaluator", state: "FallbackState", progress: "Progress") -> list["Fallback"]:
    """Every quantized layer not yet in float, by the error it adds to its own output (most first).

    One run of the float and the quantized model with every layer's output (`compare_layers`).
    Measured on ppocr-v4-det, this ranks better than each layer's effect alone on the metric: there
    the metric is carried by a few near-blank pages whose cosine reacts to any change, so effects
    alone do not add up (the 48 layers that help most alone raise jetson's drop from 4.4 to 5.6, the
    32 noisiest bring it to 0.76).
    """
    from edgec.compiler.debug_layers import compare_layers

    quant = evaluator.quantized(state)
    cands = [c for c in evaluator.quantizer.candidates(quant, ("keep-float",)) if c.key not in state.keep_float]
    progress.message(f"ranking {len(cands)} layers by the error each adds")
    rows = compare_layers(evaluator.quantizer.reference.proto, quant.proto, evaluator.samples[:RANK_SAMPLES])
    added = {r["node"]: r["added_noise"] for r in rows}
    evaluator.sessions += 2
    why = ("one of the layers adding the most error (`edgec debug layers`), kept in float with the ones ranked "
           "above it")
    ranked = sorted(cands, key=lambda c: (-added.get(c.key, -math.inf), c.key))
    return [replace(c, why=why) for c in ranked]


def with_prefix(state: "FallbackState", ranked: list["Fallback"], k: int) -> "FallbackState":
    for fb in ranked[:k]:
        state = state.plus(fb)
    return state


def shortest_prefix(evaluator: "Evaluator", state: "FallbackState", ranked: list["Fallback"], goal: float,
                    lo: int, trace: list[dict[str, Any]]) -> tuple[int, float] | None:
    """The shortest ``k > lo`` whose prefix ``ranked[:k]`` has an onnxruntime drop ``<= goal``, and that drop.

    ``ranked[:lo]`` is known not to fit. None when even every layer in float does not fit. The drop
    is not strictly monotonic in ``k`` (quantization noise of neighbouring layers partly cancels), so
    the search returns a prefix that was measured to fit, not necessarily the shortest one that would.
    """
    def at(k: int) -> float:
        d = evaluator.drop(with_prefix(state, ranked, k))
        trace.append({"float_layers": k, "onnxruntime_drop": d})
        return d

    hi = len(ranked)
    d_hi = at(hi)
    if d_hi > goal:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        d = at(mid)
        if d <= goal:
            hi, d_hi = mid, d
        else:
            lo = mid
    return hi, d_hi


def shrink(evaluator: "Evaluator", state: "FallbackState", ranked: list["Fallback"], k: int, goal: float,
           trace: list[dict[str, Any]]) -> tuple[list["Fallback"], float]:
    """Fewer float layers than the prefix ``ranked[:k]`` that fits, still within ``goal``.

    The fit hinges on the prefix's last layer (without it the prefix did not fit): keep that one, and
    search again for the shortest prefix of the layers ranked above it (the fit often needs one layer
    the per-layer noise ranks low plus a few, not all, of those ranked above it). At most
    `SHRINK_ROUNDS` times, each one more check and a binary search.
    """
    pinned: list = []
    rest, d_best = ranked[:k], evaluator.drop(with_prefix(state, ranked, k))
    for _ in range(SHRINK_ROUNDS):
        if not rest:
            break
        pinned.append(rest[-1])
        rest = rest[:-1]
        base = with_prefix(state, pinned, len(pinned))
        d = evaluator.drop(base)
        trace.append({"float_layers": len(pinned), "pinned": len(pinned), "onnxruntime_drop": d})
        if d <= goal:
            return pinned, d
        found = shortest_prefix(evaluator, base, rest, goal, 0, trace)
        if found is None:  # every layer of the fitting set again: measured before, so it fits; kept for safety
            rest.append(pinned.pop())
            break
        j, d_best = found
        rest = rest[:j]
    return pinned + rest, d_best


def group_phase(evaluator: "Evaluator", state: "FallbackState", budget: float, try_target: Callable,
                attempts_left: Callable[[], int], progress: "Progress", report: dict[str, Any],
                goal: float | None = None):
    """Keep the shortest ranked prefix of layers in float that the target verifies within ``budget``.

    Args:
        evaluator: The gate's onnxruntime `Evaluator`.
        state: The state the greedy phases left (its cheap moves stay).
        budget: The gate's budget.
        try_target: ``try_target(state, step) -> (result, target drop)``: lowers and verifies.
        attempts_left: How many target builds the gate may still run.
        progress: Progress reporter.
        report: The gate's report (``group_phase`` is recorded in it).
        goal: The first onnxruntime goal (``budget`` when None; lower when the target is known to lose more).

    Returns:
        ``(result, target drop, state)`` of the first prefix within budget on the target, or None.
    """
    ranked = rank_layers(evaluator, state, progress)
    info: dict[str, Any] = {"layers_ranked": len(ranked), "searches": []}
    report["group_phase"] = info
    if not ranked:
        return None
    goal, lo = (budget if goal is None else goal), 0
    while attempts_left() > 0:
        search: dict[str, Any] = {"onnxruntime_goal": goal, "trace": []}
        info["searches"].append(search)
        progress.message(f"single fallbacks stalled: searching the shortest of {len(ranked)} ranked layers to keep "
                         f"in float for an onnxruntime drop <= {goal:.3g}")
        found = shortest_prefix(evaluator, state, ranked, goal, lo, search["trace"])
        if found is None:
            info["all_float_onnxruntime_drop"] = search["trace"][-1]["onnxruntime_drop"]
            return None
        k, d = found
        kept, d = shrink(evaluator, state, ranked, k, goal, search.setdefault("shrink", []))
        cand = with_prefix(state, kept, len(kept))
        step: dict[str, Any] = {"fallbacks": len(cand.applied), "added": f"{len(kept)} ranked layers kept in float",
                                "onnxruntime_drop": d, "kept": True}
        search["step"] = step
        try:
            r, dt = try_target(cand, step)
        except EdgecError as exc:  # a target that cannot lower this many float layers (jetson: no Q/DQ left)
            step["target_refused"] = str(exc).splitlines()[0][:300]
            return None
        if dt <= budget:
            info["float_layers"] = len(kept)
            return r, dt, cand
        if k >= len(ranked) or dt == float("inf"):
            return None
        # The target loses more than onnxruntime on this model: aim onnxruntime lower by that gap.
        goal = min(goal, budget - (dt - d)) - GOAL_MARGIN * budget
        if goal < 0:
            return None
        lo = k
    return None
