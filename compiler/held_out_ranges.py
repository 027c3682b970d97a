"""``--calib-method held-out``: one range method for the whole model, picked on held-out samples.

A full-integer target (the mcu C) has no float fallback and one scale per tensor, so the
calibration method is its main accuracy lever, and no single method wins on every model.
Measured on the real-model corpus (mcu int8, worst sample against float):

- BlazeFace full range (sparse): min/max 0.9785, percentile 0.9847 (the 99.99th percentile
  trims a few rare peaks in the residual stream);
- BlazeFace short range: min/max 0.9907, percentile 0.969 (its rare large face logits are the
  signal a percentile clips).

So each candidate (`QuantScheme.held_out_methods`) is measured: the calibration samples
split into two folds, each candidate's ranges come from one fold and its Q/DQ model runs
in onnxruntime on the other (both ways), so a range fitted to its own samples' extremes is
not rewarded for that. The Q/DQ graph runs as written (`quality.exact_qdq_session`), so the
choice is the same on every CPU: through onnxruntime's fused int8 kernels on an AVX2 EPYC (no
VNNI: saturating int16 pair sums) blazeface-short mcu scored min/max 0.740, percentile 0.751 and
shipped percentile; as written 0.977 and 0.968, min/max. The score is the worst cosine against
float over the held-out samples and outputs, averaged over the folds; classifiers compare top-1
agreement first.
The winner's ranges then come from every sample. The per-tensor ``auto`` search scores the
mean error instead, which the one sample that breaks a detector hardly moves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    from edgec.calibration import TensorRange

MIN_FOLD_SAMPLES = 2



def fold_pairs(pool: list) -> list[tuple[list, list]]:
    """``[(fit, held-out)]``: the even samples against the odd ones and back; [] when a fold would hold
    fewer than `MIN_FOLD_SAMPLES`."""
    if len(pool) < 2 * MIN_FOLD_SAMPLES:
        return []
    return [(pool[0::2], pool[1::2]), (pool[1::2], pool[0::2])]

def held_out_cosine(got: list[dict[str, np.ndarray]], want: list[dict[str, np.ndarray]]) -> float:
    """`metrics.worst_cosine`, except that an output of under `metrics.MIN_COSINE_ELEMENTS` values is scored
    over all samples at once (as `benchmarks/conformance.py` scores it)."""
    from edgec.runtimes.metrics import MIN_COSINE_ELEMENTS, check_cosine, worst_cosine

    tiny = [k for k in want[0] if np.asarray(want[0][k]).size < MIN_COSINE_ELEMENTS]
    big = [k for k in want[0] if k not in tiny]
    worst = worst_cosine([[g[k] for k in big] for g in got], [[w[k] for k in big] for w in want])
    for k in tiny:
        worst = min(worst, check_cosine(np.concatenate([np.ravel(g[k]) for g in got]),
                                        np.concatenate([np.ravel(w[k]) for w in want])))
    return worst


def _top1(got: list[dict[str, np.ndarray]], want: list[dict[str, np.ndarray]]) -> float:
    from edgec.runtimes.metrics import top1_agreement

    name = next(iter(want[0]))
    return top1_agreement(np.stack([np.ravel(w[name]) for w in want]), np.stack([np.ravel(g[name]) for g in got]))


def choose_held_out(model_proto, reference_proto, samples: list, methods: tuple[str, ...],
                    quantize: Callable[["dict[str, TensorRange]"], Any], classifier: bool = False,
                    ) -> tuple[str, dict[str, Any]]:
    """The method of ``methods`` whose Q/DQ model (``quantize(ranges).proto``) agrees best on held-out samples.

    Args:
        model_proto: The float model the ranges are collected on (after equalization).
        reference_proto: The float model the quantized one is compared with.
        samples: Calibration samples (model-input feeds).
        methods: Registered observer names to choose from.
        quantize: Builds the Q/DQ model for a ranges dict.
        classifier: Compare top-1 agreement first.

    Returns:
        The winning method and the report (scores per method, how it was scored).
    """
    from edgec.calibration import collect_ranges
    from edgec.compiler.quality import ort_session, run_exact_qdq, run_onnx

    pool = list(samples)
    folds = fold_pairs(pool) or [(pool, pool)]
    held_out = len(folds) > 1
    want = run_onnx(reference_proto, pool, session=ort_session(reference_proto))
    want_of = {id(s): w for s, w in zip(pool, want)}
    scores: dict[str, float] = {}
    top1: dict[str, float] = {}
    best: tuple[tuple[float, ...], str] | None = None
    for method in methods:
        worst, got_all, want_all = [], [], []
        for fit, held in folds:
            quant = quantize(collect_ranges(model_proto, fit, method))
            got = run_exact_qdq(quant.proto, held)
            ref = [want_of[id(s)] for s in held]
            worst.append(held_out_cosine(got, ref))
            got_all, want_all = got_all + got, want_all + ref
        scores[method] = round(float(np.mean(worst)), 6)
        key: tuple[float, ...] = (scores[method],)
        if classifier:
            top1[method] = round(_top1(got_all, want_all), 6)
            key = (top1[method], scores[method])
        if best is None or key > best[0]:
            best = (key, method)
    assert best is not None
    info: dict[str, Any] = {"method": best[1], "scores": scores,
                            "scored_on": f"held-out, 2 folds of {len(pool)}" if held_out else "calibration samples"}
    if classifier:
        info["top1"] = top1
    return best[1], info


def pick_on_folds(model_proto, samples: list, refs: list, choices: dict[str, dict[str, str]], methods,
                  tensors: list[str] | None, quantize: Callable[["dict[str, TensorRange]"], Any]) -> dict[str, Any]:
    """Which per-tensor method choice (``{name: {tensor: method}}``) errs least on held-out halves.

    ``--calib-method auto`` scores its choices on the samples their ranges came from, and its many
    single-tensor switches then fit those images: blazeface-short jetson's refined choice scored
    0.0141 there, 0.0194 held out (percentile 99.999 everywhere: 0.0186) and 0.968 worst cosine on
    photos of neither (0.987). Here each choice's ranges come from one fold (`fold_pairs`) and its
    relative output error (`runtimes.metrics.relative_output_error`) is measured on the other, both ways; ties go to
    the first choice. {} when there are too few samples for two folds.
    """
    from edgec.calibration.collect import collect_ranges_multi
    from edgec.compiler.quality import run_exact_qdq
    from edgec.runtimes.metrics import relative_output_error

    folds = fold_pairs(samples)
    if not folds:
        return {}
    ref_of = {id(s): r for s, r in zip(samples, refs)}
    fold_alts = [collect_ranges_multi(model_proto, fit, methods, tensors=tensors) for fit, _ in folds]
    errors: dict[str, float] = {}
    for name, choice in choices.items():
        errs = []
        for alt, (_, held) in zip(fold_alts, folds):
            ranges = {**alt["minmax"], **{t: alt[m][t] for t, m in choice.items() if t in alt[m]}}
            got = run_exact_qdq(quantize(ranges).proto, held)
            errs.append(relative_output_error(got, [ref_of[id(s)] for s in held]))
        errors[name] = round(float(np.mean(errs)), 8)
    pick = min(errors, key=lambda n: errors[n])  # the first of equals: dicts keep their order
    return {"picked": pick, "errors": errors, "scored_on": f"2 folds of {len(samples)}"}
