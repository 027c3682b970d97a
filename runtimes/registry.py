"""The explicit registry of runners, loaded lazily by import string."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.errors import BundleError
from edgec.registry import LazyRegistry

if TYPE_CHECKING:
    from edgec.runtimes.base import Runner

_BUILTIN: dict[str, str] = {
    "onnxruntime": "edgec.runtimes.onnxruntime_runner:ONNXRuntimeRunner",
    "openvino": "edgec.runtimes.openvino_runner:OpenVINORunner",
    "litert": "edgec.runtimes.litert_runner:LiteRTRunner",
    "mcu": "edgec.runtimes.mcu_runner:MCURunner",
    "tensorrt": "edgec.runtimes.tensorrt_runner:TensorRTRunner",
}


# The runner of every bundle's float reference ONNX (and of `debug layers`' Q/DQ comparison).
REFERENCE_RUNNER = "onnxruntime"


class RunnerRegistry(LazyRegistry["Runner"]):
    """Maps runner names to `Runner` classes; rejects duplicates."""

    def __init__(self) -> None:
        super().__init__("runner")

    def get(self, name: str) -> "type[Runner]":
        if name not in self:
            raise BundleError(f"unknown runner '{name}' (known: {', '.join(self.names())})")
        return self.load(name)


RUNNERS = RunnerRegistry()
for _name, _path in _BUILTIN.items():
    RUNNERS.register(_name, _path)


def create_runner(name: str, bundle_dir: Path, manifest: dict[str, Any], **kw: Any) -> "Runner":
    """Instantiate the runner ``name`` on a bundle (``kw`` as in `Runner.__init__`)."""
    return RUNNERS.get(name)(bundle_dir, manifest, **kw)


def reference_runner(bundle_dir: Path, manifest: dict[str, Any], **kw: Any) -> "Runner":
    """The runner of the bundle's float reference model (onnxruntime CPU by default)."""
    ref = manifest["reference"]
    return create_runner(ref["runner"], bundle_dir, manifest, model_path=ref["path"], io="model", **kw)
