"""onnxruntime's fused decoder (GroupQueryAttention, SimplifiedLayerNormalization, fused QKV, 8-bit LM head)
equals PyTorch, and its int4 form equals the unfused int4 graph, for each supported family."""

from __future__ import annotations

import numpy as np
import pytest

from tests.compiler.llm.test_decoder_graph import FAMILIES, _write

pytest.importorskip("transformers")



def _run_decoder(sess, shape, ids, chunks, positions: bool):
    past = {f"past_key_values.{i}.{k}": np.zeros((1, shape.kv_heads, 0, shape.head_dim), np.float32)
            for i in range(shape.layers) for k in ("key", "value")}
    names = [o.name for o in sess.get_outputs()]
    got = []
    for start, stop in chunks:
        feeds = {"input_ids": ids[:, start:stop], "attention_mask": np.ones((1, stop), np.int64), **past}
        if positions:
            feeds["position_ids"] = np.arange(start, stop, dtype=np.int64)[None]
        out = dict(zip(names, sess.run(None, feeds)))
        past = {k.replace("present", "past_key_values"): v for k, v in out.items() if k.startswith("present")}
        got.append(out["logits"][0])
    return np.concatenate(got)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_onnxruntime_fused_decoder_matches_pytorch(tmp_path, family):
    """GroupQueryAttention (rotary, GQA, Qwen3 q/k norms, Qwen2 biases) and SimplifiedLayerNormalization
    give PyTorch's logits; the int4 graph with fused QKV gives the unfused int4 graph's logits."""
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper

    from edgec.compiler.int4 import Int4Quantizer
    from edgec.compiler.llm.graph import build_decoder, rotary_tables
    from edgec.compiler.llm.source import load_causal_lm
    from edgec.compiler.model import ModelHandle
    from edgec.targets.onnxruntime.llm_fusion import fuse_decoder
    from edgec.targets.onnxruntime.lower import to_matmulnbits

    model = _write(tmp_path, family)
    lm = load_causal_lm(tmp_path)
    s = lm.shape
    tables = rotary_tables(s, lm.inv_freq, lm.rope_scale)
    proto = build_decoder(lm.weights, s, lm.inv_freq, lm.rope_scale)
    fused, counts = fuse_decoder(proto, s, *tables)
    assert counts["group_query_attention"] == s.layers and counts["simplified_layernorm"] >= 2 * s.layers + 1
    ops = {n.op_type for n in fused.graph.node}
    assert "Softmax" not in ops and "position_ids" not in {i.name for i in fused.graph.input}
    sess = lambda p: ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"])  # noqa: E731
    ids = np.array([[5, 9, 17, 33, 40, 2, 7, 8, 100, 3]], np.int64)
    chunks = ((0, 7), (7, 8), (8, 9), (9, 10))  # prefill 7 tokens, then decode one at a time
    with torch.no_grad():
        ref = model(input_ids=torch.from_numpy(ids)).logits.numpy()[0]
    got = _run_decoder(sess(fused), s, ids, chunks, positions=False)
    assert np.abs(got - ref).max() <= 1e-4 * max(np.abs(ref).max(), 1.0), family

    handle = ModelHandle.from_onnx(proto, str(tmp_path), "0" * 64)
    quant, _ = Int4Quantizer(handle, None, 32, "sym", "rtn").quantize()
    q4, _ = to_matmulnbits(quant.proto, accuracy_level=0)
    q4_fused, counts = fuse_decoder(q4, s, *tables)
    assert counts["qkv_fused"] == (0 if s.qk_norm else s.layers) and counts["matmulnbits_8bit"] == 1
    if s.vocab and "lm_head.weight" not in lm.weights:  # tied: the embedding reads the LM head's bytes
        assert counts["tied_embedding_shared"] == 1
        assert not any(numpy_helper.to_array(t).size == s.vocab * s.hidden for t in q4_fused.graph.initializer
                       if t.name == "embed_q")
    want = _run_decoder(sess(q4), s, ids, chunks, positions=True)
    got = _run_decoder(sess(q4_fused), s, ids, chunks, positions=False)
    # The fused graph runs the int8 LM head as 8-bit MatMulNBits with int8 activations (accuracy level 4).
    assert np.abs(got - want).max() <= 0.02 * max(np.abs(want).max(), 1.0), family
