"""Helpers for the calibration tests: tiny ONNX models, onnxruntime's calibrators, a tokenizer.

A plain module (not a conftest.py): another test folder already has a package-less
conftest.py, and two of them would clash under pytest's default import mode.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgec.compiler.model import TensorSpec


def spec(name: str, shape, dtype: str = "float32") -> TensorSpec:
    return TensorSpec(name, tuple(shape), dtype)


def make_model(nodes, inputs, outputs, initializers=(), value_info=()) -> onnx.ModelProto:
    g = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers),
                          value_info=list(value_info))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def relu_model(width: int) -> onnx.ModelProto:
    """x [1, width] -> Relu -> r -> Identity -> y: one signed and one one-sided tensor."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])
    return make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["y"])],
                      [x], [y])


def conv_relu_model(weight: np.ndarray, bias: np.ndarray, value_info=()) -> onnx.ModelProto:
    """x [N, C, H, W] -> Conv (pad 1) -> c -> Relu -> r -> Mul 2 -> y."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", weight.shape[1], 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Mul", ["r", "two"], ["y"])]
    return make_model(nodes, [x], [y], inits, value_info)


def conv_numpy(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Conv2d, stride 1, padding 1, in float64."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, w.shape[2:], axis=(2, 3))  # N C H W kh kw
    return np.einsum("nchwij,ocij->nohw", win, w.astype(np.float64)) + b[None, :, None, None]


class _Reader:
    def __init__(self, samples):
        self._it = iter(samples)

    def get_next(self):
        return next(self._it, None)


def ort_ranges(model: onnx.ModelProto, samples: list[dict], tmp: Path, method: str, **extra) -> dict:
    """Ranges from onnxruntime's own calibrator (`create_calibrator`), as ``{name: (lo, hi)}``."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    path = tmp / f"ort_{method}.onnx"
    onnx.save(model, path)
    cal = create_calibrator(path, augmented_model_path=str(tmp / f"ort_{method}_aug.onnx"),
                            calibrate_method=getattr(CalibrationMethod, method), extra_options=extra)
    with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print progress
        cal.collect_data(_Reader(samples))
        data = cal.compute_data()
    return {k: (float(np.ravel(v.range_value[0])[0]), float(np.ravel(v.range_value[1])[0])) for k, v in data.items()}


def qdq_mse_actual(x: np.ndarray, lo: float, hi: float) -> float:
    """Mean squared error of asymmetric int8 quantize-dequantize of `x` with range [lo, hi]."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    s = (hi - lo) / 255.0
    zp = np.clip(np.round(-128 - lo / s), -128, 127)
    q = np.clip(np.round(x / s) + zp, -128, 127)
    return float(np.mean(((q - zp) * s - x) ** 2))


def save_tokenizer(folder: Path) -> Path:
    """A tiny word-level BERT-style tokenizer (CLS/SEP/PAD, segment ids) saved for AutoTokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = "[PAD] [UNK] [CLS] [SEP] hello world the cat sat on a mat dog ran".split()
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder
