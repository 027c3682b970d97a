"""The intel-cpu target: OpenVINO IR (.xml/.bin) for Intel CPUs, FP32/FP16/INT8, INT4 weight-only.

INT4 models arrive as ONNX with int4/uint4 block-wise DequantizeLinear weights (see
`edgec.compiler.int4`); OpenVINO converts them to compressed weights that its CPU plugin
runs as int4 FullyConnected kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from edgec.compiler.accuracy_floor import MIN_COSINE
from edgec.targets.base import RECURRENT_OPS, LowerResult, LowerSpec, QuantScheme, Target, TargetOption

if TYPE_CHECKING:
    from edgec.compiler.model import ModelHandle

# What OpenVINO's CPU plugin runs on int8 data when its inputs are quantized (the ops NNCF's CPU
# config quantizes): without Q/DQ they run in f32 between Reorders and requantize round trips.
INT8_INPUT_OPS = frozenset({"Add", "Mul", "Resize", "GlobalAveragePool", "ReduceMean", "AveragePool"})
# A deep residual stream (BlazeFace: 16-31 blocks) keeps its Adds int8, fused into the convs as NNCF's are: every
# depthwise -> pointwise link equalized, bias correction, and min/max ranges, which hold the stream's rare large
# values that mse clips on a sample unlike the calibration ones (blazeface-short, OpenVINO, eval samples: float
# Adds + mse 0.99707 mean / 0.98109 worst cosine at 0.83x NNCF's CPU time; int8 Adds + mse 0.99675 / 0.97017;
# int8 Adds + min/max 0.99800 / 0.98772 at 0.98-1.02x; NNCF 0.9688 / 0.8798).
DEEP_RESIDUAL_OVERRIDES = (("equalize_min_spread", 1.0), ("calib_method", "minmax"))
# ... except where even so a calibration sample falls under the accuracy floor (`accuracy_floor.MIN_COSINE`, measured
# as the Q/DQ graph is written, so the same on every CPU; 0.983 while the choice ran on fused kernels): then the
# residual Adds stay float, with mse ranges (blazeface-back: the min/max recipe 0.914 on its worst calibration sample).
# With pair-bounded weights (`overflow_fix` 'pairs'), on an AVX2 EPYC natively (eval mean / worst, f32 kernels):
# blazeface-short's recipe holds at 0.9929: 0.9978 / 0.9816, 3 (on the 7-bit grid under 0.983 it kept 15 Adds float:
# 0.9973 / 0.9687, 33; NNCF 0.9689 / 0.8906, 3); blazeface-full-sparse's at 0.9818: 0.9897 / 0.9804, 8 (NNCF 0.9885 /
# 0.951, 8).
DEEP_RESIDUAL_FALLBACK = (("float_residual_adds", True), ("calib_method", "mse"))
# Its mse ranges are first tried with every Add int8, measured as built with bias correction and as the Q/DQ graph is
# written (`quality.exact_qdq_session`). Pair-bounded weights: blazeface-back 0.9842, eval 0.9904 / 0.907 with 3 f32
# kernels (every Add float: 0.9962 / 0.9727 with 40; NNCF 0.9842 / 0.912 with 3); with its depthwise outputs
# symmetric (`symmetric_depthwise_outputs`) the int8 Adds fall under the bar and it ships float Adds: eval
# 0.9952 / 0.972, 28 f32 kernels, edgec/NNCF speed 1.007 / 1.005. 8-bit weights, as VNNI runs them:
# worst calibration cosine min/max -> mse, blazeface-back 0.905 -> 0.983,
# blazeface-full-sparse 0.9825 -> 0.9882, blazeface-short 0.9799 -> 0.9863. All three keep every Add int8: f32
# kernels 24 -> 3 (NNCF 3), 12 -> 8 (NNCF 8), 3. Eval cosine mean / worst with each IR's FakeQuantize run in f32
# (the same on every CPU): blazeface-back 0.9942 / 0.967 (NNCF 0.9883 / 0.953; 21 float Adds 0.9973 / 0.979),
# full-sparse 0.9927 / 0.9895 (min/max 0.9882 / 0.9804), short 0.9959 / 0.970 (min/max 0.9969 / 0.986; NNCF
# 0.969 / 0.880 in OpenVINO).
# Before that fallback: float only the Adds whose int8 error per value is largest (`compiler.residual_add_search`),
# the worst calibration sample within this margin of the all-float model's and the mean error within 10 % of it
# (30 %: blazeface-back's onnxruntime eval worst fell to 0.956). blazeface-full-sparse: 3 of 19 Adds float (16 % of
# the values), f32 kernels 32 -> 12 (NNCF 8), edgec/NNCF perf counters 0.90 -> 0.99-1.01, eval cosine 0.9933 (NNCF
# 0.9906); blazeface-back: 13 of 31 (29 %, mse ranges), f32 kernels 40 -> 24, 0.85 -> 0.81-0.88 at load 12-15 (its
# depthwise convs, 1.28x NNCF's, are the rest), cosine 0.9968 (NNCF 0.9905).
DEEP_RESIDUAL_FLOAT_ADD_MARGIN = 0.003


class OpenVINOTarget(Target):
    """Lowers ONNX (float or Q/DQ) to OpenVINO IR with the openvino package."""

    name: ClassVar[str] = "intel-cpu"
    aliases: ClassVar[tuple[str, ...]] = ("openvino", "x86")
    description: ClassVar[str] = "Intel CPUs: OpenVINO IR (.xml/.bin), run by the OpenVINO CPU plugin"
    extra: ClassVar[str | None] = "openvino"
    required_modules: ClassVar[tuple[str, ...]] = ("openvino",)
    supported_precisions: ClassVar[tuple[str, ...]] = ("fp32", "fp16", "int8", "int4")
    default_precision: ClassVar[str] = "int8"
    runner: ClassVar[str] = "openvino"
    # OpenVINO's low-precision transformations fuse DQ->Conv/MatMul->(Q) into int8 kernels;
    # asymmetric int8 activations are supported, so keep the calibrated zero points.
    dependencies = ("openvino",)
    pruning_gains = {
        "magnitude": "none expected: OpenVINO's CPU plugin runs these layers with dense kernels and the IR stores "
                     "zeros densely; the gain is in compressed size",
        "nm": "none expected: no N:M sparse kernels in OpenVINO's CPU plugin",
    }
    quant_scheme: ClassVar[QuantScheme | None] = QuantScheme(
        activation_symmetric=False, placement="weighted",
        # Zero Pads too: BlazeBlocks' MaxPool -> channel Pad -> residual Add (face-landmark: 3 f32 Pads, NNCF's u8).
        hoist_through=("MaxPool", "Pad", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze"),
        # A residual MaxPool reads its input's pair (iris-landmark: 1.37x NNCF's latency from 4 f32
        # pools, each between a dequantize and a requantize).
        hoist_shared_sources=True,
        # ... and a stride-2 BlazeBlock's depthwise conv shares that pair with its MaxPool branch, as NNCF's
        # placement does (iris-landmark: 5 -> 1 f32 kernels, face-landmark 16 -> 1, NNCF 1; worst cosine
        # 0.99884 and 0.99949 vs NNCF's 0.99788 and 0.99282).
        pool_shares_depthwise_inputs=True,
        # mse ranges (cosine vs float, 16 samples: PP-OCRv4 det 0.986 vs minmax 0.973 / mean-minmax 0.968,
        # YOLOX 0.9996 vs 0.9993, PP-LCNet equal) and depthwise inputs per channel: above NNCF's default
        # on every corpus model (benchmarks/quant_quality.py --parts corpus). Conv pairs equalized
        # (blazeface-short 0.901 -> 0.948); bias correction in front of an LSTM (ddddocr CRNN 0.975 -> 0.993).
        quantize_embeddings=True, per_channel_depthwise_inputs=True, calib_method="mse",
        equalize_conv_pairs=True, bias_correction_ops=RECURRENT_OPS, weight_bias_correction=True,
        # A TFLite-born depthwise conv has an all-zero bias, which OpenVINO drops: the kernel folds the weights'
        # dequantization scale into its output FakeQuantize (2 fused ops, as NNCF's). A corrected bias there keeps
        # a per-channel Multiply and Add as post-ops (4): blazeface-full's 40 depthwise convs, 3 % of its time.
        # Accuracy held or rose (blazeface-full 0.9992 -> 0.9993, fer-emotion-tflite-dynq 0.9979 -> 0.9985).
        correct_zero_biases=False,
        # BlazeFace's 16-31 residual blocks: the int8 rounding of the residual stream and of the depthwise
        # outputs builds up; `DEEP_RESIDUAL_OVERRIDES` (int8 Adds, as fast as NNCF's placement).
        deep_residual_adds=16, deep_residual_overrides=DEEP_RESIDUAL_OVERRIDES,
        # Only where the stream needs it. Worst calibration cosine without the recipe: iris-landmark 0.9996,
        # face-landmark 0.9984 (skip it), blazeface-short 0.983 (keeps it).
        deep_residual_cosine=0.995,
        deep_residual_fallback=DEEP_RESIDUAL_FALLBACK, deep_residual_fallback_cosine=MIN_COSINE,
        deep_residual_float_add_margin=DEEP_RESIDUAL_FLOAT_ADD_MARGIN, deep_residual_float_add_error=0.1,
        int8_input_ops=INT8_INPUT_OPS,
        # A transformer's residual Adds stay float even behind a conv stem (ViT's patch embedding,
        # Whisper's Conv1d), where `in_conv_network` took them for a CNN's: per-tensor int8 on the
        # residual stream at every block cost deit_tiny 0.976 -> 0.9994 mean cosine (NNCF 0.996).
        # The scaled Q and K of an exported scaled_dot_product_attention (``Q * d**-0.25`` after the heads'
        # Reshape/Transpose) are quantized at their projection's output: the FullyConnected emits int8
        # and the head reshapes move int8 (deit_tiny: 116 -> 80 f32 kernels, NNCF 164).
        transformer_overrides=(("int8_input_ops", INT8_INPUT_OPS - {"Add", "Mul"}), ("hoist_scalar_muls", True)),
        # Attention's activation x activation MatMuls: int8 in the CPU plugin only without zero points
        # (mobilebert: 46 of 48 ran in f32 with an asymmetric second input; deit_tiny: its 12 Q @ K^T
        # with an asymmetric Q). NNCF's placement is symmetric there.
        symmetric_activation_matmuls=True,
        # A FullyConnected on a zero-shifted u8 input costs the plugin a zero-point compensation per inference
        # (AVX2, mobilebert's 93 128 -> 512 layers: 145 us each, 116 us on signed int8 as NNCF's): signed
        # inputs whose range is nearly balanced (NNCF's SmoothQuant balances them) are symmetric.
        symmetric_weighted_inputs=0.7,
        # A depthwise conv's shifted u8 output runs as a FakeQuantize post-op on every output, a symmetric one as an
        # output scale, as NNCF's (iris-landmark's 26 depthwise convs: 12 % slower with zero shifts). MediaPipe's
        # depthwise outputs (no activation before the 1x1 conv) are balanced, share 0.43-0.99.
        symmetric_depthwise_outputs=0.5,
        # Weights bounded where CPUs without VNNI (AVX2: many deployed Core, Atom, Celeron and EPYC parts) saturate
        # the int16 sums of u8 x s8 product pairs; NNCF's first-layer fix is not enough for equalized
        # depthwise-separable stacks. On an AVX2 EPYC, natively, with 8-bit weights: blazeface-back eval cosine
        # 0.93 / worst 0.43 (first layer 7-bit: 0.975 / 0.81; NNCF 0.984 / 0.912), mobilenet_v2 top-1 agreement
        # 0.69, the digits CNN 0.875. Each channel's scale is set by its largest pair of weights the kernels add
        # (`overflow_fix.py`), not by a 7-bit grid for all: minilm natively 0.9919 / 0.9878 on the 7-bit grid ->
        # 0.9930 / 0.9908. Depthwise convs keep 8 bits (no pair sums in their kernels).
        overflow_fix="pairs",
        # The LSTM on u8 data with int8 W, R (NNCF's placement): ddddocr-common's bidirectional LSTM (T 32, 512
        # units, 76 % of the float LSTM model's time) ran f32, 0.59x NNCF's speed; int8 there: 0.96-1.0x NNCF,
        # OV cosine vs float 0.99736 (f32 LSTM 0.99744, NNCF 0.961) in the same build.
        int8_recurrent_ops=frozenset({"LSTM"}),
        unified_scale_ops=frozenset({"Concat"}),
        # Depthwise inputs after a ReLU/ReLU6 on the unsigned per-channel grid, as NNCF's (edgec/NNCF speed, OpenVINO
        # perf counters / thread CPU, 1 thread, interleaved: benchmarks/ov_layer_profile.py): mobilenet_v2
        # 0.90/0.91 -> 1.04/1.02, mnasnet0_5 0.93/0.92 -> 0.96/1.00; fer-emotion-keras cosine 0.9983 -> 0.9986.
        unsigned_depthwise_inputs=True,
        # A channel shuffle (Concat -> Reshape/Transpose -> Split) on one grid from its branch outputs on, as
        # NNCF's unified scales: shufflenet_v2_x1_0's shuffles, Splits and Concats then run in int8 (62 -> 1 f32
        # kernels, NNCF 1; 0.93/0.92 -> 1.00/1.00; cosine 0.99989, NNCF 0.99986).
        layout_region_ops=frozenset({"Concat", "Split", "Reshape", "Transpose"}))
    # onnxslim's MatMul+Add -> Gemm wraps every 3-D transformer MatMul in Reshapes to 2-D and back; the
    # CPU plugin then runs the element-wise ops after each int8 FullyConnected as separate f32 kernels
    # instead of fusing them (mobilebert: 360 f32 Reshapes, 411 -> 195 f32 subgraphs without it;
    # 2.17x -> 2.53x ORT fp32, NNCF 2.42x, same run). The plugin fuses MatMul+Add itself.
    skip_fusions: ClassVar[tuple[str, ...]] = ("FusionGemm",)
    options: ClassVar[tuple[TargetOption, ...]] = (
        TargetOption("ov_precision_hint", "OpenVINO CPU inference precision for float parts of the model "
                     "(f32 keeps results comparable to the float model; bf16 is faster on CPUs with AMX/avx512_bf16).",
                     kind="choice", choices=("f32", "bf16"), default="f32"),
    )

    def check(self, model: "ModelHandle", spec: LowerSpec):
        from edgec.targets.openvino.lower import check_support

        return check_support(model, self.name)

    def lower(self, model: "ModelHandle", spec: LowerSpec, out_dir: Path) -> LowerResult:
        from edgec.targets.openvino.lower import lower_to_ir

        return lower_to_ir(model, spec, out_dir)

    kv_cache_precisions: ClassVar[tuple[str, ...]] = ("int8", "fp16", "fp32")

    def lower_llm(self, model: "ModelHandle", lm, precision: str, options: dict, out_dir: Path,
                  kv_cache: str | None = None) -> LowerResult:
        """A generation bundle: stateful IR + OpenVINO tokenizers, loadable by openvino_genai."""
        from edgec.targets.openvino.llm import lower_llm

        return lower_llm(model, lm, precision, options, Path(out_dir), kv_cache)
