"""OpenVINO CPU runner for IR artifacts (and ONNX files, which OpenVINO reads directly)."""

from __future__ import annotations

import numpy as np

from edgec._deps import require
from edgec.runtimes.base import Runner


class OpenVINORunner(Runner):
    """Compiles the bundle's IR for the OpenVINO CPU plugin and runs it synchronously."""

    name = "openvino"
    runtime = "openvino"

    def _load_impl(self) -> None:
        ov = require("openvino", "openvino")
        core = ov.Core()
        cfg = {
            "PERFORMANCE_HINT": "LATENCY",
            # Without this the CPU plugin runs float parts in bf16 on CPUs that have it,
            # which changes results against the float reference.
            "INFERENCE_PRECISION_HINT": self.manifest.get("target_info", {}).get("inference_precision_hint", "f32"),
        }
        if self.threads:
            cfg["INFERENCE_NUM_THREADS"] = int(self.threads)
        model = core.read_model(str(self.model_path))
        self._compiled = core.compile_model(model, "CPU", cfg)
        self._request = self._compiled.create_infer_request()
        self._outs = [o for o in self._compiled.outputs]
        self._out_names = [s.name for s in self.native_out]

    def _run_impl(self, native: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        res = self._request.infer(native)
        return {name: np.asarray(res[port]) for name, port in zip(self._out_names, self._outs)}

    def runtime_version(self) -> str | None:
        import openvino

        return openvino.__version__
