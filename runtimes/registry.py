"""The explicit registry of runners, loaded lazily by import string."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec.errors import BundleError

if TYPE_CHECKING:
    from edgec.runtimes.base import Runner

_BUILTIN: dict[str, str] = {
    "onnxruntime": "edgec.runtimes.onnxruntime_runner:ONNXRuntimeRunner",
    "openvino": "edgec.runtimes.openvino_runner:OpenVINORunner",
    "litert": "edgec.runtimes.litert_runner:LiteRTRunner",
    "mcu": "edgec.runtimes.mcu_runner:MCURunner",
    "tensorrt": "edgec.runtimes.tensorrt_runner:TensorRTRunner",
}


class RunnerRegistry:
    """Maps runner names to `Runner` classes; rejects duplicates."""

    def __init__(self) -> None:
        self._paths: dict[str, str] = {}
        self._classes: dict[str, type[Runner]] = {}

    def register(self, name: str, runner: "str | type[Runner]") -> None:
        if name in self._paths or name in self._classes:
            raise ValueError(f"runner '{name}' is already registered")
        if isinstance(runner, str):
            self._paths[name] = runner
        else:
            self._classes[name] = runner

    def unregister(self, name: str) -> None:
        self._paths.pop(name, None)
        self._classes.pop(name, None)

    def names(self) -> list[str]:
        return list(dict.fromkeys([*self._paths, *self._classes]))

    def get(self, name: str) -> "type[Runner]":
        if name not in self._classes:
            if name not in self._paths:
                raise BundleError(f"unknown runner '{name}' (known: {', '.join(self.names())})")
            module, _, cls = self._paths[name].partition(":")
            self._classes[name] = getattr(importlib.import_module(module), cls)
        return self._classes[name]


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
