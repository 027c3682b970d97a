"""Patch-based execution of the first stage (--patch-inference) and Conv+Pool fusion
(targets/mcu/ops/patch.py): bit-exact with LiteRT BUILTIN_REF on the host under ASan/UBSan
and the arena canaries, and in QEMU on each CPU's kernels; each lowers the planned arena."""

from __future__ import annotations

import shutil

import pytest

from .conftest import HAVE_QEMU, QEMU_SKIP, assert_qemu_matches_litert, build_bundle, to_tflite, tflite_handle
from .test_mcu_rows import _check


def _patch_model():
    """A high-resolution first stage (stride 1 conv, a residual depthwise block, a pad and a
    stride-2 conv) feeding a small tail: MCUNetV2's case in miniature."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(5)
    L = tf.keras.layers
    inp = tf.keras.Input((29, 23, 3), batch_size=1)
    x = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    y = L.DepthwiseConv2D(5, padding="same")(x)  # a 5-row halo
    y = L.Conv2D(16, 1)(y)
    x = L.ReLU()(L.Add()([x, y]))
    x = L.ZeroPadding2D(((1, 0), (0, 1)))(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu6")(x)
    x = L.Conv2D(8, 1, activation="relu")(x)
    x = L.Conv2D(12, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(12, 3, padding="same")(x)
    return tf.keras.Model(inp, L.Conv2D(4, 1)(x)), (29, 23, 3)


def _fire_model():
    """SqueezeNet's fire modules at high resolution: a squeeze conv feeding 1x1 and 3x3
    expands joined by a channel Concat, then an overlapping stride-2 MaxPool."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(7)
    L = tf.keras.layers
    inp = tf.keras.Input((26, 17, 3), batch_size=1)
    x = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    for squeeze in (4, 6):
        s = L.Conv2D(squeeze, 1, activation="relu")(x)
        x = L.Concatenate()([L.Conv2D(8, 1, activation="relu")(s),
                             L.Conv2D(8, 3, padding="same", activation="relu")(s)])
    x = L.MaxPooling2D(3, strides=2)(x)
    return tf.keras.Model(inp, L.Conv2D(4, 1)(x)), (26, 17, 3)


def _conv_pool_model():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(6)
    L = tf.keras.layers
    inp = tf.keras.Input((20, 13, 4), batch_size=1)
    x = L.Conv2D(4, 1)(inp)
    x = L.Conv2D(32, 3, padding="same", activation="relu")(x)  # 8x its input
    x = L.MaxPooling2D(2)(x)  # odd width: the last column is dropped
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.AveragePooling2D(2)(x)
    return tf.keras.Model(inp, L.Conv2D(4, 1)(x)), (20, 13, 4)


@pytest.fixture(scope="module")
def patch_tflite() -> bytes:
    model, shape = _patch_model()
    return to_tflite(model, shape, n=8)


@pytest.fixture(scope="module")
def fire_tflite() -> bytes:
    model, shape = _fire_model()
    return to_tflite(model, shape, n=8)


@pytest.fixture(scope="module")
def conv_pool_tflite() -> bytes:
    model, shape = _conv_pool_model()
    return to_tflite(model, shape, n=8)


def test_band_geometry_covers_the_receptive_field():
    from edgec.targets.mcu.ops.patch import _window
    from edgec.targets.mcu.qgraph import QOp

    pad = QOp("pad", "p", ["x"], ["y"], {"pads": [(0, 0), (2, 1), (0, 0), (0, 0)], "value": 0})
    assert _window(None, pad) == (1, 2, 1)
    pool = QOp("maxpool", "m", ["x"], ["y"], {"stride": (2, 2), "pad": (0, 0), "kernel": (3, 3)})
    assert _window(None, pool) == (2, 0, 3)


@pytest.mark.slow  # TensorFlow conversion
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host C compiler")
def test_patch_stage_bitexact_smaller_and_reported(patch_tflite, tmp_path):
    rep, manifest = _check(patch_tflite, tmp_path, patch_inference="on")
    info = rep["patch_inference"]
    assert info["stage"] is not None and info["stage"]["bands"] >= 2 and info["stage"]["ops"] >= 5
    assert rep["arena_bytes"] == info["arena_bytes_with"] < info["arena_bytes_without"]
    assert 0 < info["stage"]["extra_macs"] < info["stage"]["stage_macs"]  # the halo rows
    assert "PATCH_STAGE" in [layer["op"] for layer in manifest["layers"]]
    plain, _ = build_bundle(tflite_handle(patch_tflite), tmp_path / "off", patch_inference="off")
    assert plain.report["arena_bytes"] == info["arena_bytes_without"]
    assert plain.report["macs"] == rep["macs"]  # nominal MACs; the recompute is reported apart
    # auto patches only what would not fit the budget otherwise.
    fits, _ = build_bundle(tflite_handle(patch_tflite), tmp_path / "auto", ram_budget=10**6)
    assert fits.report["patch_inference"]["stage"] is None
    tight, _ = build_bundle(tflite_handle(patch_tflite), tmp_path / "tight", ram_budget=rep["ram_bytes"])
    assert tight.report["patch_inference"]["stage"] == info["stage"]


@pytest.mark.slow  # TensorFlow conversion
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host C compiler")
def test_patch_stage_through_concat(fire_tflite, tmp_path):
    """Both fire modules' Concats run band by band inside the stage (none is left as a layer
    of its own), bit-exact on the host (ASan, canaries) and in QEMU on M4."""
    rep, manifest = _check(fire_tflite, tmp_path, patch_inference="on")
    info = rep["patch_inference"]
    assert info["stage"] is not None and info["stage"]["ops"] >= 9
    assert rep["arena_bytes"] < info["arena_bytes_without"]
    assert "CONCATENATION" not in [layer["op"] for layer in manifest["layers"]]
    if HAVE_QEMU:
        res, manifest = build_bundle(tflite_handle(fire_tflite), tmp_path / "m4", cpu="cortex-m4", patch_inference="on")
        assert res.report["patch_inference"]["stage"] == info["stage"]
        assert_qemu_matches_litert(tmp_path / "m4", manifest, fire_tflite, seed=4)


@pytest.mark.slow  # TensorFlow conversion
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host C compiler")
def test_conv_pool_fused_bitexact_and_smaller(conv_pool_tflite, tmp_path):
    rep, _ = _check(conv_pool_tflite, tmp_path)
    (fused, *_) = rep["conv_pool_fused"]
    assert fused["extra_macs"] == 0 and fused["arena_bytes_with"] < fused["arena_bytes_without"]
    assert rep["arena_bytes"] <= fused["arena_bytes_with"]


@pytest.mark.slow  # TensorFlow conversion
@pytest.mark.qemu
@pytest.mark.skipif(not HAVE_QEMU, reason=QEMU_SKIP)
@pytest.mark.parametrize("cpu", ["cortex-m0plus", "cortex-m4", "cortex-m55"])
@pytest.mark.parametrize("which", ["patch", "conv_pool"])
def test_patch_and_conv_pool_bitexact_in_qemu(patch_tflite, conv_pool_tflite, tmp_path, cpu, which):
    """Each CPU's kernels on bands of rows: QEMU == LiteRT BUILTIN_REF."""
    data = patch_tflite if which == "patch" else conv_pool_tflite
    res, manifest = build_bundle(tflite_handle(data), tmp_path / "b", cpu=cpu, patch_inference="on")
    assert res.report["patch_inference"]["stage"] or res.report["conv_pool_fused"]
    assert_qemu_matches_litert(tmp_path / "b", manifest, data, seed=3)
