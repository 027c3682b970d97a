"""``--max-accuracy-drop``: keep the most sensitive layers in higher precision until the drop fits.

The gate drives the pipeline's lower-and-verify step (``attempt``), so every number it
reports comes from the target's own runner on the evaluation data, and the bundle left in
place is the one last verified:

1. Build and verify the plain quantized model. Within budget: done.
2. Ask the target which fallbacks it supports (`Target.fallback_options`): ``keep-float``
   (runtimes that mix precisions: OpenVINO, TensorRT, onnxruntime), ``calib-method``
   (integer-only runtimes: the MCU C code), ``int8`` (int4 weights back to int8). A target
   with none (arm: the TFLite converter quantizes by itself) fails with the measured drop.
3. Rank the candidate fallbacks by their measured effect: each alone on top of the current
   state, on the Q/DQ ONNX run as written in onnxruntime (`edgec.compiler.sensitivity`,
   `quality.exact_qdq_session`: the same on every CPU). Cheap moves
   first (another calibration range for one tensor, bias correction), float/int8
   fallbacks only when those are not enough. Bias correction's per-layer shifts (a model run
   per biased layer) are measured once, on the first state that asks for them, and reused
   by every later candidate (`Int8Quantizer.freeze_bias_correction`).
4. Add them best first, keeping one only when it lowers the onnxruntime drop of everything
   kept so far (so interacting fallbacks never stack into a worse model); whenever the
   drop fits, re-lower and re-verify with the target. Stop at the first build within budget.
   When onnxruntime is within budget from the start and the target is not (a near-tie sample
   that the target's runtime rounds the other way), keep the moves that widen onnxruntime's
   margin instead (`Evaluator.shortfall`), re-verifying with the target after each.
5. When single moves stall (the error is spread over many layers, each of which barely moves the
   drop alone), keep the shortest ranked prefix of layers in float that fits, found by binary
   search and verified by the target (`edgec.compiler.gate_groups`): if keeping layers in float
   can reach the budget at all, the gate reaches it.
6. Otherwise fail with the best result found, the layers responsible and a diagnosis of
   where the error comes from (a tensor range, or the target's runtime when onnxruntime
   runs the same Q/DQ model within budget). A failed gate writes no bundle, so the gate
   never ships anything worse than the plain build it started from.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from edgec.compiler.gate_groups import GOAL_MARGIN, group_phase
from edgec.compiler.quality import resolve_metric, run_onnx
from edgec.compiler.sensitivity import HEADROOM_EPS, Evaluator, FallbackState, rank
from edgec.errors import AccuracyError

if TYPE_CHECKING:
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.progress import Progress

SENSITIVITY_MAX_SAMPLES = 256  # evaluation samples used for the onnxruntime ranking
MAX_TARGET_ATTEMPTS = 6  # lower + verify runs after the first
MAX_ROUNDS = 4  # sensitivity rankings per phase (each from the state the previous one left)
MAX_TRIES_PER_ROUND = 12  # ranked fallbacks tried on top of the kept ones, per ranking
IMPROVEMENT_EPS = 1e-6
STALL_SHARE = 0.25  # a greedy keep-float round winning back less of the excess drop has stalled
CHEAP_KINDS = ("calib-method", "bias-correction", "weight-rounding")  # tried before anything goes to float or int8
REPORT_TOP = 10

Attempt = Callable[..., tuple[dict[str, Any], Any, dict[str, Any], Any]]


def run_gate(config: "BuildConfig", target, quantizer, attempt: Attempt, eval_samples: list, labels,
             classifier: bool, progress: "Progress") -> tuple[dict[str, Any], Any, dict[str, Any], dict[str, Any]]:
    """Build until the metric's drop is within ``config.gate.max_accuracy_drop``.

    Args:
        config: The build config (budget, metric, ``keep_float``).
        target: The `Target`.
        quantizer: `Int8Quantizer` / `Int4Quantizer`, or None when nothing was quantized here.
        attempt: ``attempt(quant, keep_float, quant_summary, store=True) -> (manifest, lowered,
            accuracy, recorder)``: lowers into the bundle folder and verifies.
        eval_samples: Evaluation feeds (model convention).
        labels: Labels of ``eval_samples`` or None.
        classifier: Whether the first output holds class scores.
        progress: Progress reporter.

    Returns:
        ``(manifest, lowered, accuracy, gate_report)`` of the accepted build.

    Raises:
        AccuracyError: No combination of fallbacks met the budget (one line: best drop, the
            fallbacks tried, the most sensitive layers).
    """
    metric = resolve_metric(config.gate.metric, has_labels=labels is not None, classifier=classifier)
    budget = float(config.gate.max_accuracy_drop)
    state = FallbackState(keep_float=tuple(config.keep_float))
    steps: list[dict[str, Any]] = []

    def real(st: FallbackState):
        quant, summary = st.quantize(quantizer) if quantizer is not None else (None, None)
        try:
            manifest, lowered, accuracy, rec = attempt(quant, st.keep_float, summary, store=True)
        except AccuracyError as exc:  # the target's own check (jetson's int8 error bound) refused it
            return None, math.inf, None, str(exc)
        d = metric.drop(rec.outputs["artifact"], rec.outputs["reference"], labels)
        return (manifest, lowered, accuracy), d, rec, None

    progress.message(f"accuracy gate: {metric.name}, budget {budget:g} ({metric.unit})")
    if hasattr(quantizer, "freeze_bias_correction"):  # bias correction's shifts measured once, not per candidate
        quantizer.freeze_bias_correction()
    res, drop, rec, refused = real(state)
    if quantizer is None and target.gate_moves and drop > budget:
        report = {"metric": metric.name, "unit": metric.unit, "budget": budget,
                  "steps": [{"fallbacks": 0, "target_drop": drop} | ({"target_refused": refused} if refused else {})]}
        return _run_moves(config, target, attempt, metric, labels, (drop, res), report, progress)
    if rec is not None:
        refs = rec.outputs["reference"]
    elif quantizer is not None:
        refs = run_onnx(quantizer.reference.proto, eval_samples)
    else:
        raise AccuracyError(refused)
    ref_score = metric.score(refs, refs, labels)
    steps.append({"fallbacks": 0, "target_drop": drop} | ({"target_refused": refused} if refused else {}))
    report: dict[str, Any] = {"metric": metric.name, "unit": metric.unit, "budget": budget,
                              "reference_score": ref_score, "samples": len(refs), "steps": steps}
    if drop <= budget:
        return (*res, _finish(report, drop, state))

    kinds = tuple(k for k in target.fallback_options() if quantizer is not None and k in quantizer.fallback_kinds)
    if not kinds:
        why = _no_fallback_reason(target, quantizer)
        raise AccuracyError(f"accuracy drop {drop:.3g} ({metric.unit}) exceeds --max-accuracy-drop {budget:g} and "
                            f"{why}")
    n = min(len(eval_samples), SENSITIVITY_MAX_SAMPLES)
    evaluator = Evaluator(quantizer, eval_samples[:n], refs[:n], labels[:n] if labels is not None else None, metric)
    progress.message(f"accuracy drop {drop:.3g} > {budget:g}: ranking {', '.join(kinds)} fallbacks in onnxruntime")
    best = (drop, state, res)
    tries, pending, ranked_all = 0, False, []

    def try_target(st: FallbackState, step: dict[str, Any]):
        nonlocal tries, pending, best
        progress.message(f"re-lowering with {len(st.applied)} fallback(s)")
        r, d, _, refused = real(st)
        tries, pending = tries + 1, False
        report["work"] = {**evaluator.work(), "target_builds": tries + 1}
        step["target_drop"] = d
        if refused:
            step["target_refused"] = refused
        if d < best[0]:
            best = (d, st, r)
        return r, d

    # Cheap moves (another range for one tensor, bias correction) before float fallbacks;
    # a move is kept only when it lowers the onnxruntime drop of everything kept so far, so
    # fallbacks that interact badly are never stacked.
    current = evaluator.drop(state)
    report["onnxruntime_drop"] = current
    # onnxruntime within budget, the target not: the target's runtime rounds a little differently
    # and loses a near-tie sample onnxruntime keeps by a hair. No fallback can lower onnxruntime's
    # drop then, so moves are ranked and kept by the margin they win instead (`Evaluator.shortfall`).
    headroom = current <= budget
    if headroom:
        report["headroom"] = {"shortfall_before": evaluator.shortfall(state)}
    phases = [p for p in ((k for k in kinds if k in CHEAP_KINDS), (k for k in kinds if k not in CHEAP_KINDS))]
    for phase in (tuple(p) for p in phases):
        if not phase:
            continue
        for _ in range(MAX_ROUNDS):
            round_start = current
            _, ranked = rank(evaluator, state, phase, progress, headroom=headroom)
            if not report.get("sensitivity") and ranked:
                report["sensitivity"] = [fb.to_json() for fb in ranked[:REPORT_TOP]]
            ranked_all += ranked
            improved = False
            for fb in ranked[:MAX_TRIES_PER_ROUND]:
                if fb.kind == "int8" and fb.key in state.keep_float:
                    continue  # already in float
                cand = state.plus(fb)
                d = evaluator.drop(cand)
                step: dict[str, Any] = {"fallbacks": len(cand.applied), "added": fb.describe(), "onnxruntime_drop": d}
                steps.append(step)
                if headroom:
                    step["onnxruntime_shortfall"] = evaluator.shortfall(cand)
                if (d > current or step["onnxruntime_shortfall"] >= evaluator.shortfall(state) - HEADROOM_EPS
                        if headroom else d >= current - IMPROVEMENT_EPS):
                    step["kept"] = False  # does not help on top of the fallbacks already kept
                    continue
                state, current, pending, improved = cand, d, True, True
                step["kept"] = True
                if current <= budget:
                    res, drop = try_target(state, step)
                    if drop <= budget:
                        return (*res, _finish(report, drop, state))
                    if tries >= MAX_TARGET_ATTEMPTS:
                        break
            # A keep-float round that wins back less than `STALL_SHARE` of what is over budget has stalled:
            # the error is spread over many layers, the group phase takes over (each round costs minutes).
            stalled = "keep-float" in phase and not headroom and \
                round_start - current < STALL_SHARE * (round_start - budget)
            if not improved or stalled or current <= budget or tries >= MAX_TARGET_ATTEMPTS:
                break
        if tries >= MAX_TARGET_ATTEMPTS:
            break
    if "keep-float" in kinds and tries < MAX_TARGET_ATTEMPTS:
        # Single moves stalled (the error is spread over many layers): a ranked prefix of layers in float.
        goal = budget if not headroom else budget - (best[0] - current) - GOAL_MARGIN * budget
        found = group_phase(evaluator, state, budget, try_target, lambda: MAX_TARGET_ATTEMPTS - tries, progress,
                            report, goal=goal)
        if found is not None:
            res, drop, state = found
            return (*res, _finish(report, drop, state))
    if pending and tries < MAX_TARGET_ATTEMPTS:
        res, drop = try_target(state, steps[-1])
        if drop <= budget:
            return (*res, _finish(report, drop, state))
    report["work"] = {**evaluator.work(), "target_builds": tries + 1}
    ranked = sorted(ranked_all, key=lambda fb: fb.drop)
    b_drop, b_state, _ = best
    if math.isinf(b_drop):
        raise AccuracyError(f"--max-accuracy-drop {budget:g} not met on target '{target.name}': the target refused "
                            f"every attempt ({steps[-1].get('target_refused') or steps[0].get('target_refused')})")
    kept = "; ".join(fb.describe() for fb in b_state.applied) or "no fallback helped"
    worst = ", ".join(f"{fb.key} ({fb.op or fb.value})" for fb in ranked[:3]) or "none found"
    cause = _diagnose(report, steps, current, b_drop, budget, ranked)
    raise AccuracyError(
        f"--max-accuracy-drop {budget:g} not met on target '{target.name}': best drop {b_drop:.3g} ({metric.unit}) "
        f"with {len(b_state.applied)} fallback(s) [{kept}]; most sensitive: {worst}; {cause}; try --precision "
        "fp16/fp32, another --calib-method, more representative --calib data, or a larger budget")


def _run_moves(config: "BuildConfig", target, attempt: Attempt, metric, labels, plain: tuple, report: dict[str, Any],
               progress: "Progress") -> tuple[dict[str, Any], Any, dict[str, Any], dict[str, Any]]:
    """Re-lower with the target's own moves (`Target.gate_moves`) until one is within budget.

    For targets whose converter quantizes by itself (arm: 16x8, the quantizer's deny-list):
    each move is measured by the target's runner; the first within budget is kept.
    """
    from edgec.errors import EdgecError

    budget = float(config.gate.max_accuracy_drop)
    best_drop, best_move = plain[0], None
    worst_ops: list = []
    for move in target.gate_moves:
        what = ", ".join(f"{k}={v}" for k, v in move.items())
        step: dict[str, Any] = {"move": dict(move)}
        report["steps"].append(step)
        scored = target.move_scored(move, plain[1][0]) if plain[1] is not None else None
        if scored:  # the plain build's own fallback ladder built and scored this model, and shipped its best
            step["skipped"] = f"scored by {scored}"
            continue
        progress.message(f"accuracy drop {best_drop:.3g} > {budget:g}: re-lowering with {what}")
        try:
            manifest, lowered, accuracy, rec = attempt(None, tuple(config.keep_float), None, store=True, options=move)
        except EdgecError as exc:  # a move the converter cannot build (an op without a 16x8 kernel)
            step["error"] = str(exc).splitlines()[0][:300]
            continue
        d = metric.drop(rec.outputs["artifact"], rec.outputs["reference"], labels)
        step["target_drop"] = d
        quant = (manifest.get("target_info") or {}).get("quantization") or {}
        worst_ops = quant.get("debugger_worst") or worst_ops
        if d < best_drop:
            best_drop, best_move = d, move
        if d <= budget:
            report.update({"passed": True, "drop": d, "move": dict(move), "fallbacks": [{"kind": "move", **move}],
                           "float_nodes": quant.get("float_nodes", [])})
            return manifest, lowered, accuracy, report
    worst = ", ".join(f"{r['tensor']} ({r['op']}, rmse/scale {r['rmse_over_scale']:.3g})" for r in worst_ops[:3])
    cause = (f"the error comes from these ops' int8 ranges (TFLite quantization debugger): {worst}" if worst else
             "no op stands out: the error is spread over the model")
    report["diagnosis"] = cause
    tried = "; ".join(f"{', '.join(f'{k}={v}' for k, v in s['move'].items())}: "
                      + (f"drop {s['target_drop']:.3g}" if "target_drop" in s else s["skipped"] if "skipped" in s
                         else f"failed ({s.get('error')})")
                      for s in report["steps"] if "move" in s)
    best = ", ".join(f"{k}={v}" for k, v in best_move.items()) if best_move else "plain int8"
    raise AccuracyError(
        f"--max-accuracy-drop {budget:g} not met on target '{target.name}': plain int8 "
        f"{'refused' if math.isinf(plain[0]) else f'drop {plain[0]:.3g}'} {metric.unit}, best {best_drop:.3g} with {best}; tried {tried}; {cause}; try --precision fp16 or "
        "int8-dynamic, or a larger budget")


def _diagnose(report: dict[str, Any], steps: list[dict[str, Any]], ort_drop: float, target_drop: float,
              budget: float, ranked: list) -> str:
    """Which pattern the remaining error comes from, for the failure message and the report."""
    group = report.get("group_phase") or {}
    verified = [s["step"] for s in group.get("searches", []) if "step" in s]
    if verified:  # the group phase fit onnxruntime with layers in float, the target did not follow
        ort_drop, target_drop = verified[-1]["onnxruntime_drop"], verified[-1].get("target_drop", target_drop)
    if "all_float_onnxruntime_drop" in group and not verified:
        cause = (f"keeping all {group['layers_ranked']} quantized layers in float still loses "
                 f"{group['all_float_onnxruntime_drop']:.3g} in onnxruntime: the error does not come from the int8 "
                 "layers but from what stays quantized around them (model inputs/outputs, a graph rewrite); compare "
                 "with `edgec debug layers`")
    elif ort_drop <= budget < target_drop:
        cause = (f"the error comes from the target's runtime, not the ranges: onnxruntime runs the same Q/DQ model "
                 f"within budget (drop {ort_drop:.3g}) but the target's build loses {target_drop:.3g} (an op it "
                 "executes differently, or a lowering bug; compare with `edgec debug layers --runtime target`)")
    elif not ranked:
        cause = ("no single layer or tensor range explains the error: it is spread over many layers (try "
                 "--precision fp16 or per-layer diagnosis with `edgec debug layers`)")
    else:
        top = ranked[0]
        what = f"the range of tensor {top.key}" if top.kind == "calib-method" else f"{top.key} ({top.op})"
        cause = (f"the error comes mostly from {what}: alone it lowers the onnxruntime drop to {top.drop:.3g}, "
                 "but the budget needs more than the fallbacks tried")
    report["diagnosis"] = cause
    return cause


def _finish(report: dict[str, Any], drop: float, state: FallbackState) -> dict[str, Any]:
    report.update({"passed": True, "drop": drop,
                   "kept_float": [fb.key for fb in state.applied if fb.kind == "keep-float"],
                   "int8_instead_of_int4": [fb.key for fb in state.applied if fb.kind == "int8"],
                   "calib_method_overrides": {fb.key: fb.value for fb in state.applied if fb.kind == "calib-method"},
                   "bias_correction": state.bias_correction,
                   **({"weight_rounding": state.weight_rounding} if state.weight_rounding else {}),
                   "fallbacks": [{**fb.to_json(), "why": fb.why or f"alone it lowers the onnxruntime drop from "
                                                                   f"{fb.base:.4g} to {fb.drop:.4g}"}
                                 for fb in state.applied]})
    return report


def _no_fallback_reason(target, quantizer) -> str:
    if quantizer is None:
        if target.quant_scheme is None:
            return (f"target {target.name} cannot keep layers in float or change their calibration (it quantizes "
                    "with its own converter); try --precision fp16 or a larger budget")
        return "nothing was quantized by edgec at this precision, so there is no layer to fall back"
    opts = target.fallback_options()
    if not opts:
        return f"target {target.name} cannot keep layers in float; try --precision fp16 or a larger budget"
    return (f"target {target.name} supports only {', '.join(opts)} fallbacks, which do not apply to "
            f"{quantizer.kind} quantization; try --precision fp16 or a larger budget")
