"""The ``mcu`` target: int8 C99 code generation for Cortex-M microcontrollers.

Imports nothing heavy: the importers, planner and code generator load inside `check` and
`lower`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgec.targets.base import LowerResult, LowerSpec, QuantScheme, SupportReport, Target, TargetOption
from edgec.targets.mcu.ops import INTEGER_ONNX_OPS, SCALE_PRESERVING_ONNX_OPS

if TYPE_CHECKING:
    from edgec.compiler.model import ModelHandle

CPU_CHOICES = ("cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")


class MCUTarget(Target):
    name = "mcu"
    aliases = ("cortex-m", "c")
    description = "C99 library for Cortex-M microcontrollers (int8, static arena, no malloc)"
    extra = "mcu"
    supported_precisions = ("int8",)
    default_precision = "int8"
    calibrated_precisions = ("int8",)
    runner = "mcu"
    accepted_formats = ("onnx", "tflite")
    # What the quantizer runs in int8 comes from the op records (targets/mcu/ops).
    dependencies = ("ai-edge-litert",)
    pruning_gains = {
        "magnitude": "none expected: the generated C keeps dense const weight arrays in flash",
        "nm": "none expected: dense C kernels",
    }
    quant_scheme = QuantScheme(placement="full", integer_ops=INTEGER_ONNX_OPS,
                               scale_preserving_ops=SCALE_PRESERVING_ONNX_OPS, equalize_conv_pairs=True,
                               equalize_streams=True, calib_method="held-out")
    options = (
        TargetOption("cpu", "Cortex-M core the C is built and sized for", kind="choice",
                     choices=CPU_CHOICES, default="cortex-m4"),
        TargetOption("ram_budget", "Fail the build when arena + I/O buffers exceed this (e.g. 256K)", kind="bytes"),
        TargetOption("patch_inference", "Run the first high-resolution stage in bands of rows (MCUNetV2's patches): "
                     "less RAM for recomputed halo MACs (in the report), bit-exact. auto: only when the model "
                     "would not fit --ram-budget, with the fewest extra MACs that fit; on: the smallest RAM; "
                     "off: never", kind="choice", choices=("auto", "on", "off"),
                     default="auto"),
        TargetOption("flash_budget", "Fail the build when code + constants exceed this (e.g. 1M)", kind="bytes"),
    )

    def check(self, model: "ModelHandle", spec: LowerSpec) -> SupportReport:
        from edgec.targets.mcu.build import check_model

        return check_model(self, model, (spec.options or {}).get("flash_budget"))

    def lower(self, model: "ModelHandle", spec: LowerSpec, out_dir: Path) -> LowerResult:
        from edgec.targets.mcu.build import lower_model

        return lower_model(model, spec, Path(out_dir))
