"""The explicit registry of targets, loaded lazily by import string."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgec.errors import ConfigError
from edgec.registry import LazyRegistry

if TYPE_CHECKING:
    from edgec.targets.base import Target

# Canonical name -> "module:Class". Importing a target module must stay cheap.
_BUILTIN: dict[str, str] = {
    "intel-cpu": "edgec.targets.openvino:OpenVINOTarget",
    "arm": "edgec.targets.tflite:TFLiteTarget",
    "mcu": "edgec.targets.mcu:MCUTarget",
    "jetson": "edgec.targets.tensorrt:TensorRTTarget",
    "onnxruntime": "edgec.targets.onnxruntime:ONNXRuntimeTarget",
}

DEFAULT_TARGET = "intel-cpu"


class TargetRegistry(LazyRegistry["Target"]):
    """Maps target names and aliases to `Target` classes; rejects duplicates."""

    def __init__(self) -> None:
        super().__init__("target")
        self._aliases: dict[str, str] | None = None

    def _check(self, name: str, entry) -> None:
        if not isinstance(entry, str) and entry.name != name:
            raise ValueError(f"target class {entry.__name__} is named '{entry.name}', not '{name}'")

    def _changed(self) -> None:
        self._aliases = None

    def target_class(self, name: str) -> "type[Target]":
        return self.load(name)

    def _alias_map(self) -> dict[str, str]:
        if self._aliases is None:
            amap: dict[str, str] = {}
            for name in self.names():
                try:
                    aliases = self.target_class(name).aliases
                except (ImportError, AttributeError):
                    aliases = ()  # a broken target fails when used, not when others are looked up
                for key in (name, *aliases):
                    if key in amap and amap[key] != name:
                        raise ValueError(f"alias '{key}' is claimed by targets '{amap[key]}' and '{name}'")
                    amap[key] = name
            self._aliases = amap
        return self._aliases

    def canonical(self, name_or_alias: str) -> str:
        amap = self._alias_map()
        if name_or_alias not in amap:
            known = ", ".join(sorted(amap))
            raise ConfigError(f"unknown target '{name_or_alias}' (known: {known})")
        return amap[name_or_alias]

    def get(self, name_or_alias: str) -> "Target":
        """A fresh instance of the target named or aliased ``name_or_alias``."""
        return self.target_class(self.canonical(name_or_alias))()


TARGETS = TargetRegistry()
for _name, _path in _BUILTIN.items():
    TARGETS.register(_name, _path)


def get_target(name_or_alias: str) -> "Target":
    return TARGETS.get(name_or_alias)


def extra_for_format(fmt: str) -> str | None:
    """The pip extra of the first target that takes ``fmt`` sources (what reading them needs)."""
    for name in TARGETS.names():
        target = TARGETS.target_class(name)
        if fmt in target.accepted_formats and target.extra:
            return target.extra
    return None
