"""The decoder ONNX rewritten onto onnxruntime's fused contrib kernels, as onnxruntime-genai's builder emits.

The shared decoder graph (`edgec.compiler.llm.graph`) is plain ONNX so every backend reads it;
onnxruntime runs it fastest as:

- RMSNorm subgraphs -> ``SimplifiedLayerNormalization`` (onnxruntime then fuses the residual
  ``Add`` in front into ``SkipSimplifiedLayerNormalization`` itself);
- q/k/v ``MatMulNBits`` of one layer -> one ``MatMulNBits`` over the concatenated outputs;
- the attention subgraph (rotary, KV concat, GQA broadcast, mask, softmax) ->
  ``GroupQueryAttention`` with rotary inside, ``seqlens_k``/``total_sequence_length`` from the
  attention mask, and the past/present KV in BNSH layout (so onnxruntime-genai can share one
  max-length buffer between past and present); Qwen3's per-head q/k norms stay in front of it;
- int8 per-channel ``DequantizeLinear -> MatMul`` (LM head, int8 projections) -> 8-bit
  ``MatMulNBits`` instead of dequantizing the whole matrix every token;
- the int8 embedding is gathered first and dequantized per row; with tied embeddings it reads
  the LM head's ``MatMulNBits`` bytes, so the table is stored once.

The rewrite finds the decoder's parts by the node names `build_decoder` gives them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MS = "com.microsoft"


class _Rewrite:
    def __init__(self, proto):
        import onnx

        self.model = onnx.ModelProto()
        self.model.CopyFrom(proto)
        self.g = self.model.graph
        self.inits = {t.name: t for t in self.g.initializer}
        self.by_name = {n.name: n for n in self.g.node}
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.added: list[Any] = []

    def array(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        return numpy_helper.to_array(self.inits[name])

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        t = numpy_helper.from_array(np.ascontiguousarray(value), name)
        self.g.initializer.append(t)
        self.inits[name] = t
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, domain: str = "", **attrs) -> Any:
        from onnx import helper

        n = helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs)
        self.added.append(n)
        for o in outputs:
            self.producer[o] = n
        return n

    def finish(self, drop_outputs: set[str]):
        """Replace the nodes producing ``drop_outputs``, add the new ones, drop what nothing reads."""
        from onnx import helper

        nodes = [n for n in self.g.node if not set(n.output) & drop_outputs] + self.added
        needed = {o.name for o in self.g.output}
        live = []
        for n in reversed(_topo(nodes, {i.name for i in self.g.input} | set(self.inits))):
            if set(n.output) & needed:
                live.append(n)
                needed.update(i for i in n.input if i)
        del self.g.node[:]
        self.g.node.extend(reversed(live))
        keep = [t for t in self.g.initializer if t.name in needed]
        del self.g.initializer[:]
        self.g.initializer.extend(keep)
        ins = [i for i in self.g.input if i.name in needed]
        del self.g.input[:]
        self.g.input.extend(ins)
        if not any(o.domain == MS for o in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid(MS, 1))
        return self.model


def _topo(nodes: list, available: set[str]) -> list:
    """Nodes in an order where every input is produced before it is read."""
    out, ready, pending = [], set(available) | {""}, list(nodes)
    while pending:
        rest = [n for n in pending if not all(i in ready for i in n.input)]
        if len(rest) == len(pending):
            raise ValueError(f"decoder fusion left a cycle or a dangling input at {rest[0].name}")
        for n in pending:
            if n not in rest:
                out.append(n)
                ready.update(n.output)
        pending = rest
    return out


def fuse_decoder(proto, shape, cos_cache: np.ndarray, sin_cache: np.ndarray) -> tuple[Any, dict[str, int]]:
    """(fused decoder proto, counts of what was fused). ``shape`` is the `DecoderShape`."""
    r = _Rewrite(proto)
    drop: set[str] = set()
    counts = {"simplified_layernorm": _rms_norms(r, drop), "group_query_attention": 0, "qkv_fused": 0}
    cos, sin = r.const("cos_cache", cos_cache.astype(np.float32)), r.const("sin_cache", sin_cache.astype(np.float32))
    counts["matmulnbits_8bit"] = _int8_matmuls(r, drop)
    seqlens, total = _mask_lengths(r)
    for i in range(shape.layers):
        fused_qkv = _attention(r, shape, i, seqlens, total, cos, sin, drop)
        counts["group_query_attention"] += 1
        counts["qkv_fused"] += fused_qkv
    counts["embedding_gathered_then_dequantized"], counts["tied_embedding_shared"] = _embedding(r, drop)
    return r.finish(drop), counts


def _rms_norms(r: _Rewrite, drop: set[str]) -> int:
    n_done = 0
    for var in [n for n in r.g.node if n.op_type == "ReduceMean" and n.name.endswith("_var")]:
        base = var.name[:-len("_var")]
        final, square = r.by_name.get(base), r.producer.get(var.input[0])
        if final is None or square is None or f"{base}_eps" not in r.inits:
            continue
        eps = float(r.array(f"{base}_eps").reshape(-1)[0])
        drop.add(base)
        r.node("SimplifiedLayerNormalization", [square.input[0], final.input[1]], [base], base, axis=-1,
               epsilon=eps, stash_type=1)
        n_done += 1
    return n_done


def _mask_lengths(r: _Rewrite) -> tuple[str, str]:
    """``seqlens_k [B]`` (tokens seen minus one) and ``total_sequence_length`` (scalar), int32."""
    from onnx import TensorProto

    one = r.const("gqa_one", np.array([1], np.int64))
    r.node("ReduceSum", ["attention_mask", one], ["gqa_mask_sum"], "gqa_mask_sum", keepdims=0)
    r.node("Sub", ["gqa_mask_sum", one], ["gqa_seqlens_i64"], "gqa_seqlens_i64")
    r.node("Cast", ["gqa_seqlens_i64"], ["seqlens_k"], "seqlens_k", to=TensorProto.INT32)
    r.node("Shape", ["attention_mask"], ["gqa_mask_shape"], "gqa_mask_shape")
    r.node("Gather", ["gqa_mask_shape", r.const("gqa_one_s", np.array(1, np.int64))], ["gqa_total_i64"],
           "gqa_total_i64", axis=0)
    r.node("Cast", ["gqa_total_i64"], ["total_sequence_length"], "total_sequence_length", to=TensorProto.INT32)
    return "seqlens_k", "total_sequence_length"


def _attention(r: _Rewrite, shape, i: int, seqlens: str, total: str, cos: str, sin: str, drop: set[str]) -> int:
    p = f"model.layers.{i}"
    proj = {k: r.by_name[f"{p}.{k}_proj"] for k in "qkv"}
    outs = {k: f"{p}.{k}_proj_b" if f"{p}.{k}_proj_b" in r.producer else f"{p}.{k}_proj" for k in "qkv"}
    fused = None if shape.qk_norm else _fuse_qkv(r, p, proj, outs)
    qkv = [fused, "", ""] if fused else [outs["q"], outs["k"], outs["v"]]
    if shape.qk_norm:  # onnxruntime's CPU GQA has no q/k norm inputs: normed heads [B,S,n,D] -> [B,S,n*D]
        flat = r.const("gqa_flat_heads", np.array([0, 0, -1], np.int64))
        for j, kind in ((0, "q"), (1, "k")):
            r.node("Reshape", [f"{p}.{kind}_norm", flat], [f"{p}.{kind}_normed"], f"{p}.{kind}_normed")
            qkv[j] = f"{p}.{kind}_normed"
    present = [f"present.{i}.key", f"present.{i}.value"]
    drop.update(present)
    r.node("GroupQueryAttention", [*qkv, f"past_key_values.{i}.key", f"past_key_values.{i}.value", seqlens, total,
                                   cos, sin], [f"{p}.attention", *present], f"{p}.attention", domain=MS,
           num_heads=shape.heads, kv_num_heads=shape.kv_heads, scale=float(shape.head_dim ** -0.5), do_rotary=1,
           rotary_interleaved=0, local_window_size=-1)
    o_proj = r.by_name[f"{p}.o_proj"]
    o_proj.input[0] = f"{p}.attention"
    return int(bool(fused))


def _fuse_qkv(r: _Rewrite, p: str, proj: dict, outs: dict) -> str | None:
    """One ``MatMulNBits`` for q, k and v when all three are alike; returns its (biased) output."""
    from onnx import helper

    ns = list(proj.values())
    attrs = [{a.name: helper.get_attribute_value(a) for a in n.attribute if a.name != "N"} for n in ns]
    if any(n.op_type != "MatMulNBits" or n.input[0] != ns[0].input[0] or len(n.input) != len(ns[0].input)
           or a != attrs[0] or len(n.input) > 4 for n, a in zip(ns, attrs)):
        return None
    name = f"{p}.qkv_proj"
    parts = [r.const(f"{name}_{role}", np.concatenate([r.array(n.input[j]) for n in ns], 0))
             for j, role in zip(range(1, len(ns[0].input)), ("B", "scales", "zero_points"))]
    n_total = sum(next(a.i for a in n.attribute if a.name == "N") for n in ns)
    r.node("MatMulNBits", [ns[0].input[0], *parts], [name], name, domain=MS, N=n_total, **attrs[0])
    if outs["q"].endswith("_b"):
        bias = np.concatenate([r.array(r.producer[outs[k]].input[1]) for k in "qkv"])
        r.node("Add", [name, r.const(f"{name}_bias", bias)], [f"{name}_b"], f"{name}_b")
        return f"{name}_b"
    return name


def _int8_dq(r: _Rewrite, name: str, axis: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(int8 values, per-channel scale) of a symmetric int8 per-channel ``DequantizeLinear`` output."""
    from onnx import TensorProto, helper

    dq = r.producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in r.inits or len(dq.input) > 2 and dq.input[2]:
        return None
    got_axis = next((helper.get_attribute_value(a) for a in dq.attribute if a.name == "axis"), 1)
    if r.inits[dq.input[0]].data_type != TensorProto.INT8 or got_axis != axis or \
            any(a.name == "block_size" and a.i for a in dq.attribute):
        return None
    return r.array(dq.input[0]), r.array(dq.input[1]).astype(np.float32)


