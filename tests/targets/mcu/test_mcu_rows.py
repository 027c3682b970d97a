"""Row-by-row in-place ops (targets/mcu/rows.py, kernels/rows.c) and fused residual blocks
(ops/resblock.py): the schedules, and bit-exactness with LiteRT BUILTIN_REF on edge shapes
(stride 2, padding, odd widths) with every eligible op run in place, clean under
ASan/UBSan and the arena canaries."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from .conftest import HAVE_QEMU, QEMU_SKIP, assert_qemu_matches_litert, build_bundle, litert_reference, random_native, to_tflite, tflite_handle


def _lag(in_h, out_h, stride, pad, k, in_row, out_row):
    from edgec.targets.mcu.rows import _lag

    fwd = _lag(in_h, out_h, stride, pad, k, in_row, out_row, False)
    rev = _lag(in_h, out_h, stride, pad, k, in_row, out_row, True)
    return fwd, rev


def test_schedules_need_few_rows():
    # 3x3 stride-1 same: an output row lands on the input row the next output row still
    # reads: one row of lag (a 2-row ring, the (k_h - 1)-row line buffer).
    assert _lag(9, 9, 1, 1, 3, 72, 72)[0] == 1
    # stride 2 (TF SAME, no top pad) halves the rows: no lag.
    assert _lag(10, 5, 2, 0, 3, 80, 80)[0] == 0
    # A channel-expanding pointwise conv frees rows from the bottom only.
    fwd, rev = _lag(8, 8, 1, 0, 1, 32, 64)
    assert fwd >= 4 and rev == 0


def _edge_model():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    L = tf.keras.layers
    inp = tf.keras.Input((11, 9, 5), batch_size=1)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)  # over the graph input
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)  # 1-row lag, odd width
    x = L.DepthwiseConv2D(3, dilation_rate=2, padding="same")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")(x)  # 11 -> 6 rows
    x = L.Conv2D(16, 1, activation="relu")(x)  # expands: bottom-up
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    x = L.Conv2D(12, 3, strides=2, padding="valid")(L.ZeroPadding2D(((2, 1), (1, 2)))(x))
    x = L.AveragePooling2D(2, strides=1, padding="same")(x)
    return tf.keras.Model(inp, L.Conv2D(4, 1)(x)), (11, 9, 5)


def _resnet_model():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(4)
    L = tf.keras.layers
    inp = tf.keras.Input((13, 11, 3), batch_size=1)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = L.Conv2D(24, 1, activation="relu")(x)  # expanding pointwise -> depthwise: a conv pair
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 1)(x)
    for filters, stride in ((8, 1), (16, 2), (24, 2)):  # identity, then projection blocks
        y = L.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
        y = L.Conv2D(filters, 3, padding="same")(y)
        if stride != 1:
            x = L.Conv2D(filters, 1, strides=stride)(x)
        x = L.ReLU()(L.Add()([x, y]) if filters != 16 else L.Add()([y, x]))  # both operand orders
    return tf.keras.Model(inp, L.Conv2D(4, 1)(x)), (13, 11, 3)  # odd sizes, stride 2 from odd rows


def _check(data: bytes, tmp_path, **options) -> tuple[dict, dict]:
    """Bit-exact with LiteRT on random and extreme inputs; the ASan/UBSan + canary build agrees."""
    from edgec.runtimes.mcu_runner import MCURunner

    from .fuzz_graphs import SAN_FLAGS

    res, manifest = build_bundle(tflite_handle(data), tmp_path / "b", **options)
    c = tmp_path / "b" / "c"
    exe = tmp_path / "run"
    subprocess.run(["gcc", *SAN_FLAGS, "-I", str(c), *map(str, sorted(c.glob("*.c"))),
                    str(tmp_path / "b" / "harness" / "host_main.c"), "-o", str(exe)], check=True)
    runner = MCURunner(tmp_path / "b", manifest).load()
    ref = litert_reference(data)
    rng = np.random.default_rng(11)
    for k in range(6):
        feeds = random_native(runner.native_in, rng)
        if k < 2:  # the extremes
            feeds = {n: np.full_like(v, -128 if k == 0 else 127) for n, v in feeds.items()}
        (x,) = feeds.values()
        ref.set_tensor(ref.get_input_details()[0]["index"], x)
        ref.invoke()
        want = ref.get_tensor(ref.get_output_details()[0]["index"])
        got = next(iter(runner.run_native(feeds).values()))
        np.testing.assert_array_equal(got.reshape(want.shape), want)
        (tmp_path / "in.bin").write_bytes(x.tobytes())
        r = subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], capture_output=True,
                           text=True)
        assert r.returncode == 0, (r.returncode, r.stderr[-2000:])  # 1000 + op: a broken canary
        np.testing.assert_array_equal(np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int8),
                                      want.reshape(-1))
    return res.report, res.manifest


@pytest.mark.slow  # TensorFlow conversion
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host C compiler")
def test_row_inplace_bitexact_and_canary_clean(tmp_path):
    model, shape = _edge_model()
    data = to_tflite(model, shape, n=8)
    rep, _ = _check(data, tmp_path, row_inplace="all")
    assert rep["row_inplace_ops"] >= 6 and rep["row_ring_bytes"] > 0
    _, manifest_off = build_bundle(tflite_handle(data), tmp_path / "off", row_inplace="off")
    assert manifest_off["target_info"]["arena_bytes"] > rep["arena_bytes"]


@pytest.mark.slow  # TensorFlow conversion
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host C compiler")
def test_fused_blocks_bitexact_and_smaller(tmp_path):
    model, shape = _resnet_model()
    data = to_tflite(model, shape, n=8)
    rep, manifest = _check(data, tmp_path)
    layers = [layer["op"] for layer in manifest["layers"]]
    assert layers.count("RESIDUAL_BLOCK") == 3 and "ADD" not in layers and "CONV_PAIR" in layers
    unfused, _ = build_bundle(tflite_handle(data), tmp_path / "u", fuse_blocks=False, row_inplace="off")
    assert rep["arena_bytes"] < 0.7 * unfused.report["arena_bytes"]  # rings included
    assert rep["macs"] == unfused.report["macs"]



@pytest.fixture(scope="module")
def resnet_tflite() -> bytes:
    model, shape = _resnet_model()
    return to_tflite(model, shape, n=8)


@pytest.mark.slow  # TensorFlow conversion
@pytest.mark.qemu
@pytest.mark.skipif(not HAVE_QEMU, reason=QEMU_SKIP)
@pytest.mark.parametrize("cpu", ["cortex-m0plus", "cortex-m4", "cortex-m55"])
def test_fused_and_row_inplace_bitexact_in_qemu(resnet_tflite, tmp_path, cpu):
    """Each CPU's kernels under the row drivers: QEMU == LiteRT BUILTIN_REF."""
    res, manifest = build_bundle(tflite_handle(resnet_tflite), tmp_path / "b", cpu=cpu, row_inplace="all")
    assert res.report["row_inplace_ops"] >= 2
    assert_qemu_matches_litert(tmp_path / "b", manifest, resnet_tflite, seed=2)
