"""Symmetric depthwise outputs (`QuantScheme.symmetric_depthwise_outputs`), kept where they cost no accuracy.

A depthwise conv's output without an activation (MediaPipe's BlazeBlocks, ShuffleNet's and Keras'
separable convs, all read by a 1x1 conv) is about as negative as positive. On a symmetric grid
OpenVINO's CPU plugin folds its quantize into the conv's output scale; on a shifted one it runs a
FakeQuantize post-op on every output, which a depthwise conv's 9 products per output do not
amortize (iris-landmark: 26 depthwise convs 12 % slower than NNCF's, the same kernels otherwise).

The wider step is not free everywhere: blazeface-short's worst calibration cosine fell 0.9929 -> 0.9895,
where iris-landmark, face-landmark and the other BlazeFaces held or rose. So the build measures both
grids on the calibration samples (the Q/DQ graph as written) and keeps the symmetric one where its
worst-sample error grows by at most `ERROR_GROWTH`, or by at most `NOISE` in cosine: iris-landmark's
0.99976 -> 0.99971 is 1.2x the error, and below what 16 samples resolve (its eval: 0.99967 -> 0.99961).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgec.compiler.progress import Progress
    from edgec.compiler.quant_stage import Int8Quantizer

# Worst calibration error (1 - cosine) with symmetric depthwise outputs over the error without them.
ERROR_GROWTH = 1.1
# ... or the worst cosine lower by at most this much.
NOISE = 2e-4


def choose(q: "Int8Quantizer", progress: "Progress") -> "Int8Quantizer":
    """``q``, or the same quantizer with shifted depthwise outputs where the symmetric ones cost accuracy."""
    import dataclasses

    from edgec.compiler.quantize import symmetric_depthwise_outputs

    share = q.scheme.symmetric_depthwise_outputs
    tensors = symmetric_depthwise_outputs(q.model.proto, q.ranges, share) if share is not None else []
    if not tensors:
        return q
    progress.message(f"measuring symmetric grids on {len(tensors)} depthwise outputs")
    shifted = type(q)(q.model, q.reference, q.ranges, dataclasses.replace(q.scheme, symmetric_depthwise_outputs=None),
                      q.calibration, q.bias_correction, list(q.passes))
    shifted.calib_method, shifted.weight_rounding, shifted.fallback_float = q.calib_method, q.weight_rounding, \
        q.fallback_float
    with_sym, without = q.worst_calibration_cosine(), shifted.worst_calibration_cosine()
    kept = 1.0 - with_sym <= max(ERROR_GROWTH * (1.0 - without), 1.0 - without + NOISE)
    chosen = q if kept else shifted
    info: dict[str, Any] = {"tensors": len(tensors), "worst_cosine_symmetric": round(with_sym, 5),
                            "worst_cosine_shifted": round(without, 5), "kept": kept}
    chosen.passes.append({"name": "symmetric-depthwise-outputs", "config": info})
    return chosen
