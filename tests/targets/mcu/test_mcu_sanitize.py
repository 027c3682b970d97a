"""The generated C runs clean under -fsanitize=address,undefined (host harness main)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from .conftest import build_bundle, tflite_handle

pytestmark = pytest.mark.slow  # TensorFlow conversions (Keras, TFLite converter, onnx2tf)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
@pytest.mark.parametrize("name", ["mobilenet_stack", "ds_cnn_kws", "concat_pad_sigmoid", "softmax", "float_io_autoencoder"])
def test_asan_ubsan_clean(tflite_models, tmp_path, name):
    from edgec.runtimes.mcu_runner import MCURunner

    res, manifest = build_bundle(tflite_handle(tflite_models[name]), tmp_path / "b")
    c, h = tmp_path / "b" / "c", tmp_path / "b" / "harness"
    exe = tmp_path / "run"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1", "-g",
                    "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-I", str(c),
                    *map(str, sorted(c.glob("*.c"))), str(h / "host_main.c"), "-o", str(exe)], check=True)
    host = MCURunner(tmp_path / "b", manifest).load()
    rng = np.random.default_rng(5)
    for k in range(3):
        feeds = {s.name: v for s, v in zip(host.native_in, _random(host.native_in, rng))}
        ins = []
        for i, s in enumerate(host.native_in):
            p = tmp_path / f"in{i}.bin"
            p.write_bytes(np.ascontiguousarray(feeds[s.name]).tobytes())
            ins.append(str(p))
        outs = [str(tmp_path / f"out{i}.bin") for i in range(len(host.native_out))]
        r = subprocess.run([str(exe), *ins, *outs], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "runtime error" not in r.stderr
        want = host.run_native(feeds)
        for o, s in zip(outs, host.native_out):
            got = np.frombuffer(open(o, "rb").read(), dtype=s.dtype).reshape(want[s.name].shape)
            np.testing.assert_array_equal(got, want[s.name])


def _random(specs, rng):
    out = []
    for s in specs:
        shape = [int(d) for d in s.shape]
        if np.dtype(s.dtype).kind == "f":
            out.append(rng.uniform(-2, 2, size=shape).astype(s.dtype))
        else:
            out.append(rng.integers(-128, 128, size=shape).astype(s.dtype))
    return out
