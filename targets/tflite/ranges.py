"""Activation ranges of an int8 ``.tflite`` from edgec's observers instead of the converter's min/max.

TFLiteConverter's calibration records each tensor's minimum and maximum over the
representative dataset, and the quantizer spans that range with one per-tensor int8 scale.
One sample's peak then sets the step for every sample (on PP-LCNet with 16 photos a few
tensors span 10-50x their 99.99th percentile). The calibrated model (``calibrate only``)
stores those min/max values per tensor; `override_ranges` runs it in LiteRT over the same
samples with every intermediate tensor kept, feeds each tensor's values to an edgec
observer (`edgec.calibration.observers`) and writes the observer's range back, before the
quantizer reads them. Ops whose output scale the runtime fixes (Softmax, Logistic) and
ops that keep their input's scale are re-derived by the quantizer as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec.targets.tflite.onnx2tf_step import TFGraph
from edgec.targets.tflite.tflite_io import SIGNATURE, interpreter_class

# ``--ranges`` choices: the converter's own min/max, or an edgec observer with its options.
RANGE_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "percentile": ("percentile", {"percentile": 99.99}),
    "mse": ("mse", {}),
    "entropy": ("entropy", {}),
}
# Measured on the corpus (benchmarks/arm_ranges.py, benchmarks/results/arm_ranges.json).
DEFAULT_RANGES = "percentile"


def override_ranges(calibrated: bytes, graph: TFGraph, samples: list[dict[str, np.ndarray]],
                    method: str, **observer_kw: Any) -> tuple[bytes, dict[str, Any]]:
    """The calibrated flatbuffer with each activation's min/max replaced by ``method``'s range."""
    from tensorflow.lite.tools import flatbuffer_utils

    from edgec.calibration.observers import make_observer

    model = flatbuffer_utils.read_model_from_bytearray(calibrated)
    sub = model.subgraphs[0]
    wanted = [i for i, t in enumerate(sub.tensors)
              if t.quantization is not None and t.quantization.min is not None and len(t.quantization.min) == 1]
    observers = {i: make_observer(method, **observer_kw) for i in wanted}
    Interpreter, _ = interpreter_class()
    interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True, num_threads=1)
    interp.allocate_tensors()
    runner = interp.get_signature_runner(SIGNATURE)
    for feeds in samples:
        runner(**dict(zip(graph.in_keys, graph.to_native(feeds))))
        for i, obs in observers.items():
            try:
                obs.update(interp.get_tensor(i))
            except ValueError:  # a tensor LiteRT did not keep (an intermediate of a fused kernel)
                continue
    del runner
    changed = 0
    for i, obs in observers.items():
        if obs.count == 0:
            continue
        r = obs.compute_range()
        q = sub.tensors[i].quantization
        lo, hi = min(r.rmin, 0.0), max(r.rmax, 0.0)
        if hi - lo <= 0:
            continue
        if (lo, hi) != (float(q.min[0]), float(q.max[0])):
            changed += 1
        q.min = np.array([lo], np.float32)
        q.max = np.array([hi], np.float32)
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return data, {"method": method, **observer_kw, "tensors": len(wanted), "changed": changed}
