"""Range observers: they see a tensor's values batch by batch and choose its float range.

Four methods, registered by name for `make_observer`:

- ``minmax``: the exact smallest and largest value.
- ``percentile``: cut a small fraction of the values from the tails of a histogram.
- ``entropy``: the KL-divergence threshold of TensorRT / onnxruntime.
- ``mse``: the range whose int8 quantize-dequantize error over the data is smallest.

The histogram observers make one pass with bounded memory: a `GrowingHistogram` of a fixed
number of bins whose range doubles (merging bins exactly) when new data exceeds it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from edgec.calibration.entropy import entropy_threshold_onnxruntime, entropy_threshold_tensorrt
from edgec.calibration.histogram import GrowingHistogram, clip_to_seen, finite_values, mse_range, percentile_range
from edgec.calibration.types import TensorRange
from edgec.errors import CalibrationDataError, ConfigError

_REGISTRY: dict[str, type["Observer"]] = {}


def register_observer(cls: type["Observer"]) -> type["Observer"]:
    """Class decorator adding an observer under its ``name``; a second one of that name is an error."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"observer class {cls.__name__} has no 'name'; expected a non-empty string")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ConfigError(
            f"observer '{name}' is already registered by {_REGISTRY[name].__name__}; "
            f"expected a unique name for {cls.__name__}"
        )
    _REGISTRY[name] = cls
    return cls


def observer_names() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_REGISTRY)


def registered_observers() -> tuple[str, ...]:
    """Registered method names in registration order (the built-in ones first)."""
    return tuple(_REGISTRY)


def make_observer(method: str, **kw: Any) -> "Observer":
    """A new observer for `method` (``minmax``, ``percentile``, ``entropy`` or ``mse``).

    Args:
        method: Registered method name (case-insensitive).
        **kw: Options of that observer (e.g. ``percentile=99.99``, ``num_bins=2048``).

    Raises:
        ConfigError: Unknown method or option, or an option value out of range.
    """
    key = str(method).strip().lower()
    cls = _REGISTRY.get(key)
    if cls is None:
        raise ConfigError(f"unknown calibration method '{method}'; expected one of: {', '.join(observer_names())}")
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ConfigError(f"invalid option for calibration method '{key}': {exc}") from exc


class Observer(ABC):
    """Sees a tensor's values through `update` and returns its range from `compute_range`.

    Attributes:
        name: Method name used by `make_observer` and recorded in `TensorRange.method`.
    """

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self.min = math.inf
        self.max = -math.inf
        self.count = 0

    def update(self, x: np.ndarray) -> None:
        """Add a batch of values (any shape); NaN and +-inf are ignored."""
        x = np.asarray(x)
        if x.size == 0:
            return
        if x.dtype.kind != "f":
            x = x.astype(np.float32)
        self._update(x)

    @abstractmethod
    def _update(self, x: np.ndarray) -> None:
        """Add a non-empty float array."""

    def compute_range(self) -> TensorRange:
        """The chosen range.

        Raises:
            CalibrationDataError: No finite value was ever seen.
        """
        if self.count == 0:
            raise CalibrationDataError(
                f"observer '{self.name}' saw no finite values; expected at least one calibration sample"
            )
        lo, hi = self._compute()
        absmax = max(abs(self.min), abs(self.max))
        return TensorRange(float(lo), float(hi), self.name, float(absmax))

    @abstractmethod
    def _compute(self) -> tuple[float, float]:
        """``(rmin, rmax)`` from what was seen (``count > 0``)."""


@register_observer
class MinMaxObserver(Observer):
    """The exact smallest and largest finite value seen."""

    name = "minmax"

    def _update(self, x: np.ndarray) -> None:
        seen = finite_values(x)
        if seen is None:
            return
        x, lo, hi = seen
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.count += int(x.size)

    def _compute(self) -> tuple[float, float]:
        return self.min, self.max


@register_observer
class MeanMinMaxObserver(Observer):
    """The mean over samples of each sample's smallest and largest value.

    One sample's outlier widens the range by its share only (NNCF's default for
    activations); on real CNNs it keeps more int8 levels for the typical image than the
    global extremes do. `collect_ranges` feeds one sample per `update`.
    """

    name = "mean-minmax"

    def __init__(self) -> None:
        super().__init__()
        self.sum_min = self.sum_max = 0.0
        self.samples = 0

    def _update(self, x: np.ndarray) -> None:
        x = x[np.isfinite(x)] if not np.isfinite(x).all() else x
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.sum_min, self.sum_max, self.samples = self.sum_min + lo, self.sum_max + hi, self.samples + 1
        self.count += int(x.size)

    def _compute(self) -> tuple[float, float]:
        return self.sum_min / self.samples, self.sum_max / self.samples


