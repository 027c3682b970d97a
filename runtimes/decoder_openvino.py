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
        core = ov.Core()
        model = core.read_model(str(path))
        self.logits_from = _logits_from_input(model)
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def reset(self) -> None:
        super().reset()
        self.request.reset_state()

    def _step(self, ids: np.ndarray, first_logit: int = 0) -> np.ndarray:
        n = len(ids)
        feed = {"input_ids": ids[None], "attention_mask": np.ones((1, self.position + n), np.int64),
                "position_ids": np.arange(self.position, self.position + n, dtype=np.int64)[None],
                "beam_idx": np.zeros(1, np.int32)}
        if self.logits_from:
            feed[self.logits_from] = np.array([first_logit], np.int64)
        self.request.infer(feed)
        return np.array(self.request.get_tensor("logits").data[0])

    def _step_last(self, ids: np.ndarray) -> np.ndarray:
        return self._step(ids, len(ids) - 1)[-1:]


def _logits_from_input(model) -> str | None:
    """Slice the hidden states before the LM head from a runtime input (which position's logits
    the run wants first): a prompt's prefill then projects one position onto the vocabulary
    instead of all, as openvino_genai does. The bundle's IR is unchanged; only this session's
    copy gets the input. Returns its name (None when the IR's LM head is not found)."""
    import openvino as ov
    import openvino.opset13 as ops

    head = model.output("logits").get_node().input_value(0).get_node()
    if head.get_type_name() != "MatMul":
        return None
    first = ops.parameter(ov.PartialShape([1]), ov.Type.i64, name="edgec_logits_from")
    first.output(0).get_tensor().set_names({"edgec_logits_from"})
    hidden = head.input_value(0)
    sliced = ops.slice(hidden, first, ops.constant(np.array([np.iinfo(np.int64).max], np.int64)),
                       ops.constant(np.array([1], np.int64)), ops.constant(np.array([1], np.int64)))
    head.input(0).replace_source_output(sliced.output(0))
    model.add_parameters([first])
    model.validate_nodes_and_infer_types()
    return "edgec_logits_from"
