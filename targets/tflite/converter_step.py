"""TFLiteConverter runs, with their failures mapped to one-line edgec errors."""

from __future__ import annotations

import re

import numpy as np

from edgec.errors import UnsupportedOpError
from edgec.targets.tflite.onnx2tf_step import TFGraph
from edgec.targets.tflite.tools import TFLiteConversionError, captured_output


_FLEX_RE = [
    re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op"),
    re.compile(r"Flex ops: (?:Flex)?(\w+)"),
    re.compile(r"ops are not supported by the native TFLite runtime[^\n]*?\btf\.(\w+)"),
]
_QUANT_RE = [
    re.compile(r"Quantization not yet supported for op: '?([\w.]+)'?"),
    re.compile(r"'tfl\.(\w+)' op .*?(?:int8|quantiz)", re.I),
]


def run_converter(conv, what: str) -> bytes:
    """Run a TFLiteConverter; map its failures to one-line edgec errors."""
    with captured_output() as log:
        try:
            data = conv.convert()
            err = None
        except Exception as exc:
            err = exc
    if err is None:
        return bytes(data)
    raise converter_error(err, log[0] if log else "", what) from err


def quantizer_error(err: Exception) -> Exception:
    """The one-line edgec error for a failure of the MLIR quantizer on a calibrated model."""
    return converter_error(err, "", "int8")


def converter_error(err: Exception, log: str, what: str) -> Exception:
    text = f"{err}\n{log}"
    for rx in _FLEX_RE:
        m = rx.search(text)
        if m:
            op = m.group(1)
            return_hint = ("TFLite has no builtin kernel for it and LiteRT runs builtin ops only; "
                           "re-export the model without it (e.g. another opset) or replace it")
            return UnsupportedOpError(op, f"tf.{op}", "arm", return_hint)
    if what == "int8":
        for rx in _QUANT_RE:
            m = rx.search(text)
            if m:
                return UnsupportedOpError(
                    m.group(1), m.group(1), "arm",
                    "TFLite has no int8 kernel for it; use --precision int8-dynamic or fp16")
    first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
    return TFLiteConversionError(f"TFLiteConverter ({what}) failed: {first[:300]}")


def representative_dataset(graph: TFGraph, samples: list[dict[str, np.ndarray]]):
    """A TFLiteConverter representative dataset of ``samples`` in the wrapper's input convention."""
    # Keyed by signature input name: the flatbuffer's input order need not be the signature's.
    def gen():
        for feeds in samples:
            yield dict(zip(graph.in_keys, graph.to_native(feeds)))
    return gen
