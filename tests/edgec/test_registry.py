"""The one registry base: lazy import strings, duplicates rejected, and the subclasses' checks."""

from __future__ import annotations

import pytest

from edgec.registry import LazyRegistry


def test_lazy_registry_imports_on_first_use_and_rejects_duplicates():
    reg: LazyRegistry = LazyRegistry("thing")
    reg.register("path", "pathlib:PurePosixPath")
    assert reg.names() == ["path"] and "path" in reg and "other" not in reg
    from pathlib import PurePosixPath

    assert reg.load("path") is PurePosixPath
    with pytest.raises(ValueError, match="thing 'path' is already registered"):
        reg.register("path", PurePosixPath)
    reg.unregister("path")
    assert reg.names() == []


def test_target_and_runner_registries_share_the_base():
    from edgec.errors import BundleError
    from edgec.runtimes.registry import RUNNERS
    from edgec.targets.registry import TARGETS

    assert isinstance(TARGETS, LazyRegistry) and isinstance(RUNNERS, LazyRegistry)
    with pytest.raises(BundleError, match="unknown runner 'nope'"):
        RUNNERS.get("nope")

    class Misnamed:
        name = "b"

    with pytest.raises(ValueError, match="is named 'b', not 'a'"):
        TARGETS.register("a", Misnamed)
