"""What OpenVINO's CPU plugin runs for a bundle, and the placement tests' model folders: shared by those tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Layer types listed as f32 whatever they move (a Reshape moves bytes of any type).
NO_COMPUTE = ("Reshape", "Const", "Input", "Output")


def runtime_precision(bundle, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """``{original ONNX node: runtime precision}`` of the CPU plugin (fused nodes share their kernel's).

    Args:
        bundle: The bundle folder (its ``model.xml``).
        skip: Runtime layer types left out.
    """
    import openvino as ov

    compiled = ov.Core().compile_model(str(bundle / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    out: dict[str, str] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in skip:
            continue
        for name in info["originalLayersNames"].astype(str).split(","):
            out.setdefault(name, info["runtimePrecision"].astype(str))
    return out


def model_folder(folder: Path, proto, input_shape: tuple[int, ...]) -> Path:
    """``folder`` with ``proto`` as ``m.onnx`` and ``calib.npz``: 16 standard-normal samples of input ``x``."""
    (folder / "m.onnx").write_bytes(proto.SerializeToString())
    rng = np.random.default_rng(1)
    np.savez(folder / "calib.npz", x=rng.standard_normal((16, *input_shape)).astype(np.float32))
    return folder
