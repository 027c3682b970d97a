"""Generation with OpenVINO: the KV cache is the compiled model's state (ReadValue/Assign)."""

from __future__ import annotations

import numpy as np

from edgec.runtimes.generation import DecoderSession


class OvDecoderSession(DecoderSession):
    """Runs a stateful OpenVINO IR (inputs ``input_ids, attention_mask, position_ids, beam_idx``)."""

    def _load(self) -> None:
        import openvino as ov

        config = {"PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        config.update(self.manifest.get("target_info", {}).get("runtime_config", {}))
        path = self.bundle / self.manifest["methods"]["decode"]["artifact"]
        self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def reset(self) -> None:
        super().reset()
        self.request.reset_state()

    def _step(self, ids: np.ndarray) -> np.ndarray:
        n = len(ids)
        self.request.infer({"input_ids": ids[None], "attention_mask": np.ones((1, self.position + n), np.int64),
                            "position_ids": np.arange(self.position, self.position + n, dtype=np.int64)[None],
                            "beam_idx": np.zeros(1, np.int32)})
        return np.array(self.request.get_tensor("logits").data[0])
