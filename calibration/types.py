"""Data types shared by calibration sources, observers and the quantizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np


@dataclass
class CalibrationData:
    """Samples in the model convention, one dict per sample (leading batch axis of 1).

    Attributes:
        samples: ``[{input_name: array}]`` matching the model's inputs in name, shape and dtype.
        source: What the data came from (path or ``random``), for the manifest.
        random: True when the samples are synthetic (``--calib random``); reports flag it.
        kind: ``npz``, ``npy`` (one file), ``npy-folder``, ``npz-folder``, ``images``, ``text``
            or ``random``.
        labels: Optional labels (``labels`` key of an ``.npz``), one per sample.
    """

    samples: list[dict[str, np.ndarray]]
    source: str
    random: bool = False
    kind: str = "npz"
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.samples)

    def stacked(self) -> dict[str, np.ndarray]:
        """All samples concatenated along axis 0, per input."""
        return {k: np.concatenate([s[k] for s in self.samples], axis=0) for k in self.samples[0]}


@dataclass(frozen=True)
class TensorRange:
    """Float range of one tensor as chosen by an observer.

    Attributes:
        rmin: Lower end (<= 0 after `widened`).
        rmax: Upper end (>= 0 after `widened`).
        method: Observer that produced it.
        absmax_seen: Largest magnitude actually observed (for reports on clipping).
    """

    rmin: float
    rmax: float
    method: str = "minmax"
    absmax_seen: float | None = None

    def widened(self) -> "TensorRange":
        """The range extended to include 0, as affine int8 quantization requires."""
        return TensorRange(min(self.rmin, 0.0), max(self.rmax, 0.0), self.method, self.absmax_seen)


@dataclass
class PreprocessConfig:
    """How image files become model inputs (``--preprocess``).

    Attributes:
        resize: ``(height, width)``; default: the model input's spatial size.
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel std divided by after the mean.
        layout: ``NCHW`` or ``NHWC`` of the model input.
        grayscale: Convert to one channel (else RGB).
    """

    resize: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NCHW"
    grayscale: bool | None = None
    extra: dict[str, str] = field(default_factory=dict)
