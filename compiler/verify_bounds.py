"""Pass/fail bounds for `edgec verify`: an explicit bound, or the bundle's own build-time result.

A verify that measures cosine 0.2 must not exit 0. Without options the bounds come from the
bundle's ``report.json`` (what the build itself measured) minus a small tolerance, since the
verify data may differ from the build's evaluation data.
"""

from __future__ import annotations

from typing import Any

# Cosine may be a little lower on other data than on the build's own evaluation samples.
COSINE_TOLERANCE = 0.02
# Points of top-1 accuracy (labels) the artifact may lose beyond its build-time drop.
ACCURACY_DROP_TOLERANCE = 1.0
# Used when the bundle's report has no cosine (an older or hand-made bundle).
FALLBACK_MIN_COSINE = 0.9


def resolve(report: dict[str, Any], min_cosine: float | None, max_accuracy_drop: float | None) -> dict[str, Any]:
    """The bounds to apply and where each comes from (``option``, ``bundle`` or ``default``)."""
    acc = report.get("accuracy") or {}
    bounds: dict[str, Any] = {"min_cosine": min_cosine, "max_accuracy_drop": max_accuracy_drop, "from": {}}
    if min_cosine is not None:
        bounds["from"]["min_cosine"] = "option"
    elif isinstance(acc.get("cosine"), (int, float)):
        bounds["min_cosine"] = max(0.0, float(acc["cosine"]) - COSINE_TOLERANCE)
        bounds["from"]["min_cosine"] = "bundle"
    else:
        bounds["min_cosine"] = FALLBACK_MIN_COSINE
        bounds["from"]["min_cosine"] = "default"
    if max_accuracy_drop is not None:
        bounds["from"]["max_accuracy_drop"] = "option"
    elif isinstance(acc.get("accuracy_drop"), (int, float)):
        bounds["max_accuracy_drop"] = max(0.0, 100.0 * float(acc["accuracy_drop"])) + ACCURACY_DROP_TOLERANCE
        bounds["from"]["max_accuracy_drop"] = "bundle"
    return bounds


def failures(result: dict[str, Any], bounds: dict[str, Any]) -> list[str]:
    """Human-readable reasons why ``result`` (a `compare` block) breaks ``bounds``; empty when it passes."""
    out = []
    cos, lo = result.get("cosine"), bounds.get("min_cosine")
    if lo is not None and (cos is None or not cos >= lo):
        origin = {"bundle": "the bundle's build-time cosine minus "
                            f"{COSINE_TOLERANCE:g}", "option": "--min-cosine", "default": "the default"}
        out.append(f"cosine {_num(cos)} is below {lo:.4g} ({origin[bounds['from']['min_cosine']]})")
    drop, hi = result.get("accuracy_drop"), bounds.get("max_accuracy_drop")
    if hi is not None and drop is not None and not 100.0 * drop <= hi:
        origin = {"bundle": f"the build-time drop plus {ACCURACY_DROP_TOLERANCE:g}", "option": "--max-accuracy-drop"}
        out.append(f"top-1 accuracy drop {100.0 * drop:.3g} points is above {hi:.3g} "
                   f"({origin[bounds['from']['max_accuracy_drop']]})")
    return out


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4g}"
