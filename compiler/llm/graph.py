"""Decoder ONNX with explicit KV-cache I/O, written from a causal LM's weights.

One graph serves prefill and decode (the ``prefill``/``decode`` methods of the bundle differ
only in sequence length): inputs ``input_ids [B, S]``, ``attention_mask [B, P+S]``,
``position_ids [B, S]`` and ``past_key_values.{i}.key|value [B, kv_heads, P, head_dim]``;
outputs ``logits [B, S, vocab]`` and ``present.{i}.key|value [B, kv_heads, P+S, head_dim]``.
These are onnxruntime-genai's names; the OpenVINO target turns the past/present pairs into
state. The graph is written node by node (standard ONNX ops, opset 21) instead of traced, so
every projection is a ``MatMul`` on a constant ``[K, N]`` weight the int4/int8 quantizers find,
and the output does not depend on the exporter's version.

Attention shares K/V across query groups without copying them: queries are reshaped to
``[B, kv_heads, group, S, D]`` and broadcast-multiplied against ``[B, kv_heads, 1, T, D]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

OPSET = 21
MASKED = -1e9  # attention score of masked positions (exp underflows to exactly 0)


@dataclass(frozen=True)
class DecoderShape:
    """The architecture facts the graph needs (from the HF config)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_positions: int
    eps: float
    qk_norm: bool = False

    def state_tensors(self, dtype: str = "float32") -> list[dict[str, Any]]:
        """Declared KV-cache state: one key and one value per layer (``P`` grows per token)."""
        return [{"name": f"past_key_values.{i}.{kind}", "output": f"present.{i}.{kind}",
                 "shape": ["batch", self.kv_heads, "past_sequence_length", self.head_dim], "dtype": dtype}
                for i in range(self.layers) for kind in ("key", "value")]

    def kv_bytes_per_token(self, itemsize: int = 4) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * itemsize


