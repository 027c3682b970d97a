"""onnxruntime CPU runner: the reference runner, and the runner of Q/DQ ONNX artifacts."""

from __future__ import annotations

import numpy as np

from edgec.runtimes.base import Runner
from edgec.runtimes.onnx_graph import make_session
from edgec.runtimes.registry import REFERENCE_RUNNER


class ONNXRuntimeRunner(Runner):
    """Runs an ONNX file of the bundle on onnxruntime's CPU execution provider."""

    name = runtime = REFERENCE_RUNNER  # the registry's reference runner is this one
    decoder_session = "edgec.runtimes.decoder_onnxruntime:OrtDecoderSession"
    exposes_intermediate_tensors = True

    def _load_impl(self) -> None:
        self._session = make_session(self.model_path, self.threads)
        self._out_names = [o.name for o in self._session.get_outputs()]

    def _run_impl(self, native: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self._session.run(self._out_names, native)
        return dict(zip(self._out_names, outs))

    def intermediate_tensors(self, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Tensors of the artifact ONNX, run with graph optimizations off so none is fused away."""
        import onnx

        from edgec.runtimes.onnx_graph import with_outputs

        cache = self.__dict__.setdefault("_debug_sessions", {})
        key = tuple(names)
        if key not in cache:
            proto = onnx.load(str(self.model_path))
            have = {o for n in proto.graph.node for o in n.output} | {i.name for i in proto.graph.input}
            wanted = [n for n in names if n in have]
            cache[key] = (make_session(with_outputs(proto, wanted), optimize=False), wanted)
        sess, wanted = cache[key]
        native = self.prepare(feeds)
        return dict(zip(wanted, sess.run(wanted, native))) if wanted else {}

    def runtime_version(self) -> str | None:
        import onnxruntime

        return onnxruntime.__version__
