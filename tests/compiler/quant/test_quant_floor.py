"""The gate never ships worse than no gate; without a gate, a build below the accuracy floor fails."""

from __future__ import annotations

import numpy as np
import pytest

DIGITS: dict = {}


@pytest.fixture(autouse=True)
def _digits(digits_models):
    DIGITS.update(digits_models)


def _build(cli, model, out, *extra):
    return cli("build", model, "--calib", DIGITS["calib"], "--eval", DIGITS["eval"], "-o", out, "--force", "--json",
               *extra)


def test_gate_only_keeps_fallbacks_that_help_and_ends_no_worse(cli, tmp_path):
    r = _build(cli, DIGITS["outlier"], tmp_path / "ov", "--max-accuracy-drop", "1")
    assert r.code == 0, r.err
    gate = r.json()["report"]["accuracy_gate"]
    plain = gate["steps"][0]["target_drop"]
    assert gate["drop"] <= min(plain, 1.0)
    kept = [s["onnxruntime_drop"] for s in gate["steps"][1:] if s.get("kept")]
    assert kept and all(b < a for a, b in zip([gate["onnxruntime_drop"], *kept], kept))  # each kept move helped
    assert all(s["onnxruntime_drop"] >= gate["onnxruntime_drop"] - 1e-9 or s.get("kept") is not False
               for s in gate["steps"][1:])


def test_gate_that_cannot_meet_the_budget_writes_nothing_and_says_why(cli, tmp_path, monkeypatch):
    from edgec.targets.onnxruntime import ONNXRuntimeTarget

    monkeypatch.setattr(ONNXRuntimeTarget, "accuracy_fallbacks", ("calib-method",))
    r = _build(cli, DIGITS["outlier"], tmp_path / "x", "--target", "ort", "--metric", "cosine",
               "--max-accuracy-drop", "0.0001")
    assert r.code == 1 and r.err.count("\n") == 1
    assert "best drop" in r.err and ("the error comes" in r.err or "no single layer" in r.err)
    assert not (tmp_path / "x").exists()


def test_build_below_the_floor_fails_with_the_layers_and_the_flag(cli, tmp_path):
    # The outlier CNN's plain int8 build is really broken (cosine ~0.9, conv3's input keeps one level).
    r = _build(cli, DIGITS["outlier"], tmp_path / "b", "--target", "ort")
    assert r.code == 1 and r.err.count("\n") == 1
    assert "below the accuracy floor" in r.err and "cosine" in r.err
    assert "edgec debug layers" in r.err and "SQNR" in r.err
    assert "--max-accuracy-drop" in r.err and "--accept-low-accuracy" in r.err
    assert not (tmp_path / "b").exists()
    ok = _build(cli, DIGITS["outlier"], tmp_path / "b", "--target", "ort", "--accept-low-accuracy")
    assert ok.code == 0, ok.err
    assert ok.json()["manifest"]["config"]["accept_low_accuracy"] is True


def test_real_build_passes_the_floor_and_random_calibration_says_accuracy_is_unknown(cli, tmp_path):
    r = _build(cli, DIGITS["plain"], tmp_path / "b", "--target", "ort")
    assert r.code == 0, r.err
    acc = r.json()["report"]["accuracy"]
    assert acc["cosine"] >= 0.98 and acc["top1_agreement"] >= 0.9
    rnd = cli("build", DIGITS["plain"], "--calib", "random", "-o", tmp_path / "r", "--target", "ort", "--json")
    assert rnd.code == 0, rnd.err
    assert any(w.startswith("accuracy unknown") for w in rnd.json()["report"]["warnings"])


def test_mean_cosine_scores_empty_outputs_by_their_error():
    """A detector's map of an image without objects is ~1e-8 noise: its cosine says nothing."""
    from edgec.runtimes.harness import cosine_stats, mean_cosine

    rng = np.random.default_rng(0)
    full = rng.random(100)
    empty = rng.random(100) * 1e-9
    noisy = empty + rng.random(100) * 1e-9  # cosine vs `empty` is ~0.75, but both are empty
    assert mean_cosine([cosine_stats(full, full), cosine_stats(noisy, empty)]) > 0.999
    invented = empty + full  # the artifact reports objects the float model does not see
    assert mean_cosine([cosine_stats(full, full), cosine_stats(invented, empty)]) == pytest.approx(0.5)
