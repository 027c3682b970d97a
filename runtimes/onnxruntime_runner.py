"""onnxruntime CPU runner: the reference runner, and the runner of Q/DQ ONNX artifacts."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec.runtimes.base import Runner


def make_session(path_or_bytes: Any, threads: int | None = None):
    """An onnxruntime CPU session with deterministic threading when ``threads`` is given."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    src = str(path_or_bytes) if not isinstance(path_or_bytes, (bytes, bytearray)) else bytes(path_or_bytes)
    return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])


class ONNXRuntimeRunner(Runner):
    """Runs an ONNX file of the bundle on onnxruntime's CPU execution provider."""

    name = "onnxruntime"
    runtime = "onnxruntime"

    def _load_impl(self) -> None:
        self._session = make_session(self.model_path, self.threads)
        self._out_names = [o.name for o in self._session.get_outputs()]

    def _run_impl(self, native: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self._session.run(self._out_names, native)
        return dict(zip(self._out_names, outs))

    def runtime_version(self) -> str | None:
        import onnxruntime

        return onnxruntime.__version__
