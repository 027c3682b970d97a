"""OpenVINO CPU runner for IR artifacts (and ONNX files, which OpenVINO reads directly)."""

from __future__ import annotations

import numpy as np

from edgec._deps import require
from edgec.runtimes.base import Runner


class OpenVINORunner(Runner):
    """Compiles the bundle's IR for the OpenVINO CPU plugin and runs it synchronously."""

    name = "openvino"
    runtime = "openvino"
    decoder_session = "edgec.runtimes.decoder_openvino:OvDecoderSession"
    exposes_intermediate_tensors = True

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

    def intermediate_tensors(self, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Tensors of the IR as the CPU plugin computes them (f32 inference; fused-away tensors are left out)."""
        ov = require("openvino", "openvino")
        key = tuple(names)
        cache = self.__dict__.setdefault("_debug_models", {})
        if key not in cache:
            core = ov.Core()
            model = core.read_model(str(self.model_path))
            have = {n for op in model.get_ordered_ops() for o in op.outputs() for n in o.get_names()}
            wanted = [n for n in names if n in have]
            for n in wanted:
                model.add_outputs(n)
            compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            cache[key] = (compiled, wanted)
        compiled, wanted = cache[key]
        inputs = {i.get_any_name() for i in compiled.inputs}
        res = compiled({k: v for k, v in feeds.items() if k in inputs})
        out = {}
        for port, val in res.items():
            for n in port.get_names():
                if n in wanted:
                    out[n] = np.asarray(val)
        return out

    def runtime_version(self) -> str | None:
        import openvino

        return openvino.__version__