def _block(k: int) -> int:
    """The block size for a per-channel scale repeated over blocks: a power of two <= 128 dividing K if any."""
    for b in (128, 64, 32, 16):
        if k % b == 0:
            return b
    return 32


def _int8_matmuls(r: _Rewrite, drop: set[str]) -> int:
    done = 0
    for n in [n for n in r.g.node if n.op_type == "MatMul" and n.output[0] not in drop]:
        got = _int8_dq(r, n.input[1], axis=1)
        if got is None:
            continue
        q, scale = got  # [K, N], [N]
        k, n_out = q.shape
        block = _block(k)
        nb = -(-k // block)
        stored = np.full((n_out, nb * block), 128, np.uint8)
        stored[:, :k] = (q.T.astype(np.int16) + 128).astype(np.uint8)
        b = r.const(f"{n.name}_MatMulNBits_B", stored.reshape(n_out, nb, block))
        s = r.const(f"{n.name}_MatMulNBits_scales", np.repeat(scale[:, None], nb, 1).reshape(-1))
        drop.add(n.output[0])
        r.node("MatMulNBits", [n.input[0], b, s], list(n.output), n.name, domain=MS, K=k, N=n_out, bits=8,
               block_size=block, accuracy_level=4)
        r.by_name[n.name] = r.producer[n.output[0]]
        done += 1
    return done


def _embedding(r: _Rewrite, drop: set[str]) -> tuple[int, int]:
    """Gather int8 rows, then scale them (tied: the rows are the LM head's 8-bit ``MatMulNBits`` bytes)."""
    from onnx import TensorProto

    gather = r.by_name.get("embed")
    got = _int8_dq(r, gather.input[0], axis=0) if gather is not None else None
    if got is None:
        return 0, 0
    table, scale = got  # [vocab, hidden], [vocab]
    ids = gather.input[1]
    head = r.producer.get("logits")
    tied = False
    if head is not None and head.op_type == "MatMulNBits" and any(a.name == "bits" and a.i == 8 for a in head.attribute):
        b = r.array(head.input[1])
        rows = b.reshape(b.shape[0], -1)[:, :table.shape[1]]
        tied = rows.shape[0] == table.shape[0] and np.array_equal(rows.astype(np.int16) - 128, table) and \
            np.array_equal(r.array(head.input[2]).reshape(b.shape[0], -1)[:, 0], scale)
    if tied:
        r.node("Gather", [head.input[1], ids], ["embed_rows3"], "embed_rows3", axis=0)
        r.node("Reshape", ["embed_rows3", r.const("embed_rows_shape", np.array([0, 0, -1], np.int64))],
               ["embed_rows_padded"], "embed_rows_padded")
        r.node("Slice", ["embed_rows_padded", r.const("embed_start", np.array([0], np.int64)),
                         r.const("embed_end", np.array([table.shape[1]], np.int64)),
                         r.const("embed_axis", np.array([-1], np.int64))], ["embed_rows"], "embed_rows")
        r.node("Cast", ["embed_rows"], ["embed_rows_f"], "embed_rows_f", to=TensorProto.FLOAT)
        r.node("Sub", ["embed_rows_f", r.const("embed_zero", np.array(128, np.float32))], ["embed_centered"],
               "embed_centered")
        rows = "embed_centered"
    else:
        r.node("Gather", [r.const("embed_q", table), ids], ["embed_rows"], "embed_rows", axis=0)
        r.node("Cast", ["embed_rows"], ["embed_centered"], "embed_centered", to=TensorProto.FLOAT)
        rows = "embed_centered"
    r.node("Gather", [r.const("embed_scale", scale), ids], ["embed_row_scale"], "embed_row_scale", axis=0)
    r.node("Unsqueeze", ["embed_row_scale", r.const("embed_last", np.array([-1], np.int64))],
           ["embed_row_scale_b"], "embed_row_scale_b")
    drop.add("embed")
    r.node("Mul", [rows, "embed_row_scale_b"], ["embed"], "embed")
    return 1, int(tied)
