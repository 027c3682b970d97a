"""The KV-cache decoder graph equals PyTorch for each supported family (prefill, then decode)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {"tie_word_embeddings": True}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
}


def _write(folder, family):
    import torch
    import transformers

    cfg_cls, model_cls, extra = FAMILIES[family]
    torch.manual_seed(0)
    cfg = getattr(transformers, cfg_cls)(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                          max_position_embeddings=64, pad_token_id=0, **extra)
    model = getattr(transformers, model_cls)(cfg).eval()
    with torch.no_grad():  # RMSNorm weights start at 1: make them matter
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(str(folder), safe_serialization=True)
    (folder / "tokenizer.json").write_text(json.dumps({}))
    return model


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_decoder_graph_matches_pytorch(tmp_path, family):
    import onnxruntime as ort
    import torch

    from edgec.compiler.llm.graph import build_decoder
    from edgec.compiler.llm.source import load_causal_lm

    model = _write(tmp_path, family)
    lm = load_causal_lm(tmp_path)
    proto = build_decoder(lm.weights, lm.shape, lm.inv_freq, lm.rope_scale)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.array([[5, 9, 17, 33, 40, 2, 7, 8, 100, 3]], np.int64)
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids)).logits.numpy()[0]
    s = lm.shape
    past = {f"past_key_values.{i}.{k}": np.zeros((1, s.kv_heads, 0, s.head_dim), np.float32)
            for i in range(s.layers) for k in ("key", "value")}
    names = [o.name for o in sess.get_outputs()]
    got = []
    for start, stop in ((0, 7), (7, 8), (8, 9), (9, 10)):  # prefill 7 tokens, then decode one at a time
        feeds = {"input_ids": ids[:, start:stop], "attention_mask": np.ones((1, stop), np.int64),
                 "position_ids": np.arange(start, stop, dtype=np.int64)[None], **past}
        out = dict(zip(names, sess.run(None, feeds)))
        past = {k.replace("present", "past_key_values"): v for k, v in out.items() if k.startswith("present")}
        got.append(out["logits"][0])
    got = np.concatenate(got)
    scale = np.abs(ref).max()
    assert np.abs(got - ref).max() <= 1e-4 * max(scale, 1.0), family

