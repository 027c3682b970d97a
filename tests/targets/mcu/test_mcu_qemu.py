"""Cortex-M harness under qemu-system-arm: same outputs as the host build, instruction count."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import HAVE_QEMU, QEMU_SKIP, build_bundle, random_native, tflite_handle

pytestmark = [pytest.mark.qemu, pytest.mark.skipif(not HAVE_QEMU, reason=QEMU_SKIP)]


@pytest.mark.parametrize("name,cpu", [("digits_cnn", "cortex-m4"), ("dense_autoencoder", "cortex-m0plus"),
                                      ("ds_cnn_kws", "cortex-m33")])
def test_qemu_matches_host(tflite_models, tmp_path, name, cpu):
    from edgec.runtimes.harness import bench, validate_bench_result
    from edgec.runtimes.mcu_runner import MCURunner

    _, manifest = build_bundle(tflite_handle(tflite_models[name]), tmp_path / "b", cpu=cpu)
    runner = MCURunner(tmp_path / "b", manifest, device="qemu").load()
    host = MCURunner(tmp_path / "b", manifest).load()
    feeds = random_native(runner.native_in, np.random.default_rng(0))
    got = runner.run_native(feeds)
    want = host.run_native(feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    extra = runner.info()["extra"]
    assert extra["matches_host"] is True
    assert extra["instructions"] > 1000
    # M0+ code runs on a real Cortex-M0 (the micro:bit), every other CPU on its MPS2/MPS3 board.
    assert extra["qemu_board"] == ("microbit" if cpu == "cortex-m0plus" else extra["qemu_board"])
    assert extra["qemu_board"].startswith("microbit" if cpu == "cortex-m0plus" else "mps")
    if name == "digits_cnn":
        result = bench(runner, iters=1, warmup=0, feeds=None)
        validate_bench_result(result)
        # Synthetic inputs: the count depends a little on the data (clamps, padding branches).
        assert abs(result["extra"]["instructions"] - extra["instructions"]) < 0.05 * extra["instructions"]
