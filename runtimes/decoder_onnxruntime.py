"""Generation with onnxruntime: the KV cache is explicit graph I/O, carried between calls."""

from __future__ import annotations

import numpy as np

from edgec.runtimes.generation import DecoderSession


class OrtDecoderSession(DecoderSession):
    """Runs ``prefill``/``decode`` of a generation bundle's ONNX (onnxruntime runner)."""

    def _load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(self._model_source(), opts, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input_names = {i.name for i in self.session.get_inputs()}

    def _model_source(self) -> "str | bytes":
        return str(self.bundle / self.manifest["methods"]["decode"]["artifact"])

    def reset(self) -> None:
        super().reset()
        self.past = {s["name"]: np.zeros([1 if d == "batch" else 0 if isinstance(d, str) else d
                                          for d in s["shape"]], np.dtype(s["dtype"])) for s in self.state_spec}

    def _step(self, ids: np.ndarray) -> np.ndarray:
        n = len(ids)
        feeds = {"input_ids": ids[None], "attention_mask": np.ones((1, self.position + n), np.int64),
                 **self.past}
        if "position_ids" in self.input_names:  # fused attention takes positions from the mask
            feeds["position_ids"] = np.arange(self.position, self.position + n, dtype=np.int64)[None]
        values = dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        self.past = {s["name"]: values[s["output"]] for s in self.state_spec}
        return values["logits"][0]
