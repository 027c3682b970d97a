"""Activation ranges of an int8 ``.tflite`` from edgec's observers instead of the converter's min/max.

TFLiteConverter's calibration records each tensor's minimum and maximum over the
representative dataset, and the quantizer spans that range with one per-tensor int8 scale.
One sample's peak then sets the step for every sample (on PP-LCNet with 16 photos a few
tensors span 10-50x their 99.99th percentile). The calibrated model (``calibrate only``)
stores those min/max values per tensor; `override_ranges` runs it in LiteRT over the same
samples with every intermediate tensor kept, feeds each tensor's values to an edgec
observer (`edgec.calibration.observers`) and writes the observer's range back, before the
quantizer reads them. Ops whose output scale the runtime fixes (Softmax, Logistic) and
ops that keep their input's scale are re-derived by the quantizer as before. Neither range
wins everywhere (a detector's rare large logits are its signal), so ``auto`` quantizes with
both and keeps the int8 model closer to float (`choose_ranges`).
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
# ``auto`` (the default) quantizes with each of these and keeps the one closest to float on
# the calibration samples. Measured on the corpus (benchmarks/arm_ranges.py): percentile wins
# on classifiers (PP-LCNet mean cosine 0.953 -> 0.988), min/max on BlazeFace, whose few
# large face logits are the signal a percentile clips.
AUTO_CANDIDATES = ("minmax", "percentile")
DEFAULT_RANGES = "auto"


def calibrated_with(calibrated: bytes, graph: TFGraph, samples, ranges: str) -> tuple[bytes, dict[str, Any]]:
    """The calibrated model with ``ranges`` (``minmax``: as the converter calibrated it)."""
    if ranges == "minmax":
        return calibrated, {"method": "minmax"}
    method, kw = RANGE_METHODS[ranges]
    return override_ranges(calibrated, graph, samples, method, **kw)


def choose_ranges(calibrated: bytes, graph: TFGraph, samples, scored: int, quantize) -> tuple[bytes, dict[str, Any]]:
    """``auto``: the candidate whose int8 model (``quantize(calibrated)``) agrees best with float.

    Ranges come from every sample; the score from the first ``scored``: the worst cosine
    against onnxruntime over samples and outputs (the sample a clipped range breaks decides;
    on BlazeFace the means of both candidates are within 0.002, the worst samples are not).
    """
    from edgec.runtimes.onnxruntime_runner import make_session
    from edgec.targets.tflite.tflite_io import run_tflite

    sess = make_session(graph.model.proto.SerializeToString(), threads=1)
    check = samples[:scored]
    want = [sess.run(None, feeds) for feeds in check]
    best: tuple[float, bytes, dict[str, Any]] | None = None
    scores: dict[str, float] = {}
    for cand in AUTO_CANDIDATES:
        model, info = calibrated_with(calibrated, graph, samples, cand)
        data = quantize(model)
        if cand != "minmax" and not litert_accepts(data):
            continue
        try:
            got = run_tflite(data, graph, check)
        except RuntimeError:  # LiteRT refuses this int8 model (a zero-range divisor): not a candidate
            continue
        scores[cand] = round(_agreement(got, want), 6)
        if best is None or scores[cand] > best[0]:
            best = (scores[cand], model, info)
    if best is None:
        return calibrated, {"method": "minmax", "auto": "every candidate failed in LiteRT"}
    return best[1], {**best[2], "auto_scores": scores}


def _agreement(got, want) -> float:
    per_sample = []
    for g_row, w_row in zip(got, want):
        cos = []
        for g, w in zip(g_row, w_row):
            g, w = np.asarray(g, np.float64).ravel(), np.asarray(w, np.float64).ravel()
            den = float(np.linalg.norm(g) * np.linalg.norm(w))
            cos.append(float(g @ w) / den if den > 0 else float(np.allclose(g, w)))
        per_sample.append(min(cos))
    return float(min(per_sample))


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


_PROBE = """
import sys
import numpy as np
from edgec.targets.tflite.tflite_io import interpreter_class
interp = interpreter_class()[0](model_path=sys.argv[1], num_threads=1)
interp.allocate_tensors()
for d in interp.get_input_details():
    interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
interp.invoke()
"""


def litert_accepts(data: bytes) -> bool:
    """Whether LiteRT prepares and runs ``data`` without aborting, checked in a child process.

    Narrower ranges can make an int8 kernel's requantization multiplier exceed 1 where LiteRT
    CHECKs it (BERT's LayerNorm): that aborts the process instead of raising.
    """
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="edgec-litert-probe-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(data)
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, timeout=600)
    return proc.returncode == 0
