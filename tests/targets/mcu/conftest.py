"""Fixtures for the mcu target tests: tiny int8 .tflite models built with Keras + the
TFLite converter and Q/DQ ONNX models built with torch + onnxruntime's quantize_static,
each converted once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from edgec.compiler.quality import exact_qdq_session
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None
HAVE_QEMU = HAVE_ARM and shutil.which("qemu-system-arm") is not None
QEMU_SKIP = ("qemu-system-arm / arm-none-eabi-gcc not installed (the project setup installs them: "
             "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")


def to_tflite(model, shape, n: int = 48, seed: int = 0, float_io: bool = False, per_tensor: bool = False) -> bytes:
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def rep():
        for _ in range(n):
            yield [rng.uniform(-1, 1, size=(1, *shape)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    if per_tensor:
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    return conv.convert()


def _keras_models() -> dict:
    import tensorflow as tf

    L = tf.keras.layers

    def model(shape, body):
        inp = tf.keras.Input(shape, batch_size=1)
        return tf.keras.Model(inp, body(inp)), shape

    def residual(x):
        y = L.Conv2D(4, 1)(x)
        return L.Add()([x, y])

    def concat_pad(x):
        p = L.ZeroPadding2D(((1, 0), (0, 2)))(x)
        return L.Concatenate()([L.Conv2D(3, 1)(p), L.Activation("sigmoid")(p)])

    per_op = {
        "conv_same_relu": model((9, 9, 3), lambda x: L.Conv2D(8, 3, padding="same", activation="relu")(x)),
        "conv_valid_stride2": model((11, 10, 4), lambda x: L.Conv2D(6, (3, 2), strides=2)(x)),
        "conv_dilated": model((10, 10, 2), lambda x: L.Conv2D(5, 3, dilation_rate=2, padding="same")(x)),
        "dwconv_mult2_relu6": model((8, 8, 3), lambda x: L.DepthwiseConv2D(3, padding="same", depth_multiplier=2,
                                                                           activation="relu6")(x)),
        "dwconv_stride2": model((9, 9, 4), lambda x: L.DepthwiseConv2D(3, strides=2, padding="same")(x)),
        "dense": model((40,), lambda x: L.Dense(64)(x)),
        "dense_per_tensor": model((40,), lambda x: L.Dense(33, activation="relu")(x)),
        "add_residual": model((6, 6, 4), residual),
        "mul": model((6, 6, 4), lambda x: L.Multiply()([x, L.Conv2D(4, 1)(x)])),
        "maxpool": model((8, 8, 3), lambda x: L.MaxPooling2D(2)(L.Conv2D(3, 1)(x))),
        "avgpool_same": model((7, 7, 3), lambda x: L.AveragePooling2D(3, strides=2, padding="same")(x)),
        "global_avg": model((6, 5, 7), lambda x: L.GlobalAveragePooling2D()(L.Conv2D(7, 1)(x))),
        "softmax": model((20,), lambda x: L.Softmax()(L.Dense(10)(x))),
        "concat_pad_sigmoid": model((6, 6, 4), concat_pad),
        "tanh_flatten": model((4, 4, 3), lambda x: L.Dense(5)(L.Flatten()(L.Activation("tanh")(x)))),
    }
    return per_op


def _whole_models() -> dict:
    import tensorflow as tf

    L = tf.keras.layers

    def digits():
        inp = tf.keras.Input((8, 8, 1), batch_size=1)
        x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
        x = L.MaxPooling2D(2)(x)
        x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
        x = L.Flatten()(x)
        x = L.Dense(10)(x)
        return tf.keras.Model(inp, L.Softmax()(x)), (8, 8, 1)

    def ds_cnn():
        inp = tf.keras.Input((49, 10, 1), batch_size=1)
        x = L.Conv2D(16, (10, 4), strides=2, padding="same", activation="relu")(inp)
        for _ in range(2):
            x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
            x = L.Conv2D(16, 1, activation="relu")(x)
        x = L.GlobalAveragePooling2D()(x)
        return tf.keras.Model(inp, L.Softmax()(L.Dense(12)(x))), (49, 10, 1)

    def mobilenet():
        inp = tf.keras.Input((16, 16, 3), batch_size=1)
        x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inp)
        for expand, out, stride in ((16, 8, 1), (24, 12, 2), (36, 12, 1)):
            y = L.Conv2D(expand, 1, activation="relu6")(x)
            y = L.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu6")(y)
            y = L.Conv2D(out, 1)(y)
            x = L.Add()([x, y]) if stride == 1 and x.shape[-1] == out else y
        x = L.GlobalAveragePooling2D()(x)
        return tf.keras.Model(inp, L.Dense(5)(x)), (16, 16, 3)

    def autoencoder():
        inp = tf.keras.Input((32,), batch_size=1)
        x = L.Dense(16, activation="relu")(inp)
        x = L.Dense(8, activation="relu")(x)
        x = L.Dense(16, activation="relu")(x)
        return tf.keras.Model(inp, L.Dense(32, activation="sigmoid")(x)), (32,)

    return {"digits_cnn": digits(), "ds_cnn_kws": ds_cnn(), "mobilenet_stack": mobilenet(),
            "dense_autoencoder": autoencoder()}


@pytest.fixture(scope="session")
def tflite_models() -> dict[str, bytes]:
    """All per-op and whole-model int8 .tflite files (built once per session)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    out = {}
    for name, (m, shape) in _keras_models().items():
        out[name] = to_tflite(m, shape, per_tensor=name == "dense_per_tensor")
    for name, (m, shape) in _whole_models().items():
        out[name] = to_tflite(m, shape)
    m, shape = _whole_models()["dense_autoencoder"]
    out["float_io_autoencoder"] = to_tflite(m, shape, float_io=True)
    return out


