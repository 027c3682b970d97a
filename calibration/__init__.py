"""Calibration data sources, range observers, and range collection over ONNX models.

Public API:
    `load_calibration_data`: read ``--calib`` / ``--eval`` data into `CalibrationData`.
    `make_observer`: an `Observer` for ``minmax``, ``percentile``, ``entropy`` or ``mse``.
    `collect_ranges`: run a float ONNX model over samples and return per-tensor ranges.
    `parse_preprocess`: the ``--preprocess`` string -> `PreprocessConfig`.
"""

from edgec.calibration.types import CalibrationData, PreprocessConfig, TensorRange

__all__ = [
    "CalibrationData",
    "PreprocessConfig",
    "TensorRange",
    "collect_ranges",
    "load_calibration_data",
    "make_observer",
    "parse_preprocess",
]


def __getattr__(name):
    # Keep `import edgec.calibration` cheap: sources/observers load on first use.
    if name == "load_calibration_data":
        from edgec.calibration.sources import load_calibration_data

        return load_calibration_data
    if name == "make_observer":
        from edgec.calibration.observers import make_observer

        return make_observer
    if name == "parse_preprocess":
        from edgec.calibration.images import parse_preprocess

        return parse_preprocess
    if name == "collect_ranges":
        from edgec.calibration.collect import collect_ranges

        return collect_ranges
    raise AttributeError(name)
