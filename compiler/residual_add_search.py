"""Which residual Adds of a deep stream stay float, chosen by their measured effect.

A target that runs int8 residual Adds fused into their convs (OpenVINO's sum post-op) but falls
back to float Adds where the int8 stream does not hold (`QuantScheme.deep_residual_fallback`) pays
for each float Add with an f32 eltwise kernel and reorders, in proportion to the Add's tensor size.
The error the int8 Adds add is not spread evenly: on BlazeFace the narrow late blocks carry more of
it per value than the large early ones. So instead of all or nothing:

1. Every candidate Add in float (the all-float reference) and, from it, each Add alone back in int8:
   the rise in output error (1 - mean cosine) is that Add's damage (n + 1 model runs on the
   calibration samples, in onnxruntime, without per-layer bias correction).
2. Adds are ordered by damage per value of their tensor (what a float Add costs the runtime), most
   harmful per cost first; ties in graph order.
3. The shortest prefix of that order kept float that holds is found by bisection between the
   all-int8 model (fails) and the all-float one (holds); every returned prefix was measured to hold
   (about log2(n) more runs). Holds: the worst calibration cosine reaches the target's bar and the
   all-float model's worst less a margin, and the mean error stays within a share of the all-float
   model's (the worst of 16 samples alone hangs on one image: blazeface-back's calibration worst
   held at prefixes whose evaluation worst fell to 0.956).

`keep_some_adds_float` searches the recipe's ranges and the fallback's (int8 Adds with each), ships
the one that keeps the fewest values float, and measures it as built (bias correction included).
Deterministic: no time limits, ties broken in graph order. None where even every Add float misses:
the caller keeps its all-float fallback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from edgec.compiler.quant_stage import Int8Quantizer
    from edgec.targets.base import QuantScheme

DAMAGE_FLOOR = 1e-6  # a damage at or under zero (noise) still orders by cost: the cheapest Adds stay int8


def order(adds: list[str], damage: dict[str, float], sizes: dict[str, int]) -> list[str]:
    """``adds`` most harmful per value first (the ones to keep float first); graph order breaks ties."""
    index = {a: i for i, a in enumerate(adds)}
    return sorted(adds, key=lambda a: (-max(damage[a], DAMAGE_FLOOR) / max(sizes.get(a, 1), 1), index[a]))


def search(adds: list[str], sizes: dict[str, int],
           evaluate: Callable[[tuple[str, ...]], tuple[float, float]], bar: float, margin: float,
           error_share: float = 0.3, base: tuple[float, float] | None = None) -> dict | None:
    """The Adds to keep float; ``evaluate(float_adds)`` is ``(output error, worst cosine)`` with them float.

    Args:
        adds: Candidate Add node names, in graph order.
        sizes: Values per Add output (what a float Add costs).
        evaluate: Scores the model with the given Adds float and the others int8.
        bar: The worst calibration cosine the result must reach.
        margin: How far under the all-float model's worst cosine the result may stay.
        error_share: How far above the all-float model's output error the result's may be, as a share of it.
        base: The all-int8 model's score, when already measured.

    Returns:
        ``{"float_adds", "int8_adds", "required_worst_cosine", "every_float", "all_int8", "chosen",
        "damage", "evaluations", "steps"}``, or None when the all-float model misses ``required``.
    """
    evaluations = 0
    if base is None:
        base = evaluate(())
        evaluations += 1
    every = evaluate(tuple(adds))
    evaluations += 1
    required = max(bar, every[1] - margin)
    max_error = every[0] * (1.0 + error_share)

    def holds(score: tuple[float, float]) -> bool:
        return score[1] >= required and score[0] <= max_error

    summary = {"required_worst_cosine": round(required, 5), "max_error": round(max_error, 6),
               "all_int8": _rounded(base), "every_float": _rounded(every)}
    if every[1] < required or holds(base):
        return None if every[1] < required else {**summary, "float_adds": [], "int8_adds": list(adds),
                                                 "float_values": 0, "chosen": _rounded(base), "damage": {},
                                                 "evaluations": evaluations, "steps": []}
    damage = {}
    for a in adds:
        damage[a] = evaluate(tuple(x for x in adds if x != a))[0] - every[0]
        evaluations += 1
    ranked = order(adds, damage, sizes)
    scores = {0: base, len(ranked): every}
    lo, hi = 0, len(ranked)  # lo misses required, hi reaches it
    steps = []
    while hi - lo > 1:
        mid = (lo + hi) // 2
        scores[mid] = evaluate(tuple(ranked[:mid]))
        evaluations += 1
        steps.append({"float_adds": mid, **_rounded(scores[mid])})
        if holds(scores[mid]):
            hi = mid
        else:
            lo = mid
    keep = set(ranked[:hi])
    return {**summary, "float_adds": [a for a in adds if a in keep], "int8_adds": [a for a in adds if a not in keep],
            "float_values": sum(sizes[a] for a in keep), "all_values": sum(sizes.values()),
            "chosen": _rounded(scores[hi]), "damage": {a: float(f"{damage[a]:.3g}") for a in ranked},
            "evaluations": evaluations, "steps": steps}


def _rounded(score: tuple[float, float]) -> dict[str, float]:
    return {"error": round(float(score[0]), 6), "worst_cosine": round(float(score[1]), 5)}


def candidates(q: "Int8Quantizer") -> tuple[list[str], dict[str, int]]:
    """The residual Adds of conv blocks ``q`` quantizes (not already float), in graph order, and their sizes."""
    from edgec.compiler import qdq_graph as qg

    proto = q.model.proto
    inits = {t.name for t in proto.graph.initializer}
    _, shapes = qg.float_tensors(proto)
    producer = {o: n for n in proto.graph.node for o in n.output}
    adds = [n for n in proto.graph.node if n.op_type == "Add" and n.name and n.name not in q.fallback_float
            and qg.is_residual_add(n, inits, shapes, q.ranges) and qg.fed_by_conv(n, producer)]
    return [n.name for n in adds], {n.name: int(np.prod(shapes[n.input[0]])) for n in adds}


def choose(q: "Int8Quantizer", bar: float, margin: float, error_share: float) -> dict[str, Any] | None:
    """`search` on ``q``'s model (its residual Adds int8 by its scheme), measured on the calibration samples
    in onnxruntime, the Q/DQ graph as written (`quality.run_exact_qdq`), without per-layer bias correction (as
    the other searches; the caller measures the result with it). Returns `search`'s summary plus ``samples``;
    None as `search`."""
    from edgec.compiler.float_fallback import cosine_error
    from edgec.compiler.held_out_ranges import held_out_cosine
    from edgec.compiler.quality import ort_session, run_exact_qdq, run_onnx
    from edgec.compiler.range_search import AUTO_SAMPLES

    adds, sizes = candidates(q)
    if not adds:
        return None
    samples = list(q.calibration.samples[:AUTO_SAMPLES])
    refs = run_onnx(q.reference.proto, samples, session=ort_session(q.reference.proto))

    def evaluate(float_adds: tuple[str, ...]) -> tuple[float, float]:
        quant, _ = q.quantize(float_adds, bias_correction=False)
        outs = run_exact_qdq(quant.proto, samples)
        return cosine_error(outs, refs), held_out_cosine(outs, refs)

    found = search(adds, sizes, evaluate, bar, margin, error_share)
    return None if found is None else {**found, "samples": len(samples)}


def keep_some_adds_float(options: list[tuple[str, "Int8Quantizer"]], recipe: dict[str, Any], bar: float,
                         scheme: "QuantScheme") -> "Int8Quantizer | None":
    """Of ``options`` (label, quantizer with int8 residual Adds), the one whose `choose` keeps the fewest values
    float, with those Adds float, when it reaches ``bar`` measured as built (bias correction included), as the
    recipe itself is judged. Records the searches in ``recipe`` (the caller's deep-residual-recipe entry) and in
    the returned quantizer's. None: no option holds."""
    found = {}
    for label, q in options:
        f = choose(q, bar, scheme.deep_residual_float_add_margin, scheme.deep_residual_float_add_error)
        found[label] = f if f is not None else {"every_float_misses_required": True}
    usable = [(label, q) for label, q in options if "float_adds" in found[label] and found[label]["float_adds"]]
    # Fewest float values first; then the lower error; then the options' order.
    usable.sort(key=lambda o: (found[o[0]]["float_values"], found[o[0]]["chosen"]["error"]))
    recipe["float_adds"] = {"searched": found}
    if not usable:
        return None
    label, q = usable[0]
    before = q.fallback_float
    q.fallback_float = tuple(dict.fromkeys((*before, *found[label]["float_adds"])))
    worst = q.worst_calibration_cosine()
    recipe["float_adds"].update(shipped=label, worst_cosine_as_built=round(worst, 5))
    if worst < bar:
        q.fallback_float = before
        return None
    entry = next(p for p in q.passes if p["name"] == "deep-residual-recipe")
    entry["config"] = {**recipe, **entry["config"], "float_adds": recipe["float_adds"]}
    return q
