"""Trust by default: a quantized build below an accuracy floor fails unless the user accepts it.

Without ``--max-accuracy-drop`` the pipeline still checks the verified artifact against
the float model on real evaluation data: mean cosine of any output below
`MIN_COSINE` (a collapsed second output fails too), or top-1 agreement below `MIN_TOP1_AGREEMENT` on classifiers, fails the build
with the layers that add the most error (as ``edgec debug layers`` ranks them) and the two
ways forward: ``--max-accuracy-drop X`` (the gate wins accuracy back) or
``--accept-low-accuracy``. Both floors were measured on real third-party models with real
photos (benchmarks/quant_corpus.py): a working int8 build sits above them, a broken one
(per-tensor depthwise activations on PP-LCNet: top-1 agreement 0.69) below.

Calibration on random data cannot say anything about accuracy: the build passes and the
report says that accuracy is unknown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgec.errors import AccuracyError

if TYPE_CHECKING:
    from edgec.compiler.model import ModelHandle

MIN_COSINE = 0.98
MIN_TOP1_AGREEMENT = 0.9
DIAGNOSIS_SAMPLES = 8
DIAGNOSIS_LAYERS = 3
ACCURACY_UNKNOWN = ("accuracy unknown: calibrated on random data (--calib random), so neither the ranges nor the "
                    "accuracy check reflect real inputs; pass --calib with real samples")


def below_floor(accuracy: dict[str, Any], classifier: bool) -> list[str]:
    """What falls below the floor (empty: it holds)."""
    out = []
    cos = accuracy.get("cosine")
    if cos is not None and cos < MIN_COSINE:
        out.append(f"cosine {cos:.4f} < {MIN_COSINE}")
    for name, c in list((accuracy.get("cosine_per_output") or {}).items())[1:]:  # the first is ``cosine``
        if c is not None and not c >= MIN_COSINE:
            out.append(f"output '{name}' cosine {c:.4f} < {MIN_COSINE}")
    top1 = accuracy.get("top1_agreement")
    if classifier and top1 is not None and top1 < MIN_TOP1_AGREEMENT:
        out.append(f"top-1 agreement {top1:.3f} < {MIN_TOP1_AGREEMENT}")
    return out


def check_floor(accuracy: dict[str, Any], classifier: bool, float_model: "ModelHandle", quant: "ModelHandle | None",
                samples: list, target: str, precision: str) -> None:
    """Raise `AccuracyError` (one line, with the per-layer diagnosis) when the artifact is below the floor."""
    failed = below_floor(accuracy, classifier)
    if not failed:
        return
    raise AccuracyError(
        f"{target} {precision} artifact is below the accuracy floor against the float model ({'; '.join(failed)}); "
        f"{_diagnosis(float_model, quant, samples)}; pass --max-accuracy-drop X to let the accuracy gate win it "
        "back, or --accept-low-accuracy to ship it as is")


def _diagnosis(float_model: "ModelHandle", quant: "ModelHandle | None", samples: list) -> str:
    if quant is None:
        return "the target quantized it itself, so edgec has no per-layer view (build with --accept-low-accuracy " \
               "and run `edgec debug layers BUNDLE --data DATA`)"
    from edgec.compiler.debug_layers import compare_layers

    try:
        rows = compare_layers(float_model.proto, quant.proto, samples[:DIAGNOSIS_SAMPLES])
    except Exception as exc:  # noqa: BLE001 - the diagnosis must not hide the accuracy failure
        return f"per-layer diagnosis failed ({type(exc).__name__})"
    rows = sorted((r for r in rows if (r.get("added_noise") or 0) > 0), key=lambda r: -r["added_noise"])
    worst = ", ".join(f"{r['node']} ({r['op']}, SQNR {r['sqnr_db']:.1f} dB, adds {100 * r['added_noise']:.1f}% noise)"
                      for r in rows[:DIAGNOSIS_LAYERS])
    return f"layers adding the most error (edgec debug layers): {worst or 'none found'}"