def tflite_handle(data: bytes, name: str = "model.tflite"):
    from ai_edge_litert.interpreter import Interpreter

    from edgec.compiler.model import ModelHandle, TensorSpec, sha256_bytes

    it = Interpreter(model_content=data)
    ins = [TensorSpec(d["name"], tuple(int(v) for v in d["shape"]), np.dtype(d["dtype"]).name)
           for d in it.get_input_details()]
    outs = [TensorSpec(d["name"], tuple(int(v) for v in d["shape"]), np.dtype(d["dtype"]).name)
            for d in it.get_output_details()]
    return ModelHandle(None, ins, outs, name, sha256_bytes(data), format="tflite", tflite_bytes=data)


def build_bundle(model, out: Path, **options):
    """Lower ``model`` with the mcu target into ``out``; return (LowerResult, manifest)."""
    from edgec.targets.base import LowerSpec
    from edgec.targets.mcu import MCUTarget

    out.mkdir(parents=True, exist_ok=True)
    t = MCUTarget()
    t.check(model, LowerSpec("int8", model)).raise_if_unsupported()
    res = t.lower(model, LowerSpec("int8", model, quant_model=model, options={"cpu": "cortex-m4", **options}), out)
    manifest = {"artifact": {"path": res.model_artifact.path}, "runner": "mcu", "target": "mcu",
                "model_inputs": [s.to_json() for s in model.inputs],
                "model_outputs": [s.to_json() for s in model.outputs],
                "inputs": [s.to_json() for s in res.inputs], "outputs": [s.to_json() for s in res.outputs],
                "target_info": res.manifest}
    return res, manifest


def litert_reference(data: bytes):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    return it


def random_native(specs, rng) -> dict[str, np.ndarray]:
    feeds = {}
    for s in specs:
        shape = [int(d) for d in s.shape]
        if np.dtype(s.dtype).kind == "f":
            feeds[s.name] = rng.uniform(-1.5, 1.5, size=shape).astype(s.dtype)
        else:
            feeds[s.name] = rng.integers(-128, 128, size=shape).astype(s.dtype)
    return feeds


def assert_qemu_matches_litert(bundle, manifest, data: bytes, seed: int) -> None:
    """The bundle run in QEMU on random int8 input == LiteRT BUILTIN_REF, and == its host build."""
    from edgec.runtimes.mcu_runner import MCURunner

    runner = MCURunner(bundle, manifest, device="qemu").load()
    ref = litert_reference(data)
    feeds = random_native(runner.native_in, np.random.default_rng(seed))
    ref.set_tensor(ref.get_input_details()[0]["index"], next(iter(feeds.values())))
    ref.invoke()
    want = ref.get_tensor(ref.get_output_details()[0]["index"])
    got = next(iter(runner.run_native(feeds).values()))
    np.testing.assert_array_equal(got.reshape(want.shape), want)
    assert runner.info()["extra"]["matches_host"] is True


# -- ONNX (Q/DQ) models -------------------------------------------------------------------------


