"""The `Target` interface every backend implements.

A target turns the pipeline's ONNX (float, or Q/DQ for int8) into the artifact its
device runs. Target classes are imported by `edgec targets` and `edgec build --help`, so
a target's package ``__init__`` must import nothing heavy: SDK imports (openvino,
tensorflow, tensorrt) happen inside `lower`, `check` or helper modules they call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgec._deps import has_module
from edgec.errors import UnsupportedOpError

if TYPE_CHECKING:
    from edgec.calibration import CalibrationData, TensorRange
    from edgec.compiler.model import ModelHandle, TensorSpec
    from edgec.compiler.progress import Progress
    from edgec.runtimes.base import Runner


STRUCTURED_GAIN = ("smaller dense model: fewer FLOPs and bytes, faster with the target's ordinary dense kernels "
                   "(measured in benchmarks/pruning.py)")


@dataclass(frozen=True)
class TargetOption:
    """A build option that only some targets take (``--cpu``, ``--io-dtype`` ...).

    The CLI adds every registered target's options to ``edgec build``; an option given
    for a target that does not declare it is an error.

    Attributes:
        name: Python name and, with ``-`` for ``_``, the flag (``io_dtype`` -> ``--io-dtype``).
        help: One sentence for ``--help``.
        kind: ``str``, ``int``, ``float``, ``flag``, ``bytes`` (``256K``, ``1M``) or ``choice``.
        choices: Allowed values for ``choice``.
        default: Value when not given.
        multiple: Whether the option may be repeated (value becomes a tuple).
    """

    name: str
    help: str
    kind: str = "str"
    choices: tuple[str, ...] = ()
    default: Any = None
    multiple: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


# Recurrent cells: int8 Q/DQ leaves them in float, but they amplify the error of the int8 layers
# in front of them (ddddocr's CRNN: LSTM input SQNR 18.7 dB -> output 12.5 dB).
RECURRENT_OPS = frozenset({"LSTM", "GRU", "RNN"})
# For a deep residual stream on the weighted-placement targets (OpenVINO, onnxruntime, TensorRT): residual
# Adds in float and every depthwise -> pointwise link equalized (with bias correction;
# `QuantScheme.deep_residual_adds`).
DEEP_RESIDUAL_OVERRIDES = (("float_residual_adds", True), ("equalize_min_spread", 1.0))


@dataclass(frozen=True)
class QuantScheme:
    """How the pipeline's quantizer should place and shape Q/DQ for a target.

    Attributes:
        activation_symmetric: Force activation zero points to 0 (TensorRT).
        placement: ``weighted`` puts Q/DQ on the activation inputs of Conv/MatMul/Gemm
            (and Add when ``quantize_add``), leaving other ops in float between them, as
            OpenVINO and TensorRT fuse it; ``full`` quantizes every tensor between ops, as
            an integer-only runtime (TFLite, the MCU C code) needs.
        quantize_add: Quantize both inputs of element-wise Add (residual connections).
        float_residual_adds: ``weighted`` placement leaves the residual Adds of conv blocks
            (``x + conv(...)``, same shapes) in float, with no Q/DQ on their inputs, whatever
            ``quantize_add`` and ``int8_input_ops`` say: a rounding there adds noise to the
            residual stream at every block, and it builds up over deep streams (BlazeFace's
            16-31 blocks). The runtime still runs the conv in int8 with a float output and
            fuses the Add into it (OpenVINO's sum post-op).
        per_channel: Per-output-channel weight scales.
        hoist_through: Ops (precision-preserving: MaxPool, Reshape ...) that a ``weighted``
            input's Q/DQ moves above, so the runtime runs them in int8 and the producer
            (Conv+Relu) can emit int8 directly — what OpenVINO's CPU plugin fuses best.
        hoist_scalar_muls: Also hoist above a Mul by a constant scalar when the pair then lands on a
            weighted op's output (`edgec.compiler.qdq_graph.hoist`: attention's scaled Q and K).
        hoist_shared_sources: Also hoist above a ``hoist_through`` op whose input other weighted
            ops read (per tensor): the op reads their pair (OpenVINO then runs a residual MaxPool
            in int8 instead of dequantizing and requantizing around it).
        quantize_embeddings: Store large Gather tables (word embeddings) as int8 + DQ.
        integer_ops: ONNX op types the target runs on int8 (``full`` placement); None:
            the quantizer's default set. An integer-only target derives it from its ops.
        scale_preserving_ops: Op types whose output keeps the input's scale and zero
            point (``full`` placement); None: the quantizer's default set.
        fixed_output_params: ``(op_type, scale, zero_point)`` for ops whose int8 output
            parameters the runtime fixes (Softmax ``1/256, -128``); None: the quantizer's
            defaults. See docs/quant-scheme.md.
        int8_input_ops: Ops besides Conv/MatMul/Gemm whose activation inputs get Q/DQ in
            ``weighted`` placement, in convolutional networks, because the runtime runs them
            on int8 data (OpenVINO: Add, Mul gates, Resize, pools); Add and Mul only
            for two activations that are not a decomposed activation function (x * Sigmoid(x)).
        unified_scale_ops: Ops a quantizer on their output moves up through, onto every input,
            with one shared scale and zero point (Concat in OpenVINO).
        per_channel_depthwise_inputs: Symmetric per-channel scales on the activation input
            of depthwise convolutions (runtimes that fold them into the weights: OpenVINO).
        unsigned_depthwise_inputs: Those per-channel scales on the unsigned grid (zero point -128) where the
            input is non-negative by construction (a ReLU, a Clip at >= 0: `qdq_graph.nonnegative_bound`), at
            the symmetric grid's step up to twice the calibrated maximum, or up to the Clip's bound: the
            symmetric grid there became a per-channel zero shift that OpenVINO's int8 convs compensate for
            (mobilenet_v2: 0.87x NNCF's speed, 1.0x on the unsigned grid).
        layout_region_ops: Ops (Concat, Split, Reshape, Transpose) that join tensors into one region with one
            int8 grid when the region holds a Concat and a Split (a channel shuffle): pairs on the region's
            entries only (`edgec.compiler.layout_regions`), so a runtime that moves int8 through layout ops
            runs the shuffle in int8 (empty: no regions).
        layout_region_max_spread: The largest ratio of two entries' range widths such a region is joined at.
        pool_shares_depthwise_inputs: A residual branch's MaxPool (a ``hoist_shared_sources`` hoist)
            and a depthwise conv reading the same tensor share one per-tensor pair (the pool then
            runs in int8), instead of the depthwise input's per-channel scales.
        calib_method: Default calibration method, chosen per target by measurement on the
            real-model corpus (benchmarks/quant_quality.py); ``--calib-method`` overrides it.
        scale_depthwise_inputs: Move per-channel scales of depthwise-conv inputs into their
            weights through an inserted ``Mul`` (runtimes with per-tensor activation scales
            only: TensorRT); see `edgec.compiler.depthwise_scaling`.
        equalize_conv_pairs: Move each channel's spread of a Conv -> [Relu] -> Conv link
            into the second conv's weights before quantizing (activation-range cross-layer
            equalization; see `edgec.compiler.equalize`), for per-tensor activation scales.
        equalize_min_spread: Which Conv -> Conv links ``equalize_conv_pairs`` rescales: those
            whose largest channel range is at least this multiple of the median channel's
            (1.0: every link). Where the runtime keeps the residual stream in float
            (``float_residual_adds``), the depthwise outputs the pointwise convs read are the
            largest int8 noise left, also at spreads under 4.
        equalize_streams: Also one channel scale per residual stream (the tensors ``Add``,
            ``Relu``, ``MaxPool`` and zero ``Pad`` tie together; `edgec.compiler.equalize_stream`),
            for targets whose every activation is per tensor (full-integer int8); only streams
            with an identity skip (BlazeFace), not projection-skip ones (mini-Xception).
        bias_correction_ops: Op types whose presence turns bias correction on by default:
            recurrent cells (LSTM) amplify the small per-channel mean shift of an int8 CNN in
            front of them on every time step.
        deep_residual_adds: Models with at least this many residual Adds of conv blocks get
            ``deep_residual_overrides`` and bias correction by default (None: no model). Over a
            deep residual stream (BlazeFace: 16-31 blocks) each block's int8 rounding and small
            per-channel mean shift build up; a few blocks (ResNet, MobileNetV2) do not need it.
        deep_residual_overrides: ``(field, value)`` pairs of this scheme replaced for such models
            (``float_residual_adds``, ``equalize_min_spread``; ``calib_method`` too: it is the build's
            default for such models, ``--calib-method`` still wins).
        deep_residual_fallback: ``(field, value)`` pairs replaced on top of ``deep_residual_overrides`` when the
            model quantized with the recipe still falls below ``deep_residual_fallback_cosine`` worst-output
            cosine on the calibration samples (intel-cpu: float residual Adds, where its int8 ones do not hold).
        deep_residual_fallback_cosine: That bar (None: no fallback, the recipe as declared).
        deep_residual_float_add_margin: Before that fallback, keep float only the residual Adds whose
            measured int8 error per value is largest, the fewest (by tensor size: what a float Add costs) that
            bring the worst calibration cosine to ``deep_residual_fallback_cosine`` and to within this margin of
            the all-float model's (`edgec.compiler.residual_add_search`); the rest stay int8 (None: all or none).
            Searched with the recipe's ranges and with the fallback's ``calib_method`` (int8 Adds both), the one
            that keeps the fewest values in float shipped.
        deep_residual_float_add_error: ... and whose mean output error (1 - mean cosine) stays within this share
            above the all-float model's (the worst sample alone hangs on one image).
        deep_residual_cosine: Apply ``deep_residual_overrides`` only when the model quantized without
            them falls below this worst-output cosine on the calibration samples (None: always): the
            float Adds cost speed where the runtime would run them in int8, for no accuracy where the
            stream holds anyway (face-landmark, iris-landmark).
        transformer_overrides: ``(field, value)`` pairs of this scheme replaced for models with
            self-attention blocks (`edgec.compiler.qdq_graph.attention_blocks`: Softmax weighing a
            MatMul, with LayerNormalization), conv stem or not; empty: none.
        calib_method_with_ops: The default calibration method when one of
            ``bias_correction_ops`` is present (None: ``calib_method``): the cell amplifies the
            int8 noise of its input too, which ranges chosen by output error keep lowest.
        held_out_methods: The observers ``--calib-method held-out`` chooses one of, for the whole
            model, on held-out calibration samples (`edgec.compiler.held_out_ranges`).
        float_fallback_ops: Op types a default int8 build may leave without Q/DQ (the runtime
            runs them in float/fp16) where the int8 error concentrates, when the model's worst
            calibration sample is under ``float_fallback_cosine`` (`edgec.compiler.float_fallback`).
        float_fallback_cosine: The worst-sample cosine below which that fallback is searched.
        weight_bias_correction: Remove the per-channel output mean shift that int8 weight rounding
            causes from each conv's bias, measured in one float pass over the calibration samples
            (`edgec.compiler.weight_bias_correction`; NNCF's default FastBiasCorrection does the same).
        weight_rounding: How int8 Conv/Gemm/MatMul weights land on their (unchanged) per-channel grid:
            ``nearest``, or ``gptq`` (`edgec.compiler.weight_rounding`: each weight's rounding chosen for
            the smallest layer output error on the calibration inputs); ``--weight-rounding`` overrides it.
        correct_zero_biases: Bias correction (per layer and weight-only) also writes its shift into layers
            whose float bias is all zeros. False where the runtime drops a zero bias and a written one costs
            the layer's kernel extra work (NNCF corrects only layers that have a bias).
        int8_recurrent_ops: Recurrent cells (ONNX op types) that ``weighted`` placement quantizes: a pair on
            the sequence input X, and the input and recurrence weights W, R as symmetric int8 per gate row
            (axis 1 of ``[directions, gates * hidden, size]``, one scale per row shared by the directions);
            the initial states and biases stay float. OpenVINO's CPU plugin then runs LSTMSequence on u8
            data with int8 weights, as NNCF's placement does. X's range is widened to cover the hidden
            state's [-1, 1]: the runtime (oneDNN's int8 RNN) quantizes the state with X's scale and zero point
            (a CRNN whose X came from a Relu: cosine 0.67 with X's own range [0, r], which clips every
            negative state to 0; onnxruntime, which keeps the state float, did not show it).
        symmetric_activation_matmuls: No zero point on either input of a MatMul of two activations
            (attention's ``Q @ K^T``, ``P @ V``): symmetric int8 on the second input, and on the first
            unless its range is non-negative (softmax probabilities: unsigned, zero point at the
            range's end). OpenVINO's CPU plugin runs such a MatMul in int8 only with a signed,
            zero-shift second input and a first input without a zero point, else in f32 between
            dequantizations (its low-precision MatMul transformation).
        symmetric_weighted_inputs: No zero point on the activation input of a MatMul or Gemm with constant
            weights (a FullyConnected) where its calibrated range is about as negative as positive: the
            smaller side at least this share of the larger (symmetric int8 then costs at most
            ``2 / (1 + share)`` times the asymmetric step); None: asymmetric everywhere. OpenVINO's CPU plugin
            runs an int8 FullyConnected on a zero-shifted u8 input with a zero-point compensation per
            inference (mobilebert's 128 -> 512 layers: 145 us on u8 with a shift, 116 us on signed int8, AVX2).
        symmetric_depthwise_outputs: No zero point on the output of a depthwise conv (quantized as it leaves the
            conv, no activation between) where its calibrated range is this balanced (the share as in
            ``symmetric_weighted_inputs``); None: asymmetric. OpenVINO's CPU plugin folds a quantize with no zero
            shift into the conv's output scale, but runs a shifted one as a FakeQuantize post-op on every output,
            which a depthwise conv's 9 products per output do not amortize (iris-landmark: its 26 depthwise convs
            12 % slower than NNCF's symmetric ones, the same kernels otherwise). The build keeps them where they
            cost no measured accuracy (`edgec.compiler.depthwise_output_grid`).
        overflow_fix: Bounds the weights where the target's int8 kernels may overflow (`edgec.compiler.overflow_fix`):
            ``first-layer`` (the weighted ops reading the model's inputs through no other weighted op: a 7-bit
            grid, ``[-63, 63]``), ``all`` (every weighted op but depthwise convs, whose kernels widen each product
            to int32: 7-bit), ``all-with-depthwise`` (7-bit), ``pairs`` (every weighted op but depthwise convs:
            each output channel's scale set by its largest pair of weights the kernels add, adjacent input
            channels per tap, so that every pair's integers sum to at most 128; 7-bit for ConvTranspose) or
            ``pairs-im2col`` (also the pairs of a channels-last im2col, for odd channel counts: onnxruntime);
            None: full 8-bit everywhere. On x86 CPUs
            without VNNI (AVX2, AVX-512F), oneDNN and onnxruntime add each pair of u8 x s8 products in saturating
            int16, and the first layer reads full-range input data (NNCF's ``OverflowFix.FIRST_LAYER``, its
            default, for the same reason).
        auto_held_out: ``--calib-method auto`` ships whichever of its refined choice and its screen's
            whole-model candidates errs least on held-out halves of the calibration samples
            (`held_out_ranges.pick_on_folds`: ranges from one half, output error on the other, both
            ways), not only on the samples its ranges came from, which its many single-tensor switches fit.
        calib_candidates: The ranges ``auto`` and the accuracy gate choose from per tensor,
            as ``(label, observer, ((option, value), ...))`` (TensorRT's symmetric
            calibrators); None: every registered observer with its default options.
    """

    activation_symmetric: bool = False
    placement: str = "weighted"
    quantize_add: bool = True
    float_residual_adds: bool = False
    per_channel: bool = True
    hoist_through: tuple[str, ...] = ()
    hoist_shared_sources: bool = False
    hoist_scalar_muls: bool = False
    quantize_embeddings: bool = False
    per_channel_depthwise_inputs: bool = False
    pool_shares_depthwise_inputs: bool = False
    unsigned_depthwise_inputs: bool = False
    layout_region_ops: frozenset[str] = frozenset()
    layout_region_max_spread: float = 2.0
    calib_method: str = "minmax"
    calib_candidates: tuple[tuple[str, str, tuple[tuple[str, Any], ...]], ...] | None = None
    held_out_methods: tuple[str, ...] = ("minmax", "percentile")
    scale_depthwise_inputs: bool = False
    equalize_conv_pairs: bool = False
    equalize_min_spread: float = 4.0
    equalize_streams: bool = False
    bias_correction_ops: frozenset[str] = frozenset()
    calib_method_with_ops: str | None = None
    deep_residual_adds: int | None = None
    deep_residual_overrides: tuple[tuple[str, Any], ...] = ()
    deep_residual_cosine: float | None = None
    deep_residual_fallback: tuple[tuple[str, Any], ...] = ()
    deep_residual_fallback_cosine: float | None = None
    deep_residual_float_add_margin: float | None = None
    deep_residual_float_add_error: float = 0.3
    transformer_overrides: tuple[tuple[str, Any], ...] = ()
    integer_ops: frozenset[str] | None = None
    scale_preserving_ops: frozenset[str] | None = None
    fixed_output_params: tuple[tuple[str, float, int], ...] | None = None
    int8_input_ops: frozenset[str] = frozenset()
    unified_scale_ops: frozenset[str] = frozenset()
    float_fallback_ops: tuple[str, ...] = ()
    float_fallback_cosine: float = 0.99
    weight_bias_correction: bool = False
    weight_rounding: str = "nearest"
    correct_zero_biases: bool = True
    symmetric_activation_matmuls: bool = False
    symmetric_weighted_inputs: float | None = None
    symmetric_depthwise_outputs: float | None = None
    overflow_fix: str | None = None
    int8_recurrent_ops: frozenset[str] = frozenset()
    auto_held_out: bool = False


@dataclass
class LowerSpec:
    """What the pipeline hands a target's `lower` and `check`.

    Attributes:
        precision: Requested precision (one of the target's ``supported_precisions``).
        float_model: The optimized float ONNX with static shapes (the reference).
        quant_model: The Q/DQ ONNX when the precision is int8 and the target has a
            `QuantScheme`; None otherwise.
        calibration: The calibration samples (model-input convention), when given.
        ranges: Per-tensor float ranges from calibration, when calibrated.
        options: Parsed target options (names as in `TargetOption.name`).
        input_profiles: ``{input: (min, opt, max)}`` shapes for dynamic inputs.
        keep_float: Node names the user asked to leave in float.
        progress: Where long steps report progress.
        accept_low_accuracy: The user accepts an artifact below the accuracy floor
            (``--accept-low-accuracy``): a target's own accuracy check warns instead of failing.
    """

    precision: str
    float_model: "ModelHandle"
    quant_model: "ModelHandle | None" = None
    calibration: "CalibrationData | None" = None
    ranges: "dict[str, TensorRange] | None" = None
    options: dict[str, Any] = field(default_factory=dict)
    input_profiles: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    keep_float: tuple[str, ...] = ()
    progress: "Progress | None" = None
    accept_low_accuracy: bool = False


@dataclass(frozen=True)
class Artifact:
    """A file a target wrote into the bundle.

    Attributes:
        path: Path relative to the bundle root (POSIX separators).
        kind: What it is (``openvino-ir``, ``tflite``, ``onnx-qdq``, ``c-source`` ...).
        role: ``model`` (what the runner loads), ``weights``, ``harness``, ``doc``, ``reference``.
    """

    path: str
    kind: str
    role: str = "model"


@dataclass
class LowerResult:
    """What `Target.lower` returns.

    Attributes:
        artifacts: Files written; exactly one has role ``model``.
        inputs: The artifact's own inputs (dtype, layout, scale/zero point as it takes them).
        outputs: The artifact's own outputs.
        manifest: Target-specific manifest section (stored under ``manifest["target_info"]``).
        report: Target-specific report entries (stored under ``report["target"]``).
        passes: Passes the target ran, ``{"name": ..., "config": {...}}`` each.
        state: Declared state tensors of a stateful (generation) artifact: name, the output
            that updates it, shape and dtype per KV-cache tensor; empty for stateless models.
    """

    artifacts: list[Artifact]
    inputs: "list[TensorSpec]"
    outputs: "list[TensorSpec]"
    manifest: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    passes: list[dict[str, Any]] = field(default_factory=list)
    state: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model_artifact(self) -> Artifact:
        models = [a for a in self.artifacts if a.role == "model"]
        if len(models) != 1:
            raise ValueError(f"a target must write exactly one model artifact, got {len(models)}")
        return models[0]


@dataclass
class SupportReport:
    """Which nodes a target can run. ``unsupported`` holds (node, op_type, reason)."""

    target: str
    unsupported: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unsupported

    def raise_if_unsupported(self, hint: str | None = None) -> None:
        """Raise `UnsupportedOpError` for the first unsupported node (others are counted)."""
        if self.unsupported:
            node, op, reason = self.unsupported[0]
            more = len(self.unsupported) - 1
            parts = [p for p in (reason, hint, f"{more} more unsupported node(s)" if more else None) if p]
            raise UnsupportedOpError(op, node, self.target, "; ".join(parts) or None)


class Target(ABC):
    """A deployment target: lowers ONNX to the artifact its device runs.

    Subclasses set the class attributes and implement `lower`. `check` defaults to
    accepting every op in ``supported_ops`` (None = accept all).
    """

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    extra: ClassVar[str | None] = None
    required_modules: ClassVar[tuple[str, ...]] = ()
    supported_precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    default_precision: ClassVar[str] = "fp32"
    # Precisions for which the pipeline loads calibration data and collects ranges.
    calibrated_precisions: ClassVar[tuple[str, ...]] = ("int8",)
    runner: ClassVar[str] = "onnxruntime"
    accepted_formats: ClassVar[tuple[str, ...]] = ("onnx",)
    options: ClassVar[tuple[TargetOption, ...]] = ()
    quant_scheme: ClassVar[QuantScheme | None] = QuantScheme()
    supported_ops: ClassVar[frozenset[str] | None] = None
    # onnxslim fusions the float clean-up leaves out for this target (`edgec.compiler.optimize`).
    skip_fusions: ClassVar[tuple[str, ...]] = ()
    # What `--max-accuracy-drop` may change to win accuracy back: "keep-float" (leave nodes in
    # float), "calib-method" (another calibration method for a tensor), "bias-correction", "weight-rounding"
    # (GPTQ rounding of every int8 weight), "int8" (int8 instead of int4 weights). None: derived from
    # `quant_scheme` by `fallback_options`.
    accuracy_fallbacks: ClassVar[tuple[str, ...] | None] = None
    # For a target that quantizes with its own converter (no `quant_scheme`): target options the
    # accuracy gate re-lowers with, in order, when the plain build misses the budget (arm: 16x8,
    # float ops from the converter's deny-list).
    gate_moves: ClassVar[tuple[dict[str, Any], ...]] = ()
    # Distributions whose versions the manifest records for a build on this target.
    dependencies: ClassVar[tuple[str, ...]] = ()
    # What pruning buys on this target, per `--prune` method (magnitude, nm, channels,
    # heads); a method not listed gets `STRUCTURED_GAIN`, the structured methods' note.
    pruning_gains: ClassVar[dict[str, str]] = {}
    # N:M patterns this target has sparse kernels for ("2:4"); other targets run them dense.
    sparse_patterns: ClassVar[tuple[str, ...]] = ()

    def availability(self) -> str | None:
        """None when usable here; otherwise a one-line reason with the fix."""
        missing = [m for m in self.required_modules if not has_module(m)]
        if missing:
            fix = f"pip install 'edgec[{self.extra}]'" if self.extra else "see the README"
            return f"missing {', '.join(missing)}: {fix}"
        return None

    def status_note(self) -> str | None:
        """An optional line for ``edgec targets`` on what works here (e.g. bundle only)."""
        return None

    def move_scored(self, move: dict[str, Any], manifest: dict[str, Any]) -> str | None:
        """Where the build behind ``manifest`` already scored the model ``move`` would build (the target's own
        fallback ladder), so the accuracy gate need not re-lower with it; None: it did not."""
        return None

    def fallback_options(self) -> tuple[str, ...]:
        """Fallbacks the accuracy gate may use (see ``accuracy_fallbacks``).

        Derived: none when the target quantizes by itself (no `quant_scheme`); the moves that keep
        every op integer (``calib-method``, ``bias-correction``, ``weight-rounding``) for
        integer-only runtimes (``full`` placement: no float islands); all of them for runtimes
        that mix precisions (``weighted`` placement).
        """
        if self.accuracy_fallbacks is not None:
            return self.accuracy_fallbacks
        if self.quant_scheme is None:
            return ()
        if self.quant_scheme.placement == "full":
            return ("calib-method", "bias-correction", "weight-rounding")
        return ("keep-float", "calib-method", "bias-correction", "weight-rounding", "int8")

    def pruning_gain(self, method: str) -> str:
        """What ``--prune METHOD`` buys on this target (one sentence for the report)."""
        return self.pruning_gains.get(method, STRUCTURED_GAIN)

    def pruning_warnings(self, spec: Any, options: dict[str, Any]) -> list[str]:
        """Honest one-liners for a pruned build: no speedup where this target has no sparse kernels."""
        if spec.method == "magnitude":
            return [f"--prune {spec.text}: unstructured sparsity does not make '{self.name}' faster (dense kernels); "
                    "it only shrinks the compressed size; use channels:R (or heads:R) for speed"]
        if spec.method == "nm" and f"{spec.n}:{spec.m}" not in self.sparse_patterns:
            from edgec.targets.registry import TARGETS

            have = [n for n in TARGETS.names() if f"{spec.n}:{spec.m}" in TARGETS.target_class(n).sparse_patterns]
            where = f"only {', '.join(repr(n) for n in have)} ha{'s' if len(have) == 1 else 've'}" if have else "no target has"
            return [f"--prune {spec.text}: {where} {spec.n}:{spec.m} sparse kernels; '{self.name}' runs these weights "
                    "dense"]
        return []

    def check(self, model: "ModelHandle", spec: LowerSpec) -> SupportReport:
        """Report the nodes this target cannot run."""
        report = SupportReport(self.name)
        if self.supported_ops is None or model.proto is None:
            return report
        for node in model.proto.graph.node:
            if node.op_type not in self.supported_ops and node.domain in ("", "ai.onnx"):
                report.unsupported.append((node.name or node.output[0], node.op_type, ""))
        return report

    @abstractmethod
    def lower(self, model: "ModelHandle", spec: LowerSpec, out_dir: Path) -> LowerResult:
        """Write the artifact(s) for ``model`` into ``out_dir`` (the bundle being built).

        ``model`` is ``spec.quant_model`` for int8 with a quant scheme, else the float model.
        """

    def verify_runner(self, bundle_dir: Path, manifest: dict[str, Any]) -> "Runner":
        """The runner used to check the built artifact against the float model.

        Targets whose device is not here (TensorRT without a GPU) return a runner of an
        equivalent artifact instead and say so in the report.
        """
        from edgec.runtimes.registry import create_runner

        return create_runner(manifest["runner"], bundle_dir, manifest)
