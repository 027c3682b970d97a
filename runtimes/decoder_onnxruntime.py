"""Generation with onnxruntime: the KV cache is explicit graph I/O, carried between calls.

A decoder with fused attention (``GroupQueryAttention``, no ``position_ids`` input) reads and
writes one max-length KV buffer per tensor in place, bound with IOBinding, as onnxruntime-genai
runs it (``past_present_share_buffer``); a plain decoder gets the grown cache back each call.
"""

from __future__ import annotations

import numpy as np

from edgec.errors import BundleError
from edgec.runtimes.generation import DecoderSession


class OrtDecoderSession(DecoderSession):
    """Runs ``prefill``/``decode`` of a generation bundle's ONNX (onnxruntime runner)."""

    def _load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads sleep instead of spinning between the small per-token kernels, as
        # onnxruntime-genai runs them: spinning threads take cores the decode needs on a busy CPU.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(self._model_source(), opts, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.shared = "position_ids" not in self.input_names
        if self.shared:
            self.capacity = int(self.manifest["generation"]["context_length"])
            self.buffers = {s["name"]: ort.OrtValue.ortvalue_from_numpy(np.zeros(
                [1 if d == "batch" else self.capacity if isinstance(d, str) else d for d in s["shape"]],
                np.dtype(s["dtype"]))) for s in self.state_spec}

    def _model_source(self) -> "str | bytes":
        return str(self.bundle / self.manifest["methods"]["decode"]["artifact"])

    def reset(self) -> None:
        super().reset()
        if not self.shared:
            self.past = {s["name"]: np.zeros([1 if d == "batch" else 0 if isinstance(d, str) else d
                                              for d in s["shape"]], np.dtype(s["dtype"])) for s in self.state_spec}

    def _step(self, ids: np.ndarray) -> np.ndarray:
        n = len(ids)
        mask = np.ones((1, self.position + n), np.int64)
        if self.shared:
            return self._step_shared(ids, mask)
        feeds = {"input_ids": ids[None], "attention_mask": mask, **self.past}
        if "position_ids" in self.input_names:
            feeds["position_ids"] = np.arange(self.position, self.position + n, dtype=np.int64)[None]
        values = dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        self.past = {s["name"]: values[s["output"]] for s in self.state_spec}
        return values["logits"][0]

    def _step_shared(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if mask.shape[1] > self.capacity:
            raise BundleError(f"the sequence outgrew the model's context ({self.capacity} tokens)")
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(ids[None]))
        binding.bind_cpu_input("attention_mask", mask)
        binding.bind_output("logits")  # first: get_outputs() lists outputs in binding order
        for s in self.state_spec:
            binding.bind_ortvalue_input(s["name"], self.buffers[s["name"]])
            binding.bind_ortvalue_output(s["output"], self.buffers[s["name"]])
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy()[0]
