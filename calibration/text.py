"""Text files -> token id rows for models that come with a tokenizer.

``.txt``: one text per line (blank lines skipped). ``.jsonl``: one JSON object per line with
a ``text`` string and optionally a ``text_pair`` string (sentence-pair models). Texts are
tokenized with ``transformers.AutoTokenizer`` from the model's tokenizer folder (offline),
padded and truncated to the model's sequence length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgec.calibration._common import Rows, batch_size, fmt_shape
from edgec.errors import CalibrationDataError

if TYPE_CHECKING:
    from edgec.compiler.model import TensorSpec

TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def read_texts(path: Path, limit: int) -> list[tuple[str, str | None]]:
    """The first `limit` ``(text, text_pair)`` entries of a .txt or .jsonl file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationDataError(f"cannot read text calibration file '{path}': {exc}") from exc
    jsonl = path.suffix.lower() == ".jsonl"
    texts: list[tuple[str, str | None]] = []
    for lineno, line in enumerate(lines, 1):
        if len(texts) >= limit:
            break
        if not line.strip():
            continue
        if not jsonl:
            texts.append((line, None))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CalibrationDataError(f"'{path}' line {lineno} is not valid JSON ({exc.msg}); expected one object per line") from None
        text = obj.get("text") if isinstance(obj, dict) else None
        pair = obj.get("text_pair") if isinstance(obj, dict) else None
        if not isinstance(text, str) or (pair is not None and not isinstance(pair, str)):
            raise CalibrationDataError(
                f"'{path}' line {lineno} has no string 'text'; expected {{\"text\": ...}} or {{\"text\": ..., \"text_pair\": ...}}"
            )
        texts.append((text, pair))
    if not texts:
        raise CalibrationDataError(f"text calibration file '{path}' holds no texts; expected one per line")
    return texts


def _load_tokenizer(tokenizer_dir: Path | None, path: Path):
    if tokenizer_dir is None:
        raise CalibrationDataError(
            f"text calibration data '{path}' needs a tokenizer, and the model has none; "
            "expected a model folder with tokenizer files (or give .npz data with the input ids)"
        )
    from edgec._deps import require

    transformers = require("transformers", "export")
    try:
        return transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError... for bad folders
        raise CalibrationDataError(f"cannot load a tokenizer from '{tokenizer_dir}': {exc}") from exc


def read_text_rows(path: Path, inputs: "list[TensorSpec]", limit: int, tokenizer_dir: Path | None) -> Rows:
    """Tokenized rows (no batch axis) for each of the model's text inputs."""
    unknown = [s.name for s in inputs if s.name not in TEXT_INPUTS]
    if unknown or "input_ids" not in {s.name for s in inputs}:
        raise CalibrationDataError(
            f"text calibration data feeds inputs named {', '.join(TEXT_INPUTS)}; the model has "
            f"{', '.join(repr(s.name) for s in inputs)} (use .npz data)"
        )
    ids_spec = next(s for s in inputs if s.name == "input_ids")
    if len(ids_spec.shape) != 2:
        raise CalibrationDataError(
            f"model input 'input_ids' has shape {fmt_shape(ids_spec.shape)}; expected [batch, sequence] for text data"
        )
    texts = read_texts(path, limit)
    tok = _load_tokenizer(tokenizer_dir, path)
    seq = ids_spec.shape[1]
    kw: dict = {"truncation": True}
    if isinstance(seq, int) and seq > 0:
        kw.update(padding="max_length", max_length=seq)
    else:
        max_len = getattr(tok, "model_max_length", None)
        if isinstance(max_len, int) and max_len < 1_000_000:
            kw["max_length"] = max_len
        else:
            kw["truncation"] = False
        if batch_size(ids_spec) > 1:
            # Samples of several rows need one length: the longest text's.
            longest = max(len(_encode(tok, t, p, dict(kw), path)["input_ids"]) for t, p in texts)
            kw.update(padding="max_length", max_length=longest, truncation=True)

    rows: Rows = {s.name: [] for s in inputs}
    for text, pair in texts:
        enc = _encode(tok, text, pair, kw, path)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        produced = {
            "input_ids": ids,
            "attention_mask": np.asarray(enc.get("attention_mask", np.ones_like(ids)), dtype=np.int64),
            "token_type_ids": np.asarray(enc.get("token_type_ids", np.zeros_like(ids)), dtype=np.int64),
            "position_ids": np.arange(ids.size, dtype=np.int64),
        }
        for s in inputs:
            rows[s.name].append(produced[s.name].astype(s.np_dtype))
    return rows


def _encode(tok, text: str, pair: str | None, kw: dict, path: Path) -> dict:
    try:
        return dict(tok(text, pair, **kw))
    except Exception as exc:  # e.g. padding asked of a tokenizer without a pad token
        raise CalibrationDataError(f"the tokenizer failed on a text of '{path}': {exc}") from exc
