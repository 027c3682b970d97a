"""Typed configuration of one `edgec build`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec.calibration.observers import registered_observers
from edgec.calibration.types import PreprocessConfig
from edgec.targets.registry import DEFAULT_TARGET

# Every registered observer can be chosen, and ``auto`` considers all of them per tensor by
# the output error it causes (compiler/quant_stage.py).
CALIB_METHODS = registered_observers()
CALIB_METHOD_CHOICES = (*CALIB_METHODS, "auto")
INT4_GROUP_SIZES = (16, 32, 64, 128, 256)
INT4_MODES = ("sym", "asym")
INT4_METHODS = ("rtn", "gptq", "awq")


def one_of(values) -> str:
    """``a, b or c`` for messages."""
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


@dataclass(frozen=True)
class InputShape:
    """A fixed shape, or min/opt/max shapes for a dynamic input (TensorRT profiles)."""

    opt: tuple[int, ...]
    min: tuple[int, ...] | None = None
    max: tuple[int, ...] | None = None

    @property
    def is_profile(self) -> bool:
        return self.min is not None


@dataclass(frozen=True)
class BuildConfig:
    """Everything `edgec.build` needs.

    Attributes:
        model: Path to an ONNX file, HF folder, ``file.py:factory``, ``.pt2`` or ``.tflite``.
        output: Bundle folder to write.
        target: Target name or alias.
        precision: Requested precision; None takes the target's default.
        calib: Calibration data path, or ``random``.
        calib_method: Observer for activation ranges; None: the target's default (`QuantScheme.calib_method`).
        calib_samples: Maximum samples to use.
        eval_data: Data for the accuracy check (default: the calibration data).
        input_shapes: ``--input-shape`` values.
        task: Task override for HF models.
        preprocess: Image preprocessing for image-folder data.
        keep_float: Node names to leave in float.
        force: Replace an existing output folder.
        parity_tol: Max abs error allowed between PyTorch and the exported ONNX.
        target_options: Target-specific options (see `TargetOption`).
        seed: Seed for ``--calib random`` and synthetic data.
        max_accuracy_drop: Accuracy gate: largest allowed drop of ``metric`` against the float
            model (points; see `edgec.compiler.quality`); None disables the gate.
        accept_low_accuracy: Ship a quantized artifact below the default accuracy floor
            (`edgec.compiler.accuracy_floor`) instead of failing.
        metric: ``auto``, ``top1``, ``cosine``, ``mse`` or ``file.py:fn`` for the gate.
        group_size: INT4 block size along the input dimension.
        int4_mode: ``sym`` (int4, zero point 0) or ``asym`` (uint4 with zero points).
        int4_method: ``rtn``, ``gptq`` or ``awq`` (the last two need ``calib``).
        smoothquant: SmoothQuant migration strength alpha in [0, 1]; None disables it.
        bias_correction: Correct the int8 model's per-channel output bias on calibration data.
        prune: ``--prune`` spec (``magnitude:0.5``, ``2:4``, ``channels:0.3``, ``heads:0.25``; see
            `edgec.compiler.prune`); the bundle's reference is the pruned float model.
        finetune: ``file.py:train_fn`` run on the pruned PyTorch model before export.
        lora: PEFT LoRA adapter folder merged into a causal LM before export.
        kv_cache: KV-cache precision of a generation bundle (``int8``, ``fp16``, ``fp32``);
            None keeps the runtime's default.
        keep_source_quantization: Lower an already Q/DQ-quantized ONNX with its own scales
            instead of dequantizing and requantizing it with edgec's calibration.
    """

    model: str
    output: Path
    target: str = DEFAULT_TARGET
    precision: str | None = None
    calib: str | None = None
    calib_method: str | None = None
    calib_samples: int = 128
    eval_data: str | None = None
    input_shapes: dict[str, InputShape] = field(default_factory=dict)
    task: str | None = None
    preprocess: PreprocessConfig | None = None
    keep_float: tuple[str, ...] = ()
    force: bool = False
    parity_tol: float = 1e-3
    target_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    max_accuracy_drop: float | None = None
    accept_low_accuracy: bool = False
    metric: str = "auto"
    group_size: int = 128
    int4_mode: str = "asym"
    int4_method: str = "rtn"
    smoothquant: float | None = None
    bias_correction: bool = False
    prune: str | None = None
    finetune: str | None = None
    lora: str | None = None
    kv_cache: str | None = None
    keep_source_quantization: bool = False

    def quality_view(self) -> dict[str, Any]:
        """The accuracy/quantization options that differ from their defaults (for the manifest)."""
        out: dict[str, Any] = {}
        if self.max_accuracy_drop is not None:
            out.update(max_accuracy_drop=self.max_accuracy_drop, metric=self.metric)
        if self.accept_low_accuracy:
            out["accept_low_accuracy"] = True
        if self.precision == "int4":
            out.update(group_size=self.group_size, int4_mode=self.int4_mode, int4_method=self.int4_method)
        if self.smoothquant is not None:
            out["smoothquant"] = self.smoothquant
        if self.bias_correction:
            out["bias_correction"] = True
        if self.keep_source_quantization:
            out["keep_source_quantization"] = True
        return out

    def manifest_view(self) -> dict[str, Any]:
        """The parts of the config that shape the bundle (recorded in the manifest)."""
        return {
            "precision": self.precision,
            "calib_method": self.calib_method,
            "calib_samples": self.calib_samples,
            "input_shapes": {k: {"opt": list(v.opt), "min": list(v.min) if v.min else None,
                                 "max": list(v.max) if v.max else None}
                             for k, v in sorted(self.input_shapes.items())},
            "task": self.task,
            "keep_float": list(self.keep_float),
            "target_options": {k: (list(v) if isinstance(v, tuple) else v)
                               for k, v in sorted(self.target_options.items())},
        } | self.quality_view()