class _Graph:
    """Minimal node/initializer collector with deterministic names."""

    def __init__(self):
        self.nodes, self.inits, self._n, self._names = [], [], 0, set()

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        if name in self._names:  # shared constants (shapes, axes) are written once
            return name
        self._names.add(name)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, n_out: int = 1, **attrs) -> Any:
        from onnx import helper

        self._n += 1
        base = name or f"{op_type}_{self._n}"
        outs = [base if n_out == 1 else f"{base}_out{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=base, **attrs))
        return outs[0] if n_out == 1 else outs


def rotary_tables(shape: DecoderShape, inv_freq: np.ndarray, rope_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin ``[max_positions, head_dim/2]`` (float32) of every position's rotary angles."""
    freqs = np.outer(np.arange(shape.max_positions, dtype=np.float64), inv_freq.astype(np.float64))
    return (np.cos(freqs) * rope_scale).astype(np.float32), (np.sin(freqs) * rope_scale).astype(np.float32)


def build_decoder(weights: dict[str, np.ndarray], shape: DecoderShape, inv_freq: np.ndarray,
                  rope_scale: float = 1.0) -> Any:
    """The decoder ONNX from HF Llama-style weights (``model.layers.{i}...``, ``lm_head.weight``)."""
    from onnx import TensorProto, helper

    g = _Graph()
    i64 = lambda name, v: g.const(name, np.array(v, np.int64))  # noqa: E731
    d, kvh, h = shape.head_dim, shape.kv_heads, shape.heads
    group = h // kvh
    one = i64("one", [1])
    # Rotary tables [max_positions, 1, D/2], gathered by position id. Stored 3-D so the weight
    # quantizers, which take a Gather on a 2-D constant for an embedding, leave them float.
    cos_np, sin_np = rotary_tables(shape, inv_freq, rope_scale)
    cos_t, sin_t = g.const("rotary_cos", cos_np[:, None]), g.const("rotary_sin", sin_np[:, None])
    to_heads = [0, 2, 1, 3]  # [B,S,1,D/2] -> [B,1,S,D/2]
    cos = g.op("Transpose", [g.op("Gather", [cos_t, "position_ids"])], "rotary_cos_b", perm=to_heads)
    sin = g.op("Transpose", [g.op("Gather", [sin_t, "position_ids"])], "rotary_sin_b", perm=to_heads)
    half = i64("rotary_split", [d // 2, d // 2])

    # Mask [B,1,1,S,T]: key j is visible to query i when j <= P + i and attention_mask[j] == 1.
    total = g.op("Gather", [g.op("Shape", ["attention_mask"]), one], "total_len")  # [1]
    seq = g.op("Gather", [g.op("Shape", ["input_ids"]), one], "seq_len")
    zero = i64("zero", 0)
    key_pos = g.op("Range", [zero, g.op("Squeeze", [total]), g.const("one_s", np.array(1, np.int64))], "key_pos")
    q_pos = g.op("Range", [g.op("Squeeze", [g.op("Sub", [total, seq])]), g.op("Squeeze", [total]),
                           "one_s"], "query_pos")
    causal = g.op("LessOrEqual", [g.op("Unsqueeze", [key_pos, i64("ax0", [0])]),
                                  g.op("Unsqueeze", [q_pos, one])], "causal")  # [S,T]
    pad = g.op("Reshape", [g.op("Cast", ["attention_mask"], to=TensorProto.BOOL),
                           i64("mask_shape", [0, 1, 1, 1, -1])], "pad_mask")
    visible = g.op("And", [causal, pad], "visible")

    def w(name: str) -> str:
        return g.const(name, weights[name].T.astype(np.float32))  # HF Linear [N, K] -> [K, N]

    def rms(x: str, weight: str, name: str) -> str:
        var = g.op("ReduceMean", [g.op("Mul", [x, x]), i64("ax_last", [-1])], f"{name}_var", keepdims=1)
        inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [var, g.const(f"{name}_eps", np.array(
            shape.eps, np.float32))])])], f"{name}_inv")
        return g.op("Mul", [g.op("Mul", [x, inv]), g.const(f"{name}_weight", weights[weight].astype(np.float32))],
                    name)

    def linear(x: str, name: str, out_name: str) -> str:
        y = g.op("MatMul", [x, w(name + ".weight")], out_name)
        if name + ".bias" in weights:
            y = g.op("Add", [y, g.const(name + ".bias", weights[name + ".bias"].astype(np.float32))], out_name + "_b")
        return y

    def rotate(x: str, name: str) -> str:
        x1, x2 = g.op("Split", [x, half], f"{name}_split", n_out=2, axis=-1)
        a = g.op("Sub", [g.op("Mul", [x1, cos]), g.op("Mul", [x2, sin])])
        b = g.op("Add", [g.op("Mul", [x2, cos]), g.op("Mul", [x1, sin])])
        return g.op("Concat", [a, b], f"{name}_rot", axis=-1)

    heads_shape = lambda n: i64(f"heads_shape_{n}", [0, 0, n, d])  # noqa: E731
    x = g.op("Gather", [g.const("model.embed_tokens.weight", weights["model.embed_tokens.weight"].astype(
        np.float32)), "input_ids"], "embed")
    outputs = []
    for i in range(shape.layers):
        p = f"model.layers.{i}"
        hn = rms(x, f"{p}.input_layernorm.weight", f"{p}.input_layernorm")
        qkv = {}
        for kind, n in (("q", h), ("k", kvh), ("v", kvh)):
            t = g.op("Reshape", [linear(hn, f"{p}.self_attn.{kind}_proj", f"{p}.{kind}_proj"), heads_shape(n)])
            if shape.qk_norm and kind in "qk":
                t = rms(t, f"{p}.self_attn.{kind}_norm.weight", f"{p}.{kind}_norm")
            t = g.op("Transpose", [t], f"{p}.{kind}_heads", perm=[0, 2, 1, 3])  # [B, n, S, D]
            qkv[kind] = rotate(t, f"{p}.{kind}") if kind in "qk" else t
        k = g.op("Concat", [f"past_key_values.{i}.key", qkv["k"]], f"present.{i}.key", axis=2)
        v = g.op("Concat", [f"past_key_values.{i}.value", qkv["v"]], f"present.{i}.value", axis=2)
        outputs += [k, v]
        q5 = g.op("Reshape", [qkv["q"], i64(f"{p}.q5", [0, kvh, group, -1, d])])
        k5 = g.op("Unsqueeze", [k, i64("ax2", [2])])
        v5 = g.op("Unsqueeze", [v, "ax2"])
        scores = g.op("MatMul", [q5, g.op("Transpose", [k5], perm=[0, 1, 2, 4, 3])], f"{p}.scores")
        scores = g.op("Mul", [scores, g.const(f"{p}.scale", np.array(d ** -0.5, np.float32))])
        scores = g.op("Where", [visible, scores, g.const("masked", np.array(MASKED, np.float32))])
        probs = g.op("Softmax", [scores], f"{p}.probs", axis=-1)
        ctx = g.op("MatMul", [probs, v5], f"{p}.context")  # [B, kvh, group, S, D]
        ctx = g.op("Reshape", [ctx, i64(f"{p}.ctx4", [0, h, -1, d])], f"{p}.context_heads")  # [B, h, S, D]
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), i64("merge_heads", [0, 0, h * d])])
        x = g.op("Add", [x, linear(ctx, f"{p}.self_attn.o_proj", f"{p}.o_proj")], f"{p}.attn_residual")
        hn = rms(x, f"{p}.post_attention_layernorm.weight", f"{p}.post_attention_layernorm")
        gate = linear(hn, f"{p}.mlp.gate_proj", f"{p}.gate_proj")
        act = g.op("Mul", [gate, g.op("Sigmoid", [gate])], f"{p}.silu")
        up = g.op("Mul", [act, linear(hn, f"{p}.mlp.up_proj", f"{p}.up_proj")])
        x = g.op("Add", [x, linear(up, f"{p}.mlp.down_proj", f"{p}.down_proj")], f"{p}.mlp_residual")
    x = rms(x, "model.norm.weight", "model.norm")
    head = "lm_head.weight" if "lm_head.weight" in weights else "model.embed_tokens.weight"
    g.nodes.append(helper.make_node("MatMul", [x, g.const("lm_head.weight_kn", weights[head].T.astype(np.float32))],
                                    ["logits"], name="lm_head"))
    f32 = TensorProto.FLOAT
    ins = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence_length"]),
           helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total_sequence_length"]),
           helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "sequence_length"])]
    outs = [helper.make_tensor_value_info("logits", f32, ["batch", "sequence_length", shape.vocab])]
    for s in shape.state_tensors():
        ins.append(helper.make_tensor_value_info(s["name"], f32, s["shape"]))
        outs.append(helper.make_tensor_value_info(s["output"], f32, ["batch", kvh, "total_sequence_length", d]))
    graph = helper.make_graph(g.nodes, "decoder", ins, outs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgec")
    model.ir_version = 10
    return model
