"""The build pipeline and bundle contract, exercised through the SDK-free fake target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgec import api
from edgec.compiler.bundle import read_manifest, verify_files
from edgec.compiler.config import BuildConfig

MANIFEST_KEYS = {"schema_version", "edgec_version", "target", "precision", "source", "inputs", "outputs", "files",
                 "passes", "calibration", "dependencies"}
REPORT_KEYS = {"accuracy", "size_bytes", "export_parity_max_abs_err"}
ACCURACY_KEYS = {"reference", "samples", "max_abs_err", "mean_abs_err", "cosine", "top1_agreement"}


def test_fake_target_int8_bundle_contract(fake_target, tiny_cnn_onnx, tiny_calib, tmp_path):
    out = tmp_path / "b"
    res = api.build(BuildConfig(model=str(tiny_cnn_onnx), output=out, target="fake-alias", calib=str(tiny_calib)))
    m, r = res.manifest, res.report
    assert MANIFEST_KEYS <= set(m) and REPORT_KEYS <= set(r) and ACCURACY_KEYS <= set(r["accuracy"])
    assert m["target"] == "fake" and m["precision"] == "int8"
    assert m["calibration"] == {"method": "minmax", "samples": 32, "source": str(tiny_calib), "random": False}
    assert {"name", "shape", "dtype", "scale", "zero_point"} <= set(m["inputs"][0])
    assert [p["name"] for p in m["passes"]] == ["optimize", "calibrate", "quantize"]
    assert m["target_info"] == {"level": 1}
    assert m["source"]["sha256"] and m["dependencies"]["onnxruntime"]
    assert read_manifest(out) == m
    assert verify_files(out, m) == []
    paths = {f["path"] for f in m["files"]}
    assert {"model.onnx", "reference/model.onnx", "report.json"} <= paths
    assert json.loads((out / "report.json").read_text()) == r
    # int8 Q/DQ vs float on calibration data: close, but not identical.
    assert 0 < r["accuracy"]["max_abs_err"] < 0.1
    assert r["accuracy"]["cosine"] > 0.99


def test_rebuild_is_byte_identical(fake_target, tiny_cnn_onnx, tiny_calib, tmp_path):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        api.build(BuildConfig(model=str(tiny_cnn_onnx), output=out, target="fake", calib=str(tiny_calib)))
        outs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert outs[0] == outs[1]


def test_failed_lower_leaves_no_bundle_and_no_temp(fake_target, tiny_cnn_onnx, tmp_path, monkeypatch):
    monkeypatch.setattr(fake_target, "fail_in_lower", True)
    out = tmp_path / "b"
    with pytest.raises(RuntimeError):
        api.build(BuildConfig(model=str(tiny_cnn_onnx), output=out, target="fake", precision="fp32"))
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_force(fake_target, tiny_cnn_onnx, tmp_path):
    from edgec.errors import ConfigError

    out = tmp_path / "b"
    cfg = BuildConfig(model=str(tiny_cnn_onnx), output=out, target="fake", precision="fp32")
    api.build(cfg)
    with pytest.raises(ConfigError, match="--force"):
        api.build(cfg)
    (out / "old.txt").write_text("old")  # --force replaces only what the bundle's manifest lists
    with pytest.raises(ConfigError, match="old.txt"):
        api.build(BuildConfig(**{**cfg.__dict__, "force": True}))
    (out / "old.txt").unlink()
    api.build(BuildConfig(**{**cfg.__dict__, "force": True}))
    assert (out / "manifest.json").exists()


def test_fp32_without_calibration_verifies_on_synthetic_data_and_says_so(fake_target, tiny_cnn_onnx, tmp_path):
    res = api.build(BuildConfig(model=str(tiny_cnn_onnx), output=tmp_path / "b", target="fake", precision="fp32"))
    assert res.report["accuracy"]["data"] == "synthetic"
    assert res.report["accuracy"]["max_abs_err"] == 0.0
    assert any("synthetic" in w for w in res.report["warnings"])


def test_random_calibration_is_flagged(fake_target, tiny_cnn_onnx, tmp_path):
    res = api.build(BuildConfig(model=str(tiny_cnn_onnx), output=tmp_path / "b", target="fake", calib="random"))
    assert res.manifest["calibration"]["random"] is True
    assert any("random" in w for w in res.report["warnings"])


def test_int8_without_calibration_data_is_an_error(fake_target, tiny_cnn_onnx, tmp_path):
    from edgec.errors import CalibrationDataError

    with pytest.raises(CalibrationDataError, match="--calib"):
        api.build(BuildConfig(model=str(tiny_cnn_onnx), output=tmp_path / "b", target="fake"))


def test_target_option_for_another_target_is_rejected(fake_target, tiny_cnn_onnx, tmp_path):
    from edgec.errors import ConfigError

    with pytest.raises(ConfigError, match="does not apply|do\\(es\\) not apply"):
        api.build(BuildConfig(model=str(tiny_cnn_onnx), output=tmp_path / "b", target="fake", precision="fp32",
                              target_options={"cpu": "cortex-m4"}))


def test_verify_and_bench_share_the_runner_contract(fake_target, tiny_cnn_onnx, tiny_calib, tmp_path):
    from edgec.runtimes.harness import validate_bench_result

    out = tmp_path / "b"
    api.build(BuildConfig(model=str(tiny_cnn_onnx), output=out, target="fake", calib=str(tiny_calib)))
    b = api.bench(out, iters=5, warmup=1)
    validate_bench_result(b)
    assert b["iters"] == 5 and b["latency_ms"]["p50"] > 0
    data = tmp_path / "eval.npz"
    rng = np.random.default_rng(3)
    np.savez(data, image=rng.random((6, 1, 8, 8), dtype=np.float32), labels=np.arange(6))
    v = api.verify(out, str(data))
    assert v["samples"] == 6 and v["cosine"] > 0.99 and "label_accuracy" in v


def test_tampered_bundle_is_rejected(fake_target, tiny_cnn_onnx, tmp_path):
    from edgec.errors import BundleError

    out = tmp_path / "b"
    api.build(BuildConfig(model=str(tiny_cnn_onnx), output=out, target="fake", precision="fp32"))
    (out / "model.onnx").write_bytes(b"junk")
    with pytest.raises(BundleError, match="model.onnx"):
        api.bench(out, iters=1, warmup=0)


def test_registry_rejects_duplicates_and_unknown_names(fake_target):
    from edgec.errors import ConfigError
    from edgec.runtimes.registry import RUNNERS
    from edgec.targets.registry import TARGETS

    with pytest.raises(ValueError, match="already registered"):
        TARGETS.register("fake", fake_target)
    with pytest.raises(ValueError, match="already registered"):
        RUNNERS.register("onnxruntime", "x:y")
    with pytest.raises(ConfigError, match="unknown target 'nope'"):
        TARGETS.get("nope")


def test_label_accuracy_counts_every_row_of_batched_samples(fake_target, tiny_cnn_factory, tmp_path):
    from edgec.compiler.config import InputShape

    out = tmp_path / "b"
    api.build(BuildConfig(model=tiny_cnn_factory, output=out, target="fake", precision="fp32",
                          input_shapes={"image": InputShape((4, 1, 8, 8))}))
    data = tmp_path / "eval.npz"
    rng = np.random.default_rng(0)
    x = rng.random((8, 1, 8, 8), dtype=np.float32)
    # Labels = the float model's own predictions: the reference must score exactly 1.0.
    from edgec.runtimes.onnxruntime_runner import make_session

    sess = make_session(str(out / "reference" / "model.onnx"))
    preds = np.concatenate([sess.run(None, {"image": x[i:i + 4]})[0].argmax(1) for i in (0, 4)])
    np.savez(data, image=x, labels=preds)
    v = api.verify(out, str(data))
    assert v["samples"] == 2
    assert v["label_accuracy"]["reference"] == 1.0 and v["label_accuracy"]["artifact"] == 1.0
