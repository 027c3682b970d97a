"""Every conv/depthwise/FC/add kernel variant (portable C on a real Cortex-M0, SIMD32 on M4,
Helium on M55) bit for bit against LiteRT's BUILTIN_REF kernels, in QEMU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from .conftest import (HAVE_QEMU, QEMU_SKIP, assert_qemu_matches_litert, build_bundle, litert_reference,
                       tflite_handle, to_tflite)

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(not HAVE_QEMU, reason=QEMU_SKIP)]

# The instruction each CPU's kernels must contain: proof that --cpu picked that variant.
VARIANT_INSN = {"cortex-m0": None, "cortex-m4": "smlad", "cortex-m55": "vmladava"}


@pytest.fixture(scope="module")
def layer_mix() -> dict[str, bytes]:
    """Odd sizes reach every block remainder: 6/7/14 channels (4-blocks + rest), K = 45
    (16-lane tail, 4-byte tail), 81 pixels (odd for the 2-column block), padding on every
    border, stride 2, dilation 2, depth multiplier 2, pointwise, per-tensor dense."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(3)
    L = tf.keras.layers
    inp = tf.keras.Input((9, 9, 5), batch_size=1)
    x = L.Conv2D(6, 3, padding="same", activation="relu")(inp)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = L.Conv2D(7, 1)(x)
    x = L.Add()([x, L.Conv2D(7, 1)(x)])  # 567 elements: 4-lane blocks and a tail
    x = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)(x)
    x = L.Conv2D(5, 3, dilation_rate=2, padding="same", activation="relu")(x)
    x = L.Conv2D(8, 2, strides=2)(x)
    x = L.Dense(37, activation="relu")(L.Flatten()(x))
    mix = tf.keras.Model(inp, L.Dense(10)(x))
    dinp = tf.keras.Input((45,), batch_size=1)
    dense = tf.keras.Model(dinp, L.Dense(21, activation="relu")(dinp))
    # Depthwise channel chunks (Helium 16 + 8 + 6 single, SIMD32 7x4 + 2), dilated and 5x5
    # stride-2 windows with interior and border pixels, ReLU6 and full-range clamps.
    x = L.Conv2D(30, 1)(inp)
    x = L.DepthwiseConv2D(3, dilation_rate=2, padding="same", activation="relu6")(x)
    x = L.DepthwiseConv2D(5, strides=2, padding="same")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(L.Conv2D(24, 1)(x))
    dw = tf.keras.Model(inp, L.Dense(10)(L.Flatten()(x)))
    # Pools over 20 channels (a 16-channel Helium chunk and a rest), padded borders.
    x = L.AveragePooling2D(3, strides=2, padding="same")(L.Conv2D(20, 1)(inp))
    pools = tf.keras.Model(inp, L.MaxPooling2D(2, padding="same")(x))
    return {"mix": to_tflite(mix, (9, 9, 5)), "dense_per_tensor": to_tflite(dense, (45,), per_tensor=True),
            "dw_chunks": to_tflite(dw, (9, 9, 5)), "pools": to_tflite(pools, (9, 9, 5))}


def _litert(data: bytes, x: np.ndarray) -> np.ndarray:
    it = litert_reference(data)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def _kernel_asm(bundle: Path, cpu: str, source: str = "conv.c") -> str:
    from edgec.targets.mcu import toolchain

    asm = bundle / (source[:-2] + ".s")
    subprocess.run([shutil.which("arm-none-eabi-gcc"), *toolchain.arm_flags(cpu, "-O2"), "-I", str(bundle / "c"),
                    "-S", str(bundle / "c" / source), "-o", str(asm)], check=True)
    return asm.read_text()


@pytest.mark.parametrize("cpu", sorted(VARIANT_INSN))
@pytest.mark.parametrize("model", ["mix", "dense_per_tensor", "dw_chunks"])
def test_kernel_variant_bitexact_in_qemu(layer_mix, tmp_path, cpu, model):
    from edgec.runtimes.mcu_runner import MCURunner

    data = layer_mix[model]
    _, manifest = build_bundle(tflite_handle(data), tmp_path / "b", cpu=cpu)
    runner = MCURunner(tmp_path / "b", manifest, device="qemu").load()
    rng = np.random.default_rng(7)
    spec = runner.native_in[0]
    x = rng.integers(-128, 128, size=[int(d) for d in spec.shape]).astype(np.int8)
    got = runner.run_native({spec.name: x})[runner.native_out[0].name]
    want = _litert(data, x)
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    extra = runner.info()["extra"]
    assert extra["matches_host"] is True
    assert extra["qemu_board"] == ("microbit" if cpu == "cortex-m0" else extra["qemu_board"])
    insn = VARIANT_INSN[cpu]
    if insn and model == "mix":
        assert insn in _kernel_asm(tmp_path / "b", cpu)


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m55"])
@pytest.mark.parametrize("model", ["mix", "dense_per_tensor", "dw_chunks", "pools"])
def test_size_optimized_variants_bitexact_in_qemu(layer_mix, tmp_path, cpu, model):
    """-Os builds take compact loops (one requantization copy, no SIMD32 int8 GEMM, Helium
    one-row FullyConnected, portable pool; Helium's conv column pairs, two-chunk depthwise
    and vector Add stay): conv.c, dwconv.c, pool.c, elementwise.c."""
    from edgec.runtimes.mcu_runner import MCURunner

    data = layer_mix[model]
    _, manifest = build_bundle(tflite_handle(data), tmp_path / "b", cpu=cpu)
    runner = MCURunner(tmp_path / "b", manifest, device="qemu")
    runner.opt = "-Os"
    runner.load()
    spec = runner.native_in[0]
    x = np.random.default_rng(8).integers(-128, 128, size=[int(d) for d in spec.shape]).astype(np.int8)
    got = runner.run_native({spec.name: x})[runner.native_out[0].name]
    want = _litert(data, x)
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    assert runner.info()["extra"]["matches_host"] is True


