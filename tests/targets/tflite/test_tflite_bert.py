"""The arm target on a tiny BERT (2 layers, hidden 32, static [1, 16]): int32 token inputs."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.runtimes.harness import compare
from edgec.runtimes.litert_runner import LiteRTRunner

from .conftest import lower
from .test_tflite_cnn import _OrtReference

pytestmark = pytest.mark.slow  # TensorFlow conversions (Keras, TFLite converter, onnx2tf)


@pytest.fixture(scope="session")
def bert_fp32(bert, tmp_session):
    model, calib, _ = bert
    return lower(model, calib, "fp32", tmp_session / "bert_fp32")


@pytest.fixture(scope="session")
def bert_int8(bert, tmp_session):
    model, calib, _ = bert
    return lower(model, calib, "int8", tmp_session / "bert_int8")


def test_bert_fp32_int32_tokens_and_parity(bert_fp32, bert):
    _, _, evals = bert
    r = bert_fp32.result
    assert [(s.name, s.dtype, s.shape, s.layout) for s in r.inputs] == [
        ("input_ids", "int32", (1, 16), None), ("attention_mask", "int32", (1, 16), None)]
    assert [(s.name, s.dtype, s.shape) for s in r.outputs] == [("last_hidden_state", "float32", (1, 16, 32))]
    # The Erf-GELU became TFLite's GELU builtin; nothing needs Flex.
    assert any(p["name"] == "fuse-erf-gelu" for p in r.passes)
    assert "GELU" in r.report["ops"]
    assert r.report["float_tflite_max_abs_err"] < 1e-4
    with LiteRTRunner(bert_fp32.bundle, bert_fp32.manifest, threads=1) as runner:
        acc = compare(runner, _OrtReference(bert_fp32.model), evals)
    assert acc["max_abs_err"] < 1e-4


def test_bert_int8_full_integer(bert_int8, bert):
    _, _, evals = bert
    r = bert_int8.result
    assert [s.dtype for s in r.inputs] == ["int32", "int32"]  # token ids are not quantized
    (out,) = r.outputs
    assert out.dtype == "int8" and out.scale > 0
    assert r.report["float_tflite_max_abs_err"] < 1e-4
    with LiteRTRunner(bert_int8.bundle, bert_int8.manifest, threads=1) as runner:
        acc = compare(runner, _OrtReference(bert_int8.model), evals)
    print("bert int8", acc)
    assert acc["cosine"] > 0.95
