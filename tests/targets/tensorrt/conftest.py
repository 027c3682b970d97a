"""Session fixtures: small float models and their onnxruntime Q/DQ quantizations."""

from __future__ import annotations

import pytest

from .trt_models import cnn, mlp, quantize, samples_for


@pytest.fixture(scope="session")
def cnn_qdq(tmp_path_factory):
    m = cnn()
    s = samples_for(m)
    return m, quantize(m, s, tmp_path_factory.mktemp("cnn")), s


@pytest.fixture(scope="session")
def mlp_qdq(tmp_path_factory):
    m = mlp()
    s = samples_for(m)
    return m, quantize(m, s, tmp_path_factory.mktemp("mlp")), s
