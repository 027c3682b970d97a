"""Image files -> model input rows, and the ``--preprocess`` string.

An image becomes: decoded with Pillow (RGB, or L for a one-channel model), resized
(bilinear) to the model's spatial size unless ``resize`` says otherwise, scaled to [0, 1],
normalised ``(x - mean) / std`` per channel, laid out CHW or HWC as the model input.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgec.calibration._common import Rows, expected_shape, fmt_shape, single_input
from edgec.calibration.types import PreprocessConfig
from edgec.errors import CalibrationDataError, ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from edgec.compiler.model import TensorSpec

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_LAYOUTS = ("NCHW", "NHWC")
_KEYS = ("resize", "mean", "std", "layout", "grayscale")
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _floats(key: str, value: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in value.split("/"))
    except ValueError:
        raise ConfigError(f"invalid --preprocess {key}='{value}'; expected numbers separated by '/', e.g. 0.485/0.456/0.406") from None
    return vals


def parse_preprocess(text: str) -> PreprocessConfig:
    """Parse the CLI form ``resize=32x32,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,layout=NCHW,grayscale=1``.

    Every key is optional; ``resize=32`` means 32x32. An empty string gives the defaults.

    Raises:
        ConfigError: An unknown or repeated key, or a value that does not parse.
    """
    cfg = PreprocessConfig()
    seen: set[str] = set()
    for item in (i.strip() for i in str(text).split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in _KEYS:
            raise ConfigError(f"invalid --preprocess item '{item}'; expected key=value with key one of {', '.join(_KEYS)}")
        if key in seen:
            raise ConfigError(f"--preprocess key '{key}' is given twice; expected it once")
        seen.add(key)
        if key == "resize":
            parts = value.lower().split("x")
            try:
                dims = [int(p) for p in parts]
            except ValueError:
                dims = []
            if len(dims) == 1:
                dims = dims * 2
            if len(dims) != 2 or min(dims) < 1:
                raise ConfigError(f"invalid --preprocess resize='{value}'; expected HEIGHTxWIDTH such as 224x224 (or one size)")
            cfg.resize = (dims[0], dims[1])
        elif key == "mean":
            cfg.mean = _floats(key, value)
        elif key == "std":
            cfg.std = _floats(key, value)
            if any(s <= 0 for s in cfg.std):
                raise ConfigError(f"invalid --preprocess std='{value}'; expected positive numbers")
        elif key == "layout":
            if value.upper() not in _LAYOUTS:
                raise ConfigError(f"invalid --preprocess layout='{value}'; expected NCHW or NHWC")
            cfg.layout = value.upper()
        else:
            if value.lower() not in _BOOLS:
                raise ConfigError(f"invalid --preprocess grayscale='{value}'; expected 1 or 0")
            cfg.grayscale = _BOOLS[value.lower()]
    return cfg


def _static(d) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def _layout(spec: "TensorSpec", cfg: PreprocessConfig, explicit: bool) -> str:
    """The configured layout, unless the model input's shape rules it out."""
    layout = str(cfg.layout).upper()
    if layout not in _LAYOUTS:
        raise ConfigError(f"invalid preprocess layout '{cfg.layout}'; expected NCHW or NHWC")
    if not explicit and spec.layout in _LAYOUTS:
        layout = spec.layout

    def channels(lay):
        return _static(spec.shape[1] if lay == "NCHW" else spec.shape[3])

    other = "NHWC" if layout == "NCHW" else "NCHW"
    # A 3-channel NHWC model under the NCHW default would have "224 channels": the shape
    # decides when only one reading of it is an image.
    if channels(layout) not in (None, *_MODES) and channels(other) in _MODES:
        return other
    return layout


def read_image_rows(files: list[Path], inputs: "list[TensorSpec]", limit: int,
                    preprocess: PreprocessConfig | None) -> Rows:
    """The first `limit` images of `files` (already sorted) as rows of the single image input."""
    try:
        from PIL import Image as image_mod
    except ImportError as exc:
        raise MissingDependencyError("Pillow", hint="pip install pillow (needed to read image calibration data)") from exc
    single_input(inputs, f"a folder of images ('{files[0].parent}')")
    spec = inputs[0]
    if len(spec.shape) != 4:
        raise CalibrationDataError(
            f"image calibration data needs a 4-D image input [N, C, H, W] or [N, H, W, C]; "
            f"model input '{spec.name}' has shape {fmt_shape(spec.shape)}"
        )
    if spec.np_dtype.kind != "f":
        raise CalibrationDataError(
            f"image calibration data feeds float inputs; model input '{spec.name}' is {spec.dtype} (use .npz data)"
        )
    cfg = preprocess or PreprocessConfig()
    layout = _layout(spec, cfg, explicit=preprocess is not None)
    c_dim, h_dim, w_dim = (spec.shape[1], spec.shape[2], spec.shape[3]) if layout == "NCHW" else (
        spec.shape[3], spec.shape[1], spec.shape[2])
    channels = _static(c_dim) or (1 if cfg.grayscale else 3)
    if channels not in _MODES:
        raise CalibrationDataError(
            f"model input '{spec.name}' of shape {fmt_shape(spec.shape)} has {channels} channels in {layout}; "
            "expected 1 (grayscale), 3 (RGB) or 4 (RGBA) for image data"
        )
    if cfg.grayscale is False and channels == 1:
        raise ConfigError(f"--preprocess grayscale=0 but model input '{spec.name}' has 1 channel; expected grayscale=1 or no grayscale key")
    model_hw = (_static(h_dim), _static(w_dim))
    size = cfg.resize or (model_hw if None not in model_hw else None)
    if cfg.resize and None not in model_hw and tuple(cfg.resize) != model_hw:
        raise CalibrationDataError(
            f"--preprocess resize={cfg.resize[0]}x{cfg.resize[1]} does not fit model input '{spec.name}' "
            f"{fmt_shape(expected_shape(spec))}; expected {model_hw[0]}x{model_hw[1]} ({layout})"
        )
    mean = _per_channel("mean", cfg.mean, channels, spec.name)
    std = _per_channel("std", cfg.std, channels, spec.name)
    mode = "L" if cfg.grayscale or channels == 1 else _MODES[channels]

    rows = []
    for f in files[:limit]:
        try:
            with image_mod.open(f) as img:
                img.load()
                img = img.convert(mode)
                if mode == "L" and channels != 1:
                    img = img.convert(_MODES[channels])  # grayscale=1 on a colour model
                if size is not None and img.size != (size[1], size[0]):
                    img = img.resize((size[1], size[0]), image_mod.BILINEAR)
                arr = np.asarray(img, dtype=np.float32)
        except (OSError, ValueError, image_mod.DecompressionBombError) as exc:
            raise CalibrationDataError(f"cannot read image '{f}': {exc}") from exc
        if arr.ndim == 2:
            arr = arr[:, :, None]
        arr = (arr / 255.0 - mean) / std
        if layout == "NCHW":
            arr = arr.transpose(2, 0, 1)
        rows.append(np.ascontiguousarray(arr, dtype=spec.np_dtype))
    return {spec.name: rows}


def _per_channel(key: str, values: tuple[float, ...], channels: int, name: str) -> np.ndarray:
    vals = tuple(values)
    if len(vals) not in (1, channels):
        raise ConfigError(
            f"--preprocess {key} has {len(vals)} values but model input '{name}' has {channels} channels; "
            f"expected 1 or {channels}"
        )
    return np.asarray(vals, dtype=np.float32)