def test_profile_per_layer(layer_mix, tmp_path):
    from edgec.runtimes.harness import bench
    from edgec.runtimes.mcu_runner import MCURunner

    _, manifest = build_bundle(tflite_handle(layer_mix["mix"]), tmp_path / "b", cpu="cortex-m4")
    runner = MCURunner(tmp_path / "b", manifest, device="qemu")
    runner.profile = True
    result = bench(runner.load(), iters=1, warmup=0)
    rows = result["extra"]["profile"]
    layers = manifest["target_info"]["layers"]
    assert [r["name"] for r in rows] == [entry["name"] for entry in layers]
    convs = [r for r in rows if r["macs"]]
    assert len(convs) == 9 and all(r["instructions"] > 0 and r["instr_per_mac"] > 0 for r in convs)
    # The marks sit between the layers: their sum is the whole run less call overhead.
    total = result["extra"]["instructions"]
    assert 0.9 * total < sum(r["instructions"] for r in rows) <= total


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m55"])
def test_left_out_variants_keep_the_bits(layer_mix, tmp_path, cpu):
    """edgec_config.h leaves out the kernel variants no layer takes (a smaller -O2 build); a
    layer whose variant is left out anyway takes a general loop with the same bits."""
    from edgec.runtimes.mcu_runner import MCURunner

    data = layer_mix["mix"]
    _, manifest = build_bundle(tflite_handle(data), tmp_path / "b", cpu=cpu)
    config = tmp_path / "b" / "c" / "edgec_config.h"
    # mix: a depth multiplier of 2 (the generic depthwise loop) and a classifier's small dense.
    assert "#define EDGEC_DW_GENERIC 1" in config.read_text()
    assert "#define EDGEC_FC_FAST 0" in config.read_text()
    spec_x = np.random.default_rng(9).integers(-128, 128, size=(1, 9, 9, 5)).astype(np.int8)
    want = _litert(data, spec_x)
    for knobs in ({"EDGEC_RQ_FAST1": 0, "EDGEC_RQ_GENERAL": 0, "EDGEC_FC_FAST": 0},
                  {"EDGEC_RQ_FAST1": 1, "EDGEC_RQ_GENERAL": 1, "EDGEC_FC_FAST": 1}):
        config.write_text("\n".join(["#ifndef EDGEC_CONFIG_H", "#define EDGEC_CONFIG_H", "#define EDGEC_DW_GENERIC 1",
                                     *(f"#define {k} {v}" for k, v in knobs.items()), "#endif", ""]))
        runner = MCURunner(tmp_path / "b", manifest, device="qemu").load()
        got = runner.run_native({runner.native_in[0].name: spec_x})[runner.native_out[0].name]
        np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=str(knobs))
        assert runner.info()["extra"]["matches_host"] is True


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m55"])
def test_own_layout_leaves_out_the_fallbacks(tflite_models, tmp_path, cpu):
    """A model whose depthwise channels fill whole vector chunks, whose convs have 4k output
    channels and no dilation says so in edgec_config.h, with the instruction set its layouts
    are for: built for that CPU, conv.c and dwconv.c leave out the loops for other layouts,
    part chunks and dilated rows, and the output stays LiteRT's (the host build, another
    instruction set, keeps them: matches_host)."""
    data = tflite_models["ds_cnn_kws"]
    _, manifest = build_bundle(tflite_handle(data), tmp_path / "b", cpu=cpu)
    config = (tmp_path / "b" / "c" / "edgec_config.h").read_text()
    for knob in ("DW_TAIL 0", "CONV_TAIL 0", "CONV_DILATED 0", f"BUNDLE_ISA {2 if cpu == 'cortex-m55' else 1}"):
        assert f"#define EDGEC_{knob}\n" in config
    asm = _kernel_asm(tmp_path / "b", cpu) + _kernel_asm(tmp_path / "b", cpu, "dwconv.c")
    for fallback in ("dw_rest", "gemm_plain", "im2col_dilated"):
        assert f"{fallback}:" not in asm and f"{fallback}.constprop.0:" not in asm
    assert_qemu_matches_litert(tmp_path / "b", manifest, data, seed=11)
