"""Weight quantization of the decoder graph, and the perplexity gate that falls layers back to int8.

int4: `Int4Quantizer` (RTN/GPTQ/AWQ, group 32/64/128, sym/asym; a weight whose input size does
not divide the group takes the largest group that does, else int8 per channel), embeddings and
LM head int8. int8: every projection int8 per output channel (weight-only). The gate
(``--max-accuracy-drop D --metric perplexity``) moves the int4 projections with the largest
relative weight error to int8, a few at a time, until the perplexity rises at most ``D`` percent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec.compiler.quality import PERPLEXITY_METRIC
from edgec.errors import ConfigError

CALIB_CHUNK, CALIB_MAX = 64, 16  # calibration samples of 64 tokens for gptq/awq
GATE_TOKENS = 1024  # eval tokens used by the gate
GATE_STEPS = 8  # the int4 layers are moved to int8 in at most this many steps


def calibration_samples(handle, ids: list[int]):
    """CalibrationData of prefill calls (empty KV cache) over chunks of ``ids``."""
    from edgec.calibration.types import CalibrationData

    samples = []
    for start in range(0, len(ids) - CALIB_CHUNK + 1, CALIB_CHUNK):
        chunk = np.array(ids[start:start + CALIB_CHUNK], np.int64)[None]
        s = {"input_ids": chunk, "attention_mask": np.ones_like(chunk),
             "position_ids": np.arange(CALIB_CHUNK, dtype=np.int64)[None]}
        for spec in handle.inputs:
            if spec.name.startswith("past_key_values"):
                s[spec.name] = np.zeros((1, spec.shape[1], 0, spec.shape[3]), np.float32)
        samples.append(s)
        if len(samples) == CALIB_MAX:
            break
    return CalibrationData(samples, "text", kind="text")


def quantize_decoder(config, handle, precision: str, eval_ids: list[int], tok, lm, progress):
    """(quantized handle or None, manifest summary or None, gate report or None)."""
    from edgec.compiler.int4 import Int4Quantizer

    if precision == "fp32":
        if config.gate.max_accuracy_drop is not None:
            raise ConfigError("--max-accuracy-drop needs a quantized precision (int4 or int8)")
        return None, None, None
    method = config.int4.method if precision == "int4" else "rtn"
    if method == "auto":  # generation bundles keep the data-free default; their gate measures perplexity
        method = "rtn"
    calibration = None
    if method != "rtn":
        if len(eval_ids) < CALIB_CHUNK:
            raise ConfigError(f"--int4-method {method} needs calibration text: pass --calib FILE.txt")
        calibration = calibration_samples(handle, eval_ids)
    q = Int4Quantizer(handle, calibration, config.int4.group_size, config.int4.mode, method)
    progress.message(f"{precision} weights ({method}, {config.int4.mode}, group {q.group_size})")
    q.prepare()
    all_int8 = tuple(q.weights) if precision == "int8" else ()
    if config.gate.max_accuracy_drop is None or precision == "int8":
        if config.gate.max_accuracy_drop is not None:
            raise ConfigError("--max-accuracy-drop on generation bundles moves int4 layers to int8: use --precision int4")
        quant, summary = q.quantize(int8_nodes=all_int8)
        return quant, _summary(summary, precision), None
    if config.gate.metric not in ("auto", PERPLEXITY_METRIC):
        raise ConfigError(f"--metric {config.gate.metric}: generation bundles gate on perplexity (--metric perplexity)")
    return _gate(config, handle, q, eval_ids, progress)


def _summary(summary: dict[str, Any], precision: str) -> dict[str, Any]:
    summary = dict(summary)
    if precision == "int8":
        summary["method"], summary["weights"] = "per-channel", "int8"
    summary["int8_nodes"] = len(summary["int8_nodes"])
    return summary


def _gate(config, handle, q, eval_ids: list[int], progress):
    from onnx import numpy_helper

    from edgec.compiler.llm.accuracy import FloatDecoder
    from edgec.runtimes.generation import perplexity

    ids = eval_ids[:GATE_TOKENS]
    if len(ids) < 32:
        raise ConfigError("--max-accuracy-drop needs evaluation text: pass --calib or --eval FILE.txt")
    float_ppl = perplexity(FloatDecoder(handle), ids)
    inits = {t.name: t for t in handle.proto.graph.initializer}
    nodes = {n.name: n for n in handle.proto.graph.node}
    weights4 = q._int4_weights(q._awq_model().proto if q.method == "awq" else handle.proto)
    errors = {}
    for name, w4 in weights4.items():
        w = numpy_helper.to_array(inits[nodes[name].input[1]]) if nodes[name].input[1] in inits else w4.dequantize()
        errors[name] = float(np.linalg.norm(w - w4.dequantize()) / (np.linalg.norm(w) + 1e-12))
    ranked = sorted(errors, key=lambda n: -errors[n])
    step = max(1, -(-len(ranked) // GATE_STEPS))
    tries = []
    moved: tuple[str, ...] = ()
    while True:
        quant, summary = q.quantize(int8_nodes=moved)
        ppl = perplexity(FloatDecoder(quant), ids)
        drop = (ppl - float_ppl) / float_ppl * 100.0
        tries.append({"int8_layers": len(moved), "perplexity": ppl, "drop_percent": drop})
        progress.message(f"gate: {len(moved)} layer(s) int8, perplexity {ppl:.3f} (float {float_ppl:.3f})")
        if drop <= config.gate.max_accuracy_drop or len(moved) == len(ranked):
            break
        moved = tuple(ranked[:len(moved) + step])
    gate = {"metric": "perplexity", "max_drop_percent": config.gate.max_accuracy_drop, "float_perplexity": float_ppl,
            "met": drop <= config.gate.max_accuracy_drop, "attempts": tries, "int8_layers": sorted(moved)}
    return quant, _summary(summary, "int4"), gate
