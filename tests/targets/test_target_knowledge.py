"""What a target knows lives on the target: a new one brings its dependencies, pruning gains and rules."""

from __future__ import annotations

from edgec.targets.base import STRUCTURED_GAIN


def test_a_new_target_brings_its_own_knowledge(cli, fake_target, tiny_cnn_onnx, tiny_calib, tmp_path, monkeypatch):
    from edgec.compiler.prune.report import gains_by_target, pruning_warnings
    from edgec.compiler.prune.spec import parse_prune_spec

    monkeypatch.setattr(fake_target, "dependencies", ("click",))
    monkeypatch.setattr(fake_target, "pruning_gains", {"magnitude": "none expected: fake kernels are dense"})
    monkeypatch.setattr(fake_target, "sparse_patterns", ("2:4",))
    r = cli("build", tiny_cnn_onnx, "--target", "fake", "--calib", tiny_calib, "-o", tmp_path / "b", "--json")
    assert r.code == 0, r.err
    assert "click" in r.json()["manifest"]["dependencies"]  # the manifest records the target's dists
    gains = gains_by_target("magnitude")
    assert gains["fake"] == "none expected: fake kernels are dense" and gains_by_target("channels")["fake"] == STRUCTURED_GAIN
    # 2:4 sparse kernels: the fake target now counts among those that have them
    assert "'fake'" in pruning_warnings(parse_prune_spec("2:4"), "intel-cpu", {})[0]
    assert pruning_warnings(parse_prune_spec("2:4"), "fake", {}) == []


def test_runners_say_whether_they_expose_intermediate_tensors():
    from edgec.runtimes.registry import RUNNERS

    exposes = {n for n in RUNNERS.names() if RUNNERS.get(n).exposes_intermediate_tensors}
    assert {"openvino", "onnxruntime"} <= exposes and "mcu" not in exposes


def test_shared_modules_name_no_target():
    """Target names appear in compiler/, calibration/ and runtimes/ only in the registries (one place per fact)."""
    import re
    from pathlib import Path

    from edgec.targets.registry import TARGETS

    root = Path(__file__).resolve().parents[2]
    quoted = re.compile("([\"'])(" + "|".join(map(re.escape, TARGETS.names())) + ")\\1")
    registries = {root / "runtimes" / "registry.py"}
    hits = [f"{p.relative_to(root)}:{i}: {line.strip()}"
            for d in ("compiler", "calibration", "runtimes") for p in sorted((root / d).rglob("*.py"))
            if p not in registries
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if quoted.search(line)]
    assert not hits, "target names outside the registries:\n" + "\n".join(hits)
