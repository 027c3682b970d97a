"""Defect 4: NaN/Inf in weights, data or outputs fails naming the tensor/sample; no metric reads 0 with NaNs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.cli_subprocess import assert_one_line_error, conv_onnx

FAST = ("--target", "onnxruntime", "--precision", "fp32")


def _calib(path, bad_sample: int | None = None, value: float = np.nan):
    x = np.random.default_rng(0).random((8, 3, 8, 8), dtype=np.float32)
    if bad_sample is not None:
        x[bad_sample, 1, 2, 3] = value
    np.savez(path, x=x)
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weight_fails_naming_the_tensor(tmp_path, value):
    model = conv_onnx(tmp_path / "m.onnx", weight_fill=value)
    err = assert_one_line_error(run_cli("build", model, *FAST, "-o", tmp_path / "o"), "weight 'w'")
    assert ("NaN" if np.isnan(value) else "Inf") in err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="the mcu target needs gcc")
def test_inf_weight_on_mcu_is_one_line_not_overflow(tmp_path):
    model = conv_onnx(tmp_path / "m.onnx", weight_fill=np.inf)
    res = run_cli("build", model, "--target", "mcu", "--calib", _calib(tmp_path / "c.npz"), "-o", tmp_path / "o")
    assert_one_line_error(res, "weight 'w'", "Inf")
    assert "RuntimeWarning" not in res.err


@pytest.mark.parametrize("target", ["onnxruntime", "mcu"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_calibration_sample_fails_naming_it(tmp_path, target, value):
    if target == "mcu" and shutil.which("gcc") is None:
        pytest.skip("the mcu target needs gcc")
    model = conv_onnx(tmp_path / "m.onnx")
    res = run_cli("build", model, "--target", target, "--calib", _calib(tmp_path / "c.npz", 5, value),
                  "-o", tmp_path / "o")
    assert_one_line_error(res, "calibration sample 5", "input 'x'")


def test_non_finite_eval_and_verify_data_fail_naming_the_flag(tmp_path):
    model = conv_onnx(tmp_path / "m.onnx")
    bad = _calib(tmp_path / "bad.npz", 2)
    res = run_cli("build", model, *FAST, "--calib", _calib(tmp_path / "c.npz"), "--eval", bad, "-o", tmp_path / "o")
    assert_one_line_error(res, "--eval sample 2")
    assert run_cli("build", model, *FAST, "--calib", _calib(tmp_path / "c.npz"), "-o", tmp_path / "o").code == 0
    assert_one_line_error(run_cli("verify", tmp_path / "o", "--data", bad), "--data sample 2")


class _Fixed:
    """Returns the outputs it is given: compare() is exercised on known numbers, not on a backend."""

    def __init__(self, out):
        self.out = out

    def infer(self, feeds):
        return {"y": self.out}

    def info(self):
        return {"name": "fixed"}


@pytest.mark.parametrize("side", ["artifact", "reference"])
def test_compare_never_reports_zero_error_with_nans(side):
    from edgec.compiler.finite import NonFiniteError
    from edgec.runtimes.harness import compare

    good = np.ones((1, 4), np.float32)
    bad = good.copy()
    bad[0, 2] = np.nan
    runner, ref = (_Fixed(bad), _Fixed(good)) if side == "artifact" else (_Fixed(good), _Fixed(bad))
    with pytest.raises(NonFiniteError, match=f"{side} output 'y' on sample 0"):
        compare(runner, ref, [{"x": good}])
