"""``--prune`` spec parsing, and the errors for specs a source cannot take."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgec.compiler.config import BuildConfig, PruneOptions
from edgec.compiler.prune import parse_prune_spec, request_from_config
from edgec.errors import ConfigError


@pytest.mark.parametrize("text, method, ratio, extra", [
    ("magnitude:0.5", "magnitude", 0.5, {"scope": "global"}),
    ("magnitude:0.7,scope=layer", "magnitude", 0.7, {"scope": "layer"}),
    ("2:4", "nm", 0.5, {"n": 2, "m": 4}),
    ("1:8", "nm", 0.875, {"n": 1, "m": 8}),
    ("channels:0.3", "channels", 0.3, {"importance": "magnitude", "round_to": None}),
    ("CHANNELS:0.3, importance=Activation, round=8", "channels", 0.3, {"importance": "activation", "round_to": 8}),
    ("heads:0.25,importance=activation", "heads", 0.25, {"importance": "activation"}),
    ("channels:0.3,ratios=uniform", "channels", 0.3, {"allocation": "uniform"}),
])
def test_parse(text, method, ratio, extra):
    s = parse_prune_spec(text)
    assert (s.method, s.ratio) == (method, pytest.approx(ratio))
    for k, v in extra.items():
        assert getattr(s, k) == v
    assert s.structured == (method in ("channels", "heads"))
    assert parse_prune_spec(s.text) == s  # the normalized text round-trips
    assert s.to_json()["spec"] == s.text


@pytest.mark.parametrize("text, needle", [
    ("", "needs a spec"),
    ("sparse:0.5", "not a pruning spec"),
    ("magnitude", "not a pruning spec"),
    ("magnitude:1.5", "in (0, 1)"),
    ("channels:0", "in (0, 1)"),
    ("channels:abc", "must be a number"),
    ("4:4", "0 < N < M"),
    ("magnitude:0.5,scope=row", "scope must be global or layer"),
    ("channels:0.3,importance=taylor", "importance must be magnitude or activation"),
    ("channels:0.3,round=x", "round must be a positive integer"),
    ("channels:0.3,ratios=even", "ratios must be sensitivity or uniform"),
    ("heads:0.3,scope=layer", "unknown option(s) scope"),
    ("2:4,importance=activation", "unknown option(s) importance"),
    ("magnitude:0.5,scope", "key=value"),
])
def test_parse_errors_are_one_line(text, needle):
    with pytest.raises(ConfigError) as e:
        parse_prune_spec(text)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_request_checks_the_source(tiny_cnn_onnx, tiny_cnn_factory, tmp_path):
    def req(model, prune=None, finetune=None):
        return request_from_config(BuildConfig(model=str(model), output=Path(tmp_path / "o"),
                                               prune=PruneOptions(prune, finetune)))

    assert req(tiny_cnn_onnx) is None
    assert req(tiny_cnn_onnx, "2:4").spec.method == "nm"  # ONNX sources take magnitude and N:M
    assert req(tiny_cnn_factory, "channels:0.3").spec.method == "channels"
    assert req(tiny_cnn_onnx, "channels:0.3").spec.method == "channels"  # dependency groups from the ONNX graph
    with pytest.raises(ConfigError, match="needs a PyTorch"):
        req(tiny_cnn_onnx, "heads:0.25")
    with pytest.raises(ConfigError, match="--finetune needs --prune"):
        req(tiny_cnn_factory, None, "x.py:f")
    with pytest.raises(ConfigError, match="--finetune needs a PyTorch module"):
        req(tiny_cnn_onnx, "2:4", "x.py:f")
    with pytest.raises(ConfigError, match="must look like file.py:train_fn"):
        req(tiny_cnn_factory, "channels:0.3", "train")
    with pytest.raises(ConfigError, match="does not exist"):
        req(tiny_cnn_factory, "channels:0.3", str(tmp_path / "missing.py") + ":f")
    pt2 = tmp_path / "m.pt2"
    pt2.write_bytes(b"x")
    with pytest.raises(ConfigError, match="ExportedProgram"):
        req(pt2, "channels:0.3")


def test_warnings_say_which_target_gains_nothing():
    from edgec.compiler.prune.report import gains_by_target, pruning_warnings
    from edgec.targets.registry import TARGETS

    mag, nm, ch = (parse_prune_spec(t) for t in ("magnitude:0.5", "2:4", "channels:0.3"))
    assert "does not make 'arm' faster" in pruning_warnings(mag, "arm", {})[0]
    assert "add --sparsity" in pruning_warnings(nm, "jetson", {})[0]
    assert pruning_warnings(nm, "jetson", {"sparsity": True}) == []
    assert "only 'jetson' has 2:4 sparse kernels" in pruning_warnings(nm, "intel-cpu", {})[0]
    assert pruning_warnings(ch, "mcu", {}) == []
    for method in ("magnitude", "nm", "channels", "heads"):  # every target states its gain
        assert set(gains_by_target(method)) == set(TARGETS.names())
    assert gains_by_target("nm")["jetson"].startswith("2:4 weights qualify")
    assert gains_by_target("magnitude")["intel-cpu"].startswith("none expected")


def test_cli_help_lists_the_prune_options(cli):
    assert "--prune SPEC" in cli("build", "--help").out and "--finetune" in cli("build", "--help").out
    out = cli("prune", "--help").out
    assert "--prune SPEC" in out and "model.safetensors" in out
