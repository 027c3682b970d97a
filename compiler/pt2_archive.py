"""Load a ``torch.export`` ``.pt2`` archive without running code from its pickles.

``torch.export.load`` unpickles the sample inputs (falling back to ``weights_only=False``),
pickled weights and constants, and arbitrary "opaque" objects with plain `pickle`. A
``__reduce__`` payload in any of them runs when the archive is opened. Before torch sees
the file, every pickle inside it is opened with torch's restricted ``weights_only``
unpickler and must hold plain tensors (sample inputs: tuples/lists/dicts of tensors and
numbers); archives with pickled Python objects are refused. The load itself then runs with
``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` so that no fallback can reach the full unpickler.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Iterator

from edgec._quiet import quiet_third_party
from edgec.errors import ModelLoadError

# Prefixes of constants torch stores with pickle / TorchScript pickle (``pt2_archive.constants``).
_OBJECT_PREFIXES = ("custom_obj", "opaque_obj")


def load_exported_program(path: Path):
    """``torch.export.load(path)`` after checking that its pickles hold only tensors.

    Raises:
        ModelLoadError: the file is not a .pt2 archive, or it carries pickled Python objects.
    """
    import torch

    check_archive(path)
    with _weights_only_forced(), quiet_third_party():
        try:
            return torch.export.load(str(path))
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds on junk archives
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelLoadError(f"'{path}' is not a valid .pt2 ExportedProgram: {first}") from exc


def check_archive(path: Path) -> None:
    """Refuse a .pt2 whose pickled entries are anything but plain tensors."""
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"'{path}' is not a valid .pt2 ExportedProgram (not a zip archive)")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        for name in names:
            if name.endswith(("_weights_config.json", "_constants_config.json")):
                _check_payload_config(path, zf, name)
            elif "/data/sample_inputs/" in name or name.startswith("data/sample_inputs/"):
                _check_sample_inputs(path, name, _restricted_load(path, name, zf.read(name)))


def _check_payload_config(path: Path, zf: zipfile.ZipFile, config_name: str) -> None:
    try:
        config = json.loads(zf.read(config_name)).get("config", {})
    except (ValueError, AttributeError) as exc:
        raise ModelLoadError(f"'{path}' is not a valid .pt2 ExportedProgram ({config_name}: {exc})") from exc
    folder = config_name.rsplit("/", 1)[0]
    for fqn, entry in config.items():
        file = str(entry.get("path_name", ""))
        if file.startswith(_OBJECT_PREFIXES):
            raise ModelLoadError(f"'{path}' carries a pickled Python object ('{fqn}'); edgec does not unpickle "
                                 "untrusted files: export the program with tensor constants only")
        if entry.get("use_pickle"):
            value = _restricted_load(path, fqn, zf.read(f"{folder}/{file}"))
            if not _is_tensor(value):
                raise ModelLoadError(f"'{path}': the pickle of '{fqn}' is a {type(value).__name__}, "
                                     "not a plain tensor; edgec does not unpickle untrusted files")


def _restricted_load(path: Path, what: str, data: bytes) -> Any:
    import torch

    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - UnpicklingError for globals outside the allow-list, and junk
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"'{path}': the pickle of '{what}' holds more than plain tensors "
                             f"({reason[:160]}); edgec does not unpickle untrusted files") from exc


def _check_sample_inputs(path: Path, name: str, value: Any) -> None:
    if not _plain(value):
        raise ModelLoadError(f"'{path}': the pickle of '{name}' holds more than plain tensors; "
                             "edgec does not unpickle untrusted files")


def _is_tensor(value: Any) -> bool:
    import torch

    return type(value) in (torch.Tensor, torch.nn.Parameter)


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)) or _is_tensor(value):
        return True
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


@contextlib.contextmanager
def _weights_only_forced() -> Iterator[None]:
    old = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def example_inputs(ep, path: Path) -> tuple[tuple, dict]:
    """The program's saved example inputs, or inputs rebuilt from its signature's static shapes."""
    import torch

    saved = getattr(ep, "example_inputs", None)
    if saved and (saved[0] or saved[1]):
        return saved
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    gen = torch.Generator().manual_seed(0)
    args = []
    for spec in ep.graph_signature.input_specs:
        if spec.kind.name != "USER_INPUT":
            continue
        val = nodes[spec.arg.name].meta.get("val") if spec.arg.name in nodes else None
        shape = getattr(val, "shape", None)
        if shape is None or not all(isinstance(d, int) for d in shape):
            raise ModelLoadError(f"'{path}' carries no example inputs and input '{spec.arg.name}' has no static "
                                 "shape; save it from torch.export.export(model, args)")
        if val.dtype.is_floating_point:
            args.append(torch.rand(tuple(shape), generator=gen).to(val.dtype))
        else:
            args.append(torch.zeros(tuple(shape), dtype=val.dtype))
    # ep.module() binds its signature against the example inputs, so they go back on the program.
    ep.example_inputs = (tuple(args), {})
    return ep.example_inputs
