"""Defect 5: `edgec verify` has a pass/fail bound and its exit code follows it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.cli_subprocess import assert_one_line_error, conv_onnx


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory):
    pytest.importorskip("openvino")
    d = tmp_path_factory.mktemp("verify")
    np.savez(d / "calib.npz", x=np.random.default_rng(0).random((16, 3, 8, 8), dtype=np.float32))
    # Far outside the calibrated range: int8 saturates and the outputs stop matching.
    np.savez(d / "far.npz", x=np.random.default_rng(1).random((8, 3, 8, 8), dtype=np.float32) * 50 - 25)
    res = run_cli("build", conv_onnx(d / "m.onnx"), "--target", "intel-cpu", "--calib", d / "calib.npz",
                  "-o", d / "b")
    assert res.code == 0, res.err
    return d


def test_verify_fails_below_the_build_time_cosine(int8_bundle):
    d = int8_bundle
    ok = run_cli("verify", d / "b", "--data", d / "calib.npz")
    assert ok.code == 0, ok.err
    bad = run_cli("verify", d / "b", "--data", d / "far.npz")
    assert_one_line_error(bad, "verify failed: cosine", "build-time")


def test_explicit_bound_decides_and_json_says_why(int8_bundle):
    d = int8_bundle
    assert run_cli("verify", d / "b", "--data", d / "far.npz", "--min-cosine", "-1").code == 0
    res = run_cli("verify", d / "b", "--data", d / "calib.npz", "--min-cosine", "1", "--json")
    assert res.code == 1
    out = json.loads(res.out)
    assert out["passed"] is False and out["bounds"]["from"]["min_cosine"] == "option"
    assert_one_line_error(res, "--min-cosine")


def test_accuracy_drop_bound_in_points():
    from edgec.compiler.verify_bounds import failures, resolve

    bounds = resolve({"accuracy": {"cosine": 0.99, "accuracy_drop": 0.01}}, None, None)
    assert bounds["max_accuracy_drop"] == pytest.approx(2.0)
    assert failures({"cosine": 0.99, "accuracy_drop": 0.015}, bounds) == []
    assert "drop 3 points" in failures({"cosine": 0.99, "accuracy_drop": 0.03}, bounds)[0]
    assert failures({"cosine": None}, resolve({}, None, None))  # no cosine measured: never a silent pass
