"""Generation bundles for onnxruntime: the KV-cache decoder ONNX plus ``genai_config.json``.

The decoder keeps onnxruntime-genai's I/O names (``past_key_values.%d.key`` ->
``present.%d.key``), int4 projections become ``MatMulNBits``, and ``genai_config.json``
describes the model, so the bundle folder runs unchanged in ``onnxruntime_genai.Model(bundle)``
as well as in edgec's own `OrtDecoderSession`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgec._deps import version_of
from edgec.compiler.model import TensorSpec
from edgec.targets.base import Artifact, LowerResult

MODEL_FILE = "model.onnx"


def lower_llm(model, lm, precision: str, options: dict[str, Any], out_dir: Path) -> LowerResult:
    """Write ``model.onnx`` and ``genai_config.json``."""
    from edgec.targets.onnxruntime.lower import to_matmulnbits

    from edgec.compiler.llm.graph import rotary_tables
    from edgec.targets.onnxruntime.llm_fusion import fuse_decoder

    proto, passes, report = model.proto, [], {}
    if precision == "int4":
        level = int(options.get("int4_accuracy_level") or 4)
        proto, n = to_matmulnbits(proto, accuracy_level=level)
        passes.append({"name": "onnxruntime.matmulnbits", "config": {"nodes": n, "accuracy_level": level}})
        report["matmulnbits_nodes"] = n
    proto, fused = fuse_decoder(proto, lm.shape, *rotary_tables(lm.shape, lm.inv_freq, lm.rope_scale))
    passes.append({"name": "onnxruntime.fused_decoder", "config": fused})
    report["fused"] = fused
    (out_dir / MODEL_FILE).write_bytes(proto.SerializeToString(deterministic=True))
    graph_inputs = {i.name for i in proto.graph.input}
    config = genai_config(lm, graph_inputs)
    (out_dir / "genai_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    report["nodes"] = len(proto.graph.node)
    strip = lambda specs: [TensorSpec(s.name, s.shape, s.dtype) for s in specs]  # noqa: E731
    return LowerResult(
        artifacts=[Artifact(MODEL_FILE, "onnx-int4" if precision == "int4" else "onnx", "model"),
                   Artifact("genai_config.json", "onnxruntime-genai-config", "config")],
        inputs=[s for s in strip(model.inputs) if s.name in graph_inputs], outputs=strip(model.outputs),
        manifest={"onnxruntime_version": version_of("onnxruntime"), "provider": "CPUExecutionProvider",
                  "onnxruntime_genai_config": "genai_config.json"},
        report=report, passes=passes, state=lm.shape.state_tensors())


def genai_config(lm, graph_inputs: set[str]) -> dict[str, Any]:
    """onnxruntime-genai's model description of the decoder (greedy search by default).

    ``GroupQueryAttention`` reads past and present from one max-length buffer, so the config
    asks onnxruntime-genai to share it (no copy of the cache per token); positions come from
    the attention mask, so a fused graph has no ``position_ids`` input.
    """
    s = lm.shape
    gen_path = lm.folder / "generation_config.json"
    gen = json.loads(gen_path.read_text(encoding="utf-8")) if gen_path.is_file() else {}
    eos = gen.get("eos_token_id", lm.config.get("eos_token_id", 0))
    bos = gen.get("bos_token_id", lm.config.get("bos_token_id", eos))
    pad = gen.get("pad_token_id", lm.config.get("pad_token_id")) or (eos[0] if isinstance(eos, list) else eos)
    return {
        "model": {
            "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad, "context_length": s.max_positions,
            "vocab_size": s.vocab, "type": "llama",
            "decoder": {
                "filename": MODEL_FILE, "head_size": s.head_dim, "hidden_size": s.hidden,
                "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads, "num_hidden_layers": s.layers,
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           **({"position_ids": "position_ids"} if "position_ids" in graph_inputs else {}),
                           "past_key_names": "past_key_values.%d.key",
                           "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
            },
        },
        "search": {"do_sample": False, "early_stopping": True, "length_penalty": 1.0, "max_length": s.max_positions,
                   "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1, "num_return_sequences": 1,
                   "past_present_share_buffer": "position_ids" not in graph_inputs, "repetition_penalty": 1.0, "temperature": 1.0, "top_k": 1,
                   "top_p": 1.0, "diversity_penalty": 0.0},
    }
