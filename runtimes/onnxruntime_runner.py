"""onnxruntime CPU runner: the reference runner, and the runner of Q/DQ ONNX artifacts."""

from __future__ import annotations

import numpy as np

from edgec.runtimes.base import Runner
from edgec.runtimes.onnx_graph import make_session


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
