"""Inputs and outputs in the arena: the pointer API (edgec_model_input/invoke/output) gives
the same bytes as the caller-buffer API, and the arena is smaller than arena + I/O."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from .conftest import build_bundle, tflite_handle, to_tflite

MAIN_C = r"""
#include <stdio.h>
#include <string.h>
#include "edgec_model.h"

int main(int argc, char **argv) {
    unsigned char buf[EDGEC_INPUT_BYTES_0];
    FILE *f = fopen(argv[1], "rb");
    (void)argc;
    if (!f || fread(buf, 1, sizeof buf, f) != sizeof buf) return 3;
    fclose(f);
    memcpy(edgec_model_input(0), buf, sizeof buf);
    if (edgec_model_invoke() != 0) return 4;
    f = fopen(argv[2], "wb");
    fwrite(edgec_model_output(0), 1, EDGEC_OUTPUT_BYTES_0, f);
    fclose(f);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host C compiler")
def test_pointer_api_matches_caller_buffers(tmp_path):
    import tensorflow as tf

    from edgec.runtimes.mcu_runner import MCURunner

    tf.keras.utils.set_random_seed(5)
    L = tf.keras.layers
    inp = tf.keras.Input((6, 6, 3), batch_size=1)
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = L.DepthwiseConv2D(3, strides=2, padding="same")(x)
    model = tf.keras.Model(inp, L.Dense(4)(L.Flatten()(x)))
    data = to_tflite(model, (6, 6, 3), n=8)
    res, manifest = build_bundle(tflite_handle(data), tmp_path / "b")
    rep = res.report
    assert rep["io_in_arena"] is True and "edgec_model_invoke" in res.manifest["api"]
    assert rep["ram_bytes"] < rep["arena_bytes"] + rep["io_bytes"] + rep["scratch_bytes"]
    c = tmp_path / "b" / "c"
    (tmp_path / "main.c").write_text(MAIN_C)
    exe = tmp_path / "run"
    subprocess.run(["gcc", "-std=c99", "-O1", "-I", str(c), *map(str, sorted(c.glob("*.c"))), str(tmp_path / "main.c"),
                    "-o", str(exe)], check=True)
    runner = MCURunner(tmp_path / "b", manifest).load()
    spec = runner.native_in[0]
    x = np.random.default_rng(0).integers(-128, 128, size=[int(d) for d in spec.shape]).astype(np.int8)
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True)
    got = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.int8)
    want = runner.run_native({spec.name: x})[runner.native_out[0].name]
    np.testing.assert_array_equal(got, want.reshape(-1))
