"""Generation bundles for OpenVINO: a stateful IR (KV cache as ReadValue/Assign) plus OpenVINO tokenizers.

The decoder ONNX (explicit ``past_key_values.*`` -> ``present.*``) is converted with OpenVINO's
ONNX frontend; then, as OpenVINO GenAI expects of an LLM:

- a ``beam_idx [batch]`` input reorders every past K/V along the batch axis (``Gather``);
- each past/present pair becomes a variable (``MakeStateful``), initialized to an empty cache
  of the request's batch size;
- runtime options (inference precision, KV-cache precision) go into the IR's ``rt_info``,
  which the CPU plugin reads at compile time.

The folder holds ``openvino_model.xml/.bin``, ``openvino_tokenizer.xml`` and
``openvino_detokenizer.xml`` (openvino-tokenizers), so ``openvino_genai.LLMPipeline(bundle,
"CPU")`` runs it unchanged, as does edgec's `OvDecoderSession`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgec._deps import require, version_of
from edgec.compiler.model import TensorSpec
from edgec.errors import EdgecError
from edgec.targets.base import Artifact, LowerResult

MODEL_XML = "openvino_model.xml"
KV_PRECISION = {"int8": "u8", "fp16": "f16", "fp32": "f32"}
KV_DTYPE = {"int8": "uint8", "fp16": "float16", "fp32": "float32"}


def lower_llm(model, lm, precision: str, options: dict[str, Any], out_dir: Path, kv_cache: str | None) -> LowerResult:
    ov = require("openvino", "openvino")
    from edgec.targets.openvino.lower import _op_counts, _stable_names, _strip_nondeterministic

    from edgec.targets.openvino.llm_weights import lift_quantized_weights, restore_compressed_weights

    proto, lifted = lift_quantized_weights(model.proto)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "decoder.onnx"
        src.write_bytes(proto.SerializeToString())
        try:
            ov_model = ov.convert_model(str(src))
        except Exception as exc:  # noqa: BLE001 - the frontend raises its own failure types
            raise EdgecError(f"OpenVINO could not convert the decoder: {str(exc).splitlines()[0]}") from exc
    compressed = restore_compressed_weights(ov_model, lifted)
    sdpa = use_sdpa(ov_model, lm.shape)
    # The cache's precision as the CPU plugin stores it (u8 with per-token scales for int8), so
    # the bundle's KV-cache bytes are what the run holds.
    state = lm.shape.state_tensors(KV_DTYPE.get(kv_cache or "fp32", "float32"))
    make_stateful(ov_model, [(s["name"], s["output"]) for s in state])
    runtime = {"INFERENCE_PRECISION_HINT": options.get("ov_precision_hint") or "f32"}
    if kv_cache:
        runtime["KV_CACHE_PRECISION"] = KV_PRECISION[kv_cache]
    for key, value in runtime.items():
        ov_model.set_rt_info(value, ["runtime_options", key])
    _stable_names(ov_model)
    ov.save_model(ov_model, str(out_dir / MODEL_XML), compress_to_fp16=False)
    _strip_nondeterministic(out_dir / MODEL_XML)
    tok_files = write_tokenizers(lm.folder, out_dir)
    ins = [TensorSpec("input_ids", ("batch", "sequence_length"), "int64"),
           TensorSpec("attention_mask", ("batch", "total_sequence_length"), "int64"),
           TensorSpec("position_ids", ("batch", "sequence_length"), "int64"),
           TensorSpec("beam_idx", ("batch",), "int32")]
    outs = [TensorSpec("logits", ("batch", "sequence_length", lm.shape.vocab), "float32")]
    return LowerResult(
        artifacts=[Artifact(MODEL_XML, "openvino-ir-stateful", "model"),
                   Artifact(MODEL_XML[:-4] + ".bin", "openvino-weights", "weights"),
                   *[Artifact(f, "openvino-tokenizer-ir", "tokenizer") for f in tok_files]],
        inputs=ins, outputs=outs,
        manifest={"openvino_version": version_of("openvino"), "device": "CPU", "runtime_config": runtime,
                  "openvino_genai": "LLMPipeline(bundle, 'CPU')"},
        report={"ir_ops": _op_counts(ov_model), "compressed_weights": compressed},
        passes=[{"name": "openvino.compressed_weights", "config": compressed},
                {"name": "openvino.sdpa", "config": {"layers": sdpa}},
                {"name": "openvino.make_stateful", "config": {"variables": len(state), "beam_idx": True}}],
        state=[s | {"where": "openvino variable"} for s in state])


def use_sdpa(ov_model, shape) -> int:
    """Each layer's attention as one ``ScaledDotProductAttention`` (returns how many layers).

    K/V are repeated to the query heads as Hugging Face's ``repeat_kv`` does, so the CPU plugin
    recognizes the past-concat -> SDPA pattern of a stateful LLM and runs its fused attention
    over the KV cache (and ``openvino_genai`` its paged attention).
    """
    import numpy as np
    import openvino.opset13 as ops

    from edgec.compiler.llm.graph import MASKED

    by_name = {name: out for op in ov_model.get_ops() if op.get_type_name() != "Result"
               for out in op.outputs() for name in out.get_names()}
    if "visible" not in by_name:
        return 0
    # Additive float mask [B, 1, S, T]: the CPU plugin's fused attention reads a boolean mask on
    # a slow generic path (~10x the attention time of a 128-token prefill).
    visible = ops.squeeze(by_name["visible"], ops.constant(np.array([2], np.int64)))
    mask = ops.select(visible, ops.constant(np.array(0, np.float32)), ops.constant(np.array(MASKED, np.float32)))
    scale = ops.constant(np.array(shape.head_dim ** -0.5, np.float32))
    group = shape.heads // shape.kv_heads
    done = 0
    for i in range(shape.layers):
        p = f"model.layers.{i}"
        names = (f"{p}.q_rot", f"present.{i}.key", f"present.{i}.value", f"{p}.context_heads")
        if not all(n in by_name for n in names):
            continue
        q, k, v, ctx = (by_name[n] for n in names)
        if group > 1:
            k, v = (_repeat_kv(t, shape.heads, group, shape.head_dim) for t in (k, v))
        attn = ops.scaled_dot_product_attention(q, k, v, mask, scale, causal=False)
        ctx.replace(attn.output(0))
        done += 1
    ov_model.validate_nodes_and_infer_types()
    return done


def _repeat_kv(t, heads: int, group: int, head_dim: int):
    """``[B, kv_heads, T, D]`` -> ``[B, heads, T, D]``, each KV head repeated ``group`` times.

    Unsqueeze -> bidirectional Broadcast to a constant ``[1, 1, group, 1, 1]`` -> Reshape, each
    node with one consumer: the multi-query shape the CPU plugin's stateful-SDPA fusion accepts
    between the KV concat and the SDPA (a ShapeOf branch or a numpy-mode Broadcast defeats it,
    and the attention then runs decomposed, with the cache concat on a generic kernel).
    """
    import numpy as np
    import openvino.opset13 as ops

    expanded = ops.unsqueeze(t, ops.constant(np.array([2], np.int64)))  # [B, kvh, 1, T, D]
    repeated = ops.broadcast(expanded, ops.constant(np.array([1, 1, group, 1, 1], np.int64)),
                             broadcast_spec="BIDIRECTIONAL")
    return ops.reshape(repeated, ops.constant(np.array([0, heads, -1, head_dim], np.int64)), True)


def make_stateful(ov_model, pairs: list[tuple[str, str]]) -> None:
    """Add ``beam_idx``, reorder each past input by it, and turn past/present pairs into variables."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops
    from openvino._offline_transformations import apply_make_stateful_transformation

    batch = ov_model.input("input_ids").get_partial_shape()[0]
    beam_idx = ops.parameter(ov.PartialShape([batch]), ov.Type.i32, name="beam_idx")
    beam_idx.output(0).get_tensor().set_names({"beam_idx"})
    ov_model.add_parameters([beam_idx])
    for past, _ in pairs:
        port = ov_model.input(past)
        consumers = list(port.get_target_inputs())
        gathered = ops.gather(port, beam_idx, ops.constant(np.int64(0)))
        for consumer in consumers:
            consumer.replace_source_output(gathered.output(0))
    ov_model.validate_nodes_and_infer_types()
    apply_make_stateful_transformation(ov_model, dict(pairs))
    # Empty cache [batch, kv_heads, 0, head_dim] for the request's batch size.
    ids_batch = ops.gather(ops.shape_of(ov_model.input("input_ids"), output_type="i64"),
                           ops.constant(np.array([0], np.int64)), ops.constant(np.int64(0)))
    for op in ov_model.get_ops():
        if op.get_type_name() == "ReadValue":
            dims = [d.get_min_length() for d in op.get_output_partial_shape(0)]
            parts = [ids_batch if i == 0 else ops.constant(np.array([0 if i == 2 else dim], np.int64))
                     for i, dim in enumerate(dims)]
            zeros = ops.broadcast(ops.constant(np.array(0, np.float32)), ops.concat(parts, 0))
            op.set_arguments([zeros])
    ov_model.validate_nodes_and_infer_types()


def write_tokenizers(folder: Path, out_dir: Path) -> list[str]:
    """``openvino_tokenizer.xml`` / ``openvino_detokenizer.xml`` converted from the HF tokenizer."""
    ov = require("openvino", "openvino")
    ovt = require("openvino_tokenizers", "llm", "openvino-tokenizers")
    from transformers import AutoTokenizer

    from edgec.targets.openvino.lower import _strip_nondeterministic

    hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    tok, detok = ovt.convert_tokenizer(hf, with_detokenizer=True)
    names = []
    for m, name in ((tok, "openvino_tokenizer.xml"), (detok, "openvino_detokenizer.xml")):
        ov.save_model(m, str(out_dir / name))
        _strip_nondeterministic(out_dir / name)
        names += [name, name[:-4] + ".bin"]
    return names
