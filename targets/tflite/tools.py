"""Quiet, isolated execution of TensorFlow's converters, and their error type."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from edgec._deps import require
from edgec.errors import EdgecError


class TFLiteConversionError(EdgecError):
    """onnx2tf or TFLiteConverter could not convert the model."""


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Send fd 1/2 (Python and C++ logging) to a temp file; yields a list that gets the text."""
    sink: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield sink
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            sink.append(tmp.read().decode("utf-8", "replace"))


@contextlib.contextmanager
def in_dir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def import_tf():
    """Import TensorFlow quietly (its C++ banner goes to fd 2 on first import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules:
        with captured_output():
            tf = require("tensorflow", "tflite")
    else:
        tf = sys.modules["tensorflow"]
    return tf


# onnx2tf's generic advice after every failure; the cause is the exception line above it.
_ONNX2TF_BOILERPLATE = ("Read this and deal with it", "Alternatively, if the input OP", "If the input OP of ONNX",
                        "Also, for models that include", "input_onnx_file_path", "onnx_op_name", "The trace log is below")
_EXC_LINE = re.compile(r"^(?:\w+\.)*(\w*(?:Error|Exception)): (.+)$")


def last_error_line(log: str) -> str:
    """The line of a converter log that says what broke (not onnx2tf's generic advice)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in log.splitlines()]
    lines = [ln for ln in lines if ln and not any(b in ln for b in _ONNX2TF_BOILERPLATE)]
    for ln in reversed(lines):  # the innermost exception with a message
        m = _EXC_LINE.match(ln)
        if m and "Exception encountered when calling layer" not in m.group(2):
            return f"{m.group(1)}: {m.group(2)}"[:300]
    for i, ln in enumerate(lines):  # TF's "Exception encountered ..." is followed by the cause
        if "Exception encountered when calling layer" in ln and i + 1 < len(lines):
            return lines[i + 1][:300]
    for ln in reversed(lines):
        if "ERROR" in ln or "Error" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else "no output"
