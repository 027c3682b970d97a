"""Typed configuration of one `edgec build`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgec.calibration.types import PreprocessConfig

CALIB_METHODS = ("minmax", "percentile", "entropy", "mse")


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
        calib_method: Observer for activation ranges.
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
    """

    model: str
    output: Path
    target: str = "intel-cpu"
    precision: str | None = None
    calib: str | None = None
    calib_method: str = "minmax"
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
        }
