"""Calibration and evaluation data: files on disk (or ``random``) -> `CalibrationData`.

Every source is first read as *rows*: per model input, a list of arrays of the per-sample
shape (the model shape without its batch axis). Rows are then validated against the model
(names, rank and shape, dtype kind), cast to the model's dtypes and stacked into samples of
the model's batch size (1 unless the model has a static batch dimension). Only as many rows
as ``max_samples`` samples need are read, so a folder of ten thousand images costs what
128 of them cost.

Sources (``spec``):
    ``x.npz``: keys are the input names, leading sample axis; an optional ``labels`` key.
    ``x.npy``: single-input models, leading sample axis.
    folder of ``.npy``: single-input models, one sample per file (batch axis optional).
    folder of ``.npz``: one sample per file, keys are the input names.
    folder of images: ``.png/.jpg/.jpeg/.bmp``, see `edgec.calibration.images`.
    ``x.txt`` / ``x.jsonl``: texts for models with a tokenizer, see `edgec.calibration.text`.
    ``random``: deterministic synthetic samples.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from edgec.calibration._common import (
    Rows,
    batch_size,
    cast_to_model,
    expected_shape,
    fmt_shape,
    sample_shape,
    shape_matches,
    single_input,
)
from edgec.calibration.images import IMAGE_SUFFIXES, parse_preprocess  # noqa: F401  (re-export)
from edgec.calibration.types import CalibrationData, PreprocessConfig
from edgec.errors import CalibrationDataError, ConfigError

if TYPE_CHECKING:
    from edgec.compiler.model import TensorSpec


_FORMATS = "an .npz, an .npy, a folder of .npy/.npz/image files, a .txt/.jsonl text file or 'random'"
# Errors numpy raises for truncated, corrupt or pickled files.
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError)


def load_calibration_data(
    spec: str,
    inputs: "list[TensorSpec]",
    *,
    max_samples: int = 128,
    tokenizer_dir: Path | None = None,
    preprocess: PreprocessConfig | None = None,
    seed: int = 0,
    role: str = "calibration",
) -> CalibrationData:
    """Read calibration (or evaluation) data into model-convention samples.

    Args:
        spec: Path of the data (see the module docstring for the formats) or ``random``.
        inputs: The model's runtime inputs; symbolic dimensions other than the batch should
            already be fixed (a remaining one takes the data's size).
        max_samples: Keep at most this many samples, in file / row order.
        tokenizer_dir: Folder with the tokenizer files, for text data (and the vocabulary
            size of ``random`` ids).
        preprocess: How image files become tensors (default: resize to the model's size,
            scale to [0, 1], layout and channels from the model input).
        seed: Seed of ``random`` data.
        role: What the data is for, as messages name it (``calibration``, ``--eval``, ``--data``).

    Returns:
        `CalibrationData` with samples whose arrays have the model's names, dtypes and
        shapes, the batch dimension being the model's static batch size or 1.

    Raises:
        CalibrationDataError: Missing, unreadable or empty data, or data that does not fit
            the model (names, shapes, dtypes).
        ConfigError: ``max_samples`` < 1 or a bad ``preprocess``.
        MissingDependencyError: Pillow (images) or transformers (text) is not installed.
    """
    if role != "calibration":
        try:
            return load_calibration_data(spec, inputs, max_samples=max_samples, tokenizer_dir=tokenizer_dir,
                                         preprocess=preprocess, seed=seed)
        except CalibrationDataError as exc:
            # The readers say "calibration"; evaluation and verify data are named by their flag.
            raise CalibrationDataError(re.sub(r"\bcalibration\b", role, str(exc))) from exc
    if int(max_samples) < 1:
        raise ConfigError(f"max_samples must be at least 1, got {max_samples}")
    if not inputs:
        raise CalibrationDataError("the model has no runtime inputs to feed calibration data to")
    names = [s.name for s in inputs]
    if len(set(names)) != len(names):
        raise CalibrationDataError(f"model input names are not unique: {', '.join(names)}")
    spec = str(spec)
    if spec.strip().lower() == "random":
        from edgec.calibration.synthetic import random_samples

        samples = random_samples(inputs, max_samples, seed=seed, tokenizer_dir=tokenizer_dir)
        return CalibrationData(samples=samples, source="random", random=True, kind="random")

    path = Path(spec).expanduser()
    if not path.exists():
        raise CalibrationDataError(f"calibration data '{spec}' does not exist; expected {_FORMATS}")
    # Rows per input; samples need max_samples * batch of them.
    limit = int(max_samples) * max(batch_size(s) for s in inputs)
    labels = None
    if path.is_dir():
        rows, labels, kind = _read_folder(path, inputs, limit, preprocess)
    else:
        suffix = path.suffix.lower()
        if suffix == ".npz":
            rows, labels = _read_npz(path, inputs, limit)
            kind = "npz"
        elif suffix == ".npy":
            rows = _read_npy(path, inputs, limit)
            kind = "npy"
        elif suffix in (".txt", ".jsonl"):
            from edgec.calibration.text import read_text_rows

            rows = read_text_rows(path, inputs, limit, tokenizer_dir)
            kind = "text"
        else:
            raise CalibrationDataError(
                f"calibration data '{spec}' has an unsupported format '{path.suffix or path.name}'; expected {_FORMATS}"
            )
    samples = rows_to_samples(rows, inputs, max_samples, str(path))
    from edgec.compiler.finite import NonFiniteError, check_samples

    try:
        check_samples(samples, "calibration", spec)
    except NonFiniteError as exc:
        raise CalibrationDataError(str(exc)) from exc
    if labels is not None:
        labels = labels[: len(samples) * max(batch_size(s) for s in inputs)]
    return CalibrationData(samples=samples, source=spec, random=False, kind=kind, labels=labels)


def rows_to_samples(rows: Rows, inputs: "list[TensorSpec]", max_samples: int, origin: str) -> list[dict[str, np.ndarray]]:
    """Stack per-input rows into at most `max_samples` samples, each input at its own batch size.

    Inputs may have different leading dimensions (a batch of 1 image next to a [4, 5] table):
    every input takes its own static leading dimension of rows per sample.
    """
    per_sample = {s.name: batch_size(s) for s in inputs}
    counts = {s.name: len(rows.get(s.name, [])) // per_sample[s.name] for s in inputs}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"'{k}': {v}" for k, v in counts.items())
        raise CalibrationDataError(f"calibration data '{origin}' has different sample counts per input ({detail}); expected the same")
    if not any(rows.get(s.name) for s in inputs):
        raise CalibrationDataError(f"calibration data '{origin}' holds no samples; expected at least one")
    n = min(next(iter(counts.values())), int(max_samples))
    if n == 0:
        short = next(s for s in inputs if len(rows.get(s.name, [])) < per_sample[s.name])
        raise CalibrationDataError(
            f"calibration data '{origin}' has {len(rows.get(short.name, []))} rows for input '{short.name}', fewer than "
            f"its leading dimension {per_sample[short.name]}"
        )
    samples = []
    for k in range(n):
        sample = {}
        for s in inputs:
            batch = per_sample[s.name]
            chunk = rows[s.name][k * batch:(k + 1) * batch]
            if not s.shape:  # a scalar input has no batch axis
                sample[s.name] = np.asarray(chunk[0])
                continue
            shapes = {c.shape for c in chunk}
            if len(shapes) > 1:
                raise CalibrationDataError(
                    f"calibration input '{s.name}' has rows of different shapes "
                    f"({', '.join(fmt_shape(x) for x in sorted(shapes))}) in sample {k}; "
                    f"expected one shape per batch of {batch}"
                )
            sample[s.name] = np.ascontiguousarray(np.stack(chunk, axis=0))
        samples.append(sample)
    return samples


def _load_array_file(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise CalibrationDataError(f"cannot read calibration file '{path}': {exc}") from exc


def _rows_of_stacked(name: str, arr: np.ndarray, spec: "TensorSpec", origin: str, limit: int) -> list[np.ndarray]:
    """Rows of an array with a leading sample axis (the .npz / .npy layout).

    Two forms are read: ``[samples, *model input shape]`` (the documented one: each sample is
    what the model takes, batch axis included), and ``[rows, *shape without the batch axis]``.
    The array's rank tells them apart. A shape that fits neither names the axis that differs.
    """
    if arr.dtype.kind in "USOV":  # text, bytes, objects, records: a dtype problem, whatever the shape
        cast_to_model(name, arr, spec, f"calibration data '{origin}'")
    full = tuple(d if isinstance(d, int) and d > 0 else None for d in spec.shape)
    per = sample_shape(spec)
    if arr.ndim == len(full) + 1 and full and shape_matches(arr.shape[1:], full):
        rows_per_sample = arr.shape[1]
        arr = arr[: -(-limit // max(rows_per_sample, 1))]
        arr = arr.reshape(-1, *arr.shape[2:])  # each sample's own batch axis becomes rows
    elif arr.ndim and shape_matches(arr.shape[1:], per):
        arr = arr[:limit]
    else:
        raise CalibrationDataError(_stacked_shape_error(name, arr.shape, full, per, origin))
    arr = cast_to_model(name, arr, spec, f"calibration data '{origin}'")
    return list(arr)


def _stacked_shape_error(name: str, got: tuple[int, ...], full: tuple, per: tuple, origin: str) -> str:
    model = fmt_shape(["N" if d is None else d for d in full])
    expect = f"[samples, {', '.join('N' if d is None else str(d) for d in full)}]" if full else "[samples]"
    head = f"calibration input '{name}' in '{origin}' has shape {fmt_shape(got)}"
    for want in (full, per):
        if len(got) == len(want) + 1:
            axis = next(i for i, (g, w) in enumerate(zip(got[1:], want)) if w is not None and g != w) + 1
            return (f"{head}: axis {axis} is {got[axis]}, expected {want[axis - 1]} (the model input is {model}; "
                    f"give {expect}, axis 0 counting samples)")
    return f"{head}: rank {len(got)}, expected rank {len(full) + 1} {expect} (the model input is {model})"


def _rows_of_file(name: str, arr: np.ndarray, spec: "TensorSpec", origin: str) -> list[np.ndarray]:
    """Rows of one sample file: the per-sample shape, or that shape with a leading batch axis."""
    want = sample_shape(spec)
    if arr.dtype.kind in "USOV":
        cast_to_model(name, arr, spec, f"calibration file '{origin}'")
    if shape_matches(arr.shape, want):
        rows = [arr]
    elif arr.ndim == len(want) + 1 and arr.shape[0] > 0 and shape_matches(arr.shape[1:], want):
        rows = list(arr)
    else:
        raise CalibrationDataError(
            f"calibration file '{origin}' for input '{name}' has shape {fmt_shape(arr.shape)}, "
            f"model expects {fmt_shape(expected_shape(spec))} (one sample, with or without the batch axis)"
        )
    return [cast_to_model(name, r, spec, f"calibration file '{origin}'") for r in rows]


def _check_keys(keys: Sequence[str], inputs: "list[TensorSpec]", origin: str) -> None:
    names = [s.name for s in inputs]
    missing = [n for n in names if n not in keys]
    extra = [k for k in keys if k not in names and k != "labels"]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks input(s) {', '.join(repr(m) for m in missing)}")
        if extra:
            parts.append(f"has unknown key(s) {', '.join(repr(e) for e in extra)}")
        raise CalibrationDataError(
            f"calibration data '{origin}' {' and '.join(parts)}; expected keys {', '.join(repr(n) for n in names)}"
            " (plus optional 'labels')"
        )


def _npz_arrays(path: Path, inputs: "list[TensorSpec]") -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The arrays of one ``.npz`` file, one per model input, and its optional ``labels``."""
    data = _load_array_file(path)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise CalibrationDataError(f"calibration file '{path}' is not an .npz archive; expected one")
    with data:
        try:
            _check_keys(list(data.files), inputs, str(path))
            arrays = {s.name: data[s.name] for s in inputs}
            # An input may itself be called 'labels'; then the file has no separate labels.
            labels = data["labels"] if "labels" in data.files and "labels" not in arrays else None
        except _READ_ERRORS as exc:
            raise CalibrationDataError(f"cannot read calibration file '{path}': {exc}") from exc
    return arrays, labels


def _read_npz(path: Path, inputs: "list[TensorSpec]", limit: int) -> tuple[Rows, np.ndarray | None]:
    arrays, labels = _npz_arrays(path, inputs)
    sizes = {k: (a.shape[0] if a.ndim else 0) for k, a in arrays.items()}
    if len(set(sizes.values())) > 1:
        detail = ", ".join(f"'{k}': {v}" for k, v in sizes.items())
        raise CalibrationDataError(f"calibration data '{path}' has different sample counts per input ({detail}); expected the same")
    if labels is not None and labels.ndim and labels.shape[0] != next(iter(sizes.values())):
        raise CalibrationDataError(
            f"calibration data '{path}' has {labels.shape[0]} labels for {next(iter(sizes.values()))} samples; expected one per sample"
        )
    rows = {s.name: _rows_of_stacked(s.name, arrays[s.name], s, str(path), limit) for s in inputs}
    return rows, labels


def _read_npy(path: Path, inputs: "list[TensorSpec]", limit: int) -> Rows:
    single_input(inputs, f"an .npy file ('{path}')")
    arr = _load_array_file(path)
    spec = inputs[0]
    return {spec.name: _rows_of_stacked(spec.name, arr, spec, str(path), limit)}


def _read_folder(path: Path, inputs: "list[TensorSpec]", limit: int,
                 preprocess: PreprocessConfig | None) -> tuple[Rows, np.ndarray | None, str]:
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    groups: dict[str, list[Path]] = {"npy": [], "npz": [], "images": []}
    for f in files:
        suffix = f.suffix.lower()
        if suffix == ".npy":
            groups["npy"].append(f)
        elif suffix == ".npz":
            groups["npz"].append(f)
        elif suffix in IMAGE_SUFFIXES:
            groups["images"].append(f)
    present = [k for k, v in groups.items() if v]
    if not present:
        raise CalibrationDataError(
            f"calibration folder '{path}' has no .npy, .npz or image ({'/'.join(IMAGE_SUFFIXES)}) files; expected one sample per file"
        )
    if len(present) > 1:
        raise CalibrationDataError(
            f"calibration folder '{path}' mixes {' and '.join(present)} files; expected one kind"
        )
    kind = present[0]
    if kind == "images":
        from edgec.calibration.images import read_image_rows

        return read_image_rows(groups["images"], inputs, limit, preprocess), None, "images"
    if kind == "npy":
        single_input(inputs, f"a folder of .npy files ('{path}')")
        spec = inputs[0]
        rows: list[np.ndarray] = []
        for f in groups["npy"]:
            if len(rows) >= limit:
                break
            rows.extend(_rows_of_file(spec.name, _load_array_file(f), spec, str(f)))
        return {spec.name: rows[:limit]}, None, "npy-folder"
    return _read_npz_folder(groups["npz"], inputs, limit)


def _read_npz_folder(files: list[Path], inputs: "list[TensorSpec]", limit: int) -> tuple[Rows, np.ndarray | None, str]:
    rows: Rows = {s.name: [] for s in inputs}
    labels: list[np.ndarray] = []
    for f in files:
        if len(rows[inputs[0].name]) >= limit:
            break
        arrays, label = _npz_arrays(f, inputs)
        file_rows = {s.name: _rows_of_file(s.name, arrays[s.name], s, str(f)) for s in inputs}
        counts = {len(r) for r in file_rows.values()}
        if len(counts) > 1:
            raise CalibrationDataError(f"calibration file '{f}' has different batch sizes per input; expected the same")
        for k, r in file_rows.items():
            rows[k].extend(r)
        if label is not None:
            labels.extend(np.atleast_1d(label))
    n = len(rows[inputs[0].name])
    stacked = None
    if labels:
        if len(labels) != n:
            raise CalibrationDataError(
                f"calibration folder '{files[0].parent}' has labels in some files only ({len(labels)} for {n} samples); "
                "expected a 'labels' key in every file or in none"
            )
        stacked = np.asarray(labels)[:limit]
    return {k: v[:limit] for k, v in rows.items()}, stacked, "npz-folder"