class HistogramObserver(Observer):
    """Base of the observers that keep a `GrowingHistogram`.

    Args:
        num_bins: Histogram bins (power of two).
        absolute: Histogram of magnitudes instead of signed values.
    """

    def __init__(self, num_bins: int = 2048, *, absolute: bool = False):
        super().__init__()
        self.hist = GrowingHistogram(num_bins, absolute=absolute)

    def _update(self, x: np.ndarray) -> None:
        self.hist.update(x)
        self.min, self.max, self.count = self.hist.min, self.hist.max, self.hist.total


@register_observer
class PercentileObserver(HistogramObserver):
    """Cut ``100 - percentile`` % of the values.

    Args:
        percentile: Share of values kept, in (0, 100].
        symmetric: Cut by magnitude and return ``(-t, t)`` clipped to the seen values
            (onnxruntime's default for its percentile calibrator); otherwise cut half of the
            rest from each tail of the signed values (suits asymmetric activations).
        num_bins: Histogram bins.
    """

    name = "percentile"

    def __init__(self, percentile: float = 99.999, *, symmetric: bool = False, num_bins: int = 2048):
        if not 0.0 < float(percentile) <= 100.0:
            raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
        super().__init__(num_bins, absolute=symmetric)
        self.percentile = float(percentile)
        self.symmetric = symmetric

    def _compute(self) -> tuple[float, float]:
        if self.hist.limit == 0.0:
            return 0.0, 0.0
        return percentile_range(self.hist, self.percentile)


@register_observer
class EntropyObserver(HistogramObserver):
    """KL-divergence threshold search (TensorRT's entropy calibration).

    The range is ``(-t, t)`` clipped to the values seen (onnxruntime's convention, which
    leaves a one-sided tensor such as a ReLU output one-sided).

    Args:
        num_bins: Histogram bins (2048, as TensorRT and onnxruntime are usually run).
        num_quantized_bins: Levels of the quantized candidate distribution (128).
        variant: ``signed``: onnxruntime's search on a signed histogram, same
            thresholds as its ``EntropyCalibrater`` on the same histogram; ``magnitude``:
            TensorRT's / pytorch-quantization's search on a histogram of magnitudes. See
            `edgec.calibration.entropy` for why both exist and how they differ.
    """

    name = "entropy"
    variants = ("signed", "magnitude")  # named by the histogram each search runs on

    def __init__(self, num_bins: int = 2048, num_quantized_bins: int = 128, *, variant: str = "signed"):
        if variant not in self.variants:
            raise ConfigError(f"unknown entropy variant '{variant}'; expected one of: {', '.join(self.variants)}")
        if not (2 <= num_quantized_bins <= num_bins and num_quantized_bins % 2 == 0):
            raise ConfigError(
                f"num_quantized_bins must be even and in [2, num_bins={num_bins}], got {num_quantized_bins}"
            )
        super().__init__(num_bins, absolute=variant == "magnitude")
        self.variant = variant
        self.num_quantized_bins = int(num_quantized_bins)
        self.kl: np.ndarray | None = None

    def _compute(self) -> tuple[float, float]:
        h = self.hist
        if h.limit == 0.0:
            return 0.0, 0.0
        edges = h.edges
        if self.variant == "magnitude":
            i, self.kl = entropy_threshold_tensorrt(h.counts, self.num_quantized_bins)
            t = float(edges[i])
            return clip_to_seen(-t, t, h)
        start, end, self.kl = entropy_threshold_onnxruntime(h.counts, self.num_quantized_bins)
        return clip_to_seen(float(edges[start]), float(edges[end]), h)


@register_observer
class MSEObserver(HistogramObserver):
    """Range minimising the int8 quantize-dequantize mean squared error of the data.

    Args:
        symmetric: Search ``(-t, t)`` with zero point 0 instead of an asymmetric range.
        num_bins: Histogram bins.
    """

    name = "mse"

    def __init__(self, *, symmetric: bool = False, num_bins: int = 2048):
        super().__init__(num_bins)
        self.symmetric = symmetric

    def _compute(self) -> tuple[float, float]:
        return mse_range(self.hist, symmetric=self.symmetric)


__all__ = [
    "EntropyObserver",
    "HistogramObserver",
    "MSEObserver",
    "MeanMinMaxObserver",
    "MinMaxObserver",
    "Observer",
    "PercentileObserver",
    "make_observer",
    "observer_names",
    "register_observer",
]
