"""Memory planning (no overlap of live buffers, reuse beats the plain plan) and budgets."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import build_bundle, to_tflite, tflite_handle

pytestmark = pytest.mark.slow  # TensorFlow conversions (Keras, TFLite converter, onnx2tf)


@pytest.mark.parametrize("name", ["digits_cnn", "ds_cnn_kws", "mobilenet_stack", "dense_autoencoder"])
def test_plan_has_no_overlapping_live_buffers(tflite_models, name):
    from edgec.targets.mcu import planner
    from edgec.targets.mcu.import_tflite import load_tflite

    g = load_tflite(tflite_models[name])
    plan = planner.plan(g)
    arena = [b for b in plan.buffers.values() if b.kind == "arena" and b.last >= 0]
    for i, a in enumerate(arena):
        assert a.offset % planner.ALIGN == 0 and a.offset + a.size <= plan.arena_bytes
        for b in arena[i + 1:]:
            live_together = not (a.last < b.first or b.last < a.first)
            disjoint = a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
            assert not live_together or disjoint, (a, b)
    assert plan.arena_bytes <= plan.naive_bytes
    assert plan.arena_bytes <= planner.greedy_baseline(g)


def test_inplace_and_views_lower_the_arena(tflite_models):
    from edgec.targets.mcu import planner
    from edgec.targets.mcu.import_tflite import load_tflite

    g = load_tflite(tflite_models["mobilenet_stack"])
    plan = planner.plan(g)
    # The residual Add writes over its input; the arena is well under the sum of tensors.
    adds = [op for op in plan.order if op.kind == "add"]
    assert adds and any(plan.tensor_buffer[op.outputs[0]] in {plan.tensor_buffer[i] for i in op.inputs} for op in adds)
    assert plan.arena_bytes < 0.6 * plan.naive_bytes


def test_ram_budget_error_names_largest_tensors(tmp_path):
    import tensorflow as tf

    from edgec.errors import BudgetError

    inp = tf.keras.Input((96, 96, 3), batch_size=1)
    out = tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inp)
    out = tf.keras.layers.GlobalAveragePooling2D()(out)
    data = to_tflite(tf.keras.Model(inp, out), (96, 96, 3), n=4)
    with pytest.raises(BudgetError, match=r"over the --ram-budget of 256\.0 KiB; largest tensors: .*\[1, 96, 96, 32\]"):
        build_bundle(tflite_handle(data), tmp_path / "b", ram_budget=256 * 1024, flash_budget=1024 * 1024)


def test_flash_budget_error(tmp_path):
    import tensorflow as tf

    from edgec.errors import BudgetError

    inp = tf.keras.Input((1100,), batch_size=1)
    out = tf.keras.layers.Dense(1000)(inp)
    data = to_tflite(tf.keras.Model(inp, out), (1100,), n=4)
    with pytest.raises(BudgetError, match=r"flash .* over the --flash-budget of 1024\.0 KiB; largest weights"):
        build_bundle(tflite_handle(data), tmp_path / "b", ram_budget=256 * 1024, flash_budget=1024 * 1024)


def test_fits_budget(tflite_models, tmp_path):
    res, _ = build_bundle(tflite_handle(tflite_models["digits_cnn"]), tmp_path / "b",
                          ram_budget=256 * 1024, flash_budget=1024 * 1024)
    assert res.report["ram_bytes"] < 256 * 1024
    assert np.isfinite(res.report["flash_bytes"])
