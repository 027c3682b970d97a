"""Lazy imports of optional, heavy dependencies with one clear error when missing."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from types import ModuleType

from edgec.errors import MissingDependencyError


# Distributions every build uses; the manifest records their versions (targets add theirs
# through `Target.dependencies`).
CORE_DISTS = ("edgec", "numpy", "onnx", "onnxruntime", "onnxslim")


def has_module(name: str) -> bool:
    """Whether `name` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str | None, what: str | None = None) -> ModuleType:
    """Import an optional module or raise `MissingDependencyError` naming the extra.

    Args:
        module: Dotted module name to import.
        extra: The ``edgec[extra]`` that provides it.
        what: Human name of the dependency (defaults to the top-level module name).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top and has_module(top):
            # The package is there but broken (one of its own imports failed): say so.
            raise MissingDependencyError(
                f"{what or top} (its dependency {exc.name})", extra
            ) from exc
        raise MissingDependencyError(what or top, extra) from exc


def version_of(dist: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
