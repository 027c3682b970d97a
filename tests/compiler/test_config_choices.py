"""The build config is nested and checked when made; choices come from the registries; messages say what the checks accept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgec.compiler.config import (BuildConfig, GateOptions, Int4Options, Int8Options, LLMOptions, PruneOptions,
                                   calib_method_choices)
from edgec.errors import ConfigError


def test_cli_choices_come_from_the_registries(cli):
    from edgec.calibration.observers import registered_observers
    from edgec.compiler import int4

    assert calib_method_choices() == (*registered_observers(), "auto", "held-out")
    out = cli("build", "--help").out
    assert "[" + "|".join(calib_method_choices()) + "]" in out
    assert "[" + "|".join(str(g) for g in int4.GROUP_SIZES) + "]" in out
    assert "[" + "|".join(int4.METHODS) + "]" in out


def test_int4_messages_match_their_checks():
    from edgec.compiler.int4 import Int4Quantizer

    with pytest.raises(ConfigError, match=r"--group-size 8: expected 16, 32, 64, 128 or 256"):
        Int4Quantizer(None, None, group_size=8)
    with pytest.raises(ConfigError, match=r"--int4-method nope: expected auto, rtn, gptq or awq"):
        Int4Quantizer(None, None, method="nope")
    with pytest.raises(ConfigError, match=r"--group-size 8: expected 16, 32, 64, 128 or 256"):
        Int4Options(group_size=8)


@pytest.mark.parametrize("make, message", [
    (lambda: BuildConfig("m.onnx", Path("o"), target="nope"), "unknown target 'nope'"),
    (lambda: BuildConfig("m.onnx", Path("o"), target="arm", target_options={"cpu": "x"}), "--cpu do(es) not apply"),
    (lambda: BuildConfig("m.onnx", Path("o"), calib_samples=0), "--calib-samples 0"),
    (lambda: Int8Options(calib_method="median"), "--calib-method median: expected minmax, "),
    (lambda: Int8Options(smoothquant=1.5), "--smoothquant 1.5"),
    (lambda: Int4Options(mode="odd"), "--int4-mode odd: expected sym or asym"),
    (lambda: GateOptions(metric="f1"), "--metric 'f1': expected auto, top1"),
    (lambda: GateOptions(max_accuracy_drop=-1), "--max-accuracy-drop -1"),
    (lambda: PruneOptions(spec="half"), "--prune"),
    (lambda: PruneOptions(finetune="t.py:fit"), "--finetune needs --prune"),
    (lambda: LLMOptions(kv_cache="int3"), "--kv-cache int3: expected "),
    (lambda: BuildConfig("m.onnx", Path("o"), int8=GateOptions()), "BuildConfig.int8 must be a Int8Options"),
])
def test_config_is_checked_when_made(make, message):
    with pytest.raises(ConfigError) as e:
        make()
    assert message in str(e.value)


def test_flat_keywords_map_to_groups():
    flat = BuildConfig.from_flat(model="m.onnx", output=Path("o"), calib_method="entropy", group_size=32,
                                 int4_method="gptq", max_accuracy_drop=1.0, metric="cosine", prune="2:4",
                                 kv_cache="fp16", seed=3)
    nested = BuildConfig("m.onnx", Path("o"), seed=3, int8=Int8Options(calib_method="entropy"),
                         int4=Int4Options(group_size=32, method="gptq"),
                         gate=GateOptions(max_accuracy_drop=1.0, metric="cosine"), prune=PruneOptions("2:4"),
                         llm=LLMOptions(kv_cache="fp16"))
    assert flat == nested
    assert flat.replace(calib_method="mse", seed=4).int8 == Int8Options(calib_method="mse")
    assert flat.replace(calib_method="mse").int4 == flat.int4
    with pytest.raises(AttributeError, match=r"BuildConfig.group_size is now BuildConfig.int4.group_size"):
        flat.group_size  # noqa: B018 - code written for the flat config is told where the field went


def test_a_registered_observer_is_selectable_and_auto_considers_it(cli, monkeypatch, tiny_cnn_onnx, tiny_calib,
                                                                    tmp_path):
    """A plugin observer needs no config or CLI edit: --calib-method takes it and auto weighs it per tensor."""
    from edgec.calibration import observers

    class HalfRange(observers.MinMaxObserver):
        name = "half-range"

        def _compute(self):
            return self.min / 2, self.max / 2

    monkeypatch.setitem(observers._REGISTRY, "half-range", HalfRange)
    r = cli("build", tiny_cnn_onnx, "-t", "onnxruntime", "--calib", tiny_calib, "--calib-method", "half-range",
            "--accept-low-accuracy", "-o", tmp_path / "a", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["manifest"]["calibration"]["method"] == "half-range"
    r = cli("build", tiny_cnn_onnx, "-t", "onnxruntime", "--calib", tiny_calib, "--calib-method", "auto",
            "--accept-low-accuracy", "-o", tmp_path / "b", "--json")
    assert r.code == 0, r.err
    auto = next(p for p in json.loads(r.out)["manifest"]["passes"] if p["name"] == "calibrate-auto")
    assert "half-range" in auto["config"]["methods"]
