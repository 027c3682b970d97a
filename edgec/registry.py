"""The base of edgec's registries (targets, runners): names mapped to classes, imported lazily.

A registry entry is either a class or an import string ``module:Class``; the module is
imported on first use, so listing names (``edgec --help``, ``edgec targets``) stays cheap
and a broken plugin fails only when it is used.
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

T = TypeVar("T")


class LazyRegistry(Generic[T]):
    """Maps unique names to classes given directly or as ``module:Class`` strings.

    Args:
        kind: What is registered, for messages (``"target"``, ``"runner"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._paths: dict[str, str] = {}
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str, entry: "str | type[T]") -> None:
        """Register ``entry`` (a class or ``module:Class``) under ``name``; a second entry of that name is an error."""
        if name in self._paths or name in self._classes:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._check(name, entry)
        if isinstance(entry, str):
            self._paths[name] = entry
        else:
            self._classes[name] = entry
        self._changed()

    def unregister(self, name: str) -> None:
        self._paths.pop(name, None)
        self._classes.pop(name, None)
        self._changed()

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(dict.fromkeys([*self._paths, *self._classes]))

    def __contains__(self, name: str) -> bool:
        return name in self._paths or name in self._classes

    def load(self, name: str) -> "type[T]":
        """The class registered as ``name`` (imported on first use). Raises KeyError if unknown."""
        if name not in self._classes:
            module, _, cls = self._paths[name].partition(":")
            klass = getattr(importlib.import_module(module), cls)
            self._check(name, klass)
            self._classes[name] = klass
        return self._classes[name]

    def _check(self, name: str, entry: "str | type[T]") -> None:
        """Hook: reject an entry that does not fit ``name`` (raise ValueError)."""

    def _changed(self) -> None:
        """Hook: drop caches derived from the entries."""