def _torch_models() -> dict:
    import torch
    from torch import nn

    torch.manual_seed(0)

    class DSBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())
            self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU())
            self.pw = nn.Sequential(nn.Conv2d(8, 12, 1), nn.ReLU())
            # SqueezeNet's pool: the last window row/column runs past the edge (ceil_mode).
            self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.head = nn.Linear(12 * 4 * 5, 6)

        def forward(self, x):
            x = self.pool(self.pw(self.dw(self.stem(x))))
            return self.head(torch.flatten(x, 1))

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.c2 = nn.Conv2d(8, 8, 3, padding=1)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            y = torch.relu(self.c1(x))
            z = torch.relu(self.c2(y) + y)
            z = torch.nn.functional.avg_pool2d(z, 2)
            return torch.softmax(self.fc(torch.flatten(self.gap(z), 1)), -1)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(24, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(),
                                     nn.Linear(16, 24), nn.Sigmoid())

        def forward(self, x):
            return self.net(x)

    class CatPad(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 4, 1)
            self.b = nn.Conv2d(4, 6, 3, padding=1)

        def forward(self, x):
            y = torch.cat([torch.relu(self.a(x)), self.b(x)], 1)
            y = torch.nn.functional.pad(y, (1, 1, 0, 2))
            return torch.sigmoid(y), torch.tanh(y) + y

    return {"onnx_ds_cnn": (DSBlock(), (1, 1, 8, 10)), "onnx_residual": (Residual(), (1, 3, 12, 12)),
            "onnx_mlp": (MLP(), (1, 24)), "onnx_concat_pad": (CatPad(), (1, 4, 6, 6))}


def to_qdq_onnx(module, shape, path: Path, n: int = 32):
    import onnx
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    module.eval()
    fp = path.with_suffix(".fp32.onnx")
    torch.onnx.export(module, torch.randn(*shape), str(fp), input_names=["x"],
                      opset_version=17, dynamo=False)
    import onnxslim  # the pipeline's optimize stage folds constants the same way

    onnx.save(onnxslim.slim(onnx.load(str(fp))), str(fp))
    rng = np.random.default_rng(1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": rng.uniform(-1, 1, size=shape).astype(np.float32)} for _ in range(n)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fp), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return onnx.load(str(path))


@pytest.fixture(scope="session")
def onnx_models(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("onnx")
    return {name: to_qdq_onnx(m, shape, d / f"{name}.onnx") for name, (m, shape) in _torch_models().items()}


def onnx_handle(proto, name: str = "model.onnx"):
    from dataclasses import replace

    from edgec.compiler.model import ModelHandle

    h = ModelHandle.from_onnx(proto, name, "0" * 64)
    # The model convention is NCHW for images; runtimes/io converts to the artifact's NHWC.
    h.inputs = [replace(s, layout="NCHW") if len(s.shape) == 4 else s for s in h.inputs]
    h.outputs = [replace(s, layout="NCHW") if len(s.shape) == 4 else s for s in h.outputs]
    return h


def edgec_qdq(proto, samples: list[dict[str, np.ndarray]]):
    """Quantize a float ONNX model as `edgec build --target mcu` does (optimize, min/max
    calibration, the mcu QuantScheme); return (float handle, Q/DQ handle)."""
    from edgec.calibration.collect import collect_ranges
    from edgec.compiler.model import ModelHandle
    from edgec.compiler.optimize import optimize
    from edgec.compiler.quantize import quantize_qdq
    from edgec.targets.mcu import MCUTarget

    h, _ = optimize(ModelHandle.from_onnx(proto, "model.onnx", "0" * 64))
    q, _ = quantize_qdq(h, collect_ranges(h.proto, samples), MCUTarget.quant_scheme)
    return h, onnx_handle(q.proto)


def lsb_agreement(proto, qh, runner_outputs, feeds_list, out_specs) -> tuple[int, int, int]:
    """(within 1 LSB, total, max LSB difference) of the C outputs against onnxruntime on ``proto``.

    onnxruntime runs the Q/DQ graph as written (`exact_qdq_session`): its fused int8 kernels sum u8 x s8 product
    pairs in saturating int16 on x86 CPUs without VNNI, so they are no reference there."""
    sess = exact_qdq_session(proto)
    within = total = worst = 0
    for feeds, got in zip(feeds_list, runner_outputs):
        for spec, w, o in zip(out_specs, sess.run(None, feeds), qh.outputs):
            d = np.abs(np.rint(w / spec.scale) - np.rint(got[o.name] / spec.scale))
            within += int((d <= 1).sum())
            total += d.size
            worst = max(worst, int(d.max(initial=0)))
    return within, total, worst
