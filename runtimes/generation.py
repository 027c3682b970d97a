"""Stateful decoder sessions and the one `generate` written over them.

A generation bundle's manifest has ``methods`` (``prefill`` and ``decode``), ``state`` (the KV
cache tensors) and ``generation`` (tokenizer files, end-of-sequence ids, chat template). A
`DecoderSession` runs those methods with the state kept between calls:

- ``reset()`` empties the state;
- ``prefill(ids)`` appends a prompt's tokens and returns their logits ``[len(ids), vocab]``;
- ``decode(token)`` appends one token and returns its next-token logits ``[vocab]``.

Each runner that runs generation bundles names its session class (`Runner.decoder_session`).
"""

from __future__ import annotations

import importlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import BundleError

class DecoderSession:
    """Base of the stateful sessions. Subclasses implement `_load` and `_step`."""

    def __init__(self, bundle: Path, manifest: dict[str, Any], threads: int | None = None):
        self.bundle, self.manifest, self.threads = Path(bundle), manifest, threads
        self.state_spec = manifest["state"]
        self.position = 0
        t0 = time.perf_counter()
        self._load()
        self.load_seconds = time.perf_counter() - t0
        self.reset()

    def _load(self) -> None:
        raise NotImplementedError

    def _step(self, ids: np.ndarray) -> np.ndarray:
        """Run ``ids [S]`` at positions ``position..position+S`` -> logits ``[S, vocab]``."""
        raise NotImplementedError

    def reset(self) -> None:
        self.position = 0

    def _step_last(self, ids: np.ndarray) -> np.ndarray:
        """Like `_step`, but only the last position's logits ``[1, vocab]`` are needed."""
        return self._step(ids)[-1:]

    def prefill(self, ids, last_only: bool = False) -> np.ndarray:
        """Append ``ids``; their logits ``[S, vocab]`` (``[1, vocab]``, the last, with ``last_only``)."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        logits = self._step_last(ids) if last_only else self._step(ids)
        self.position += len(ids)
        return logits

    def decode(self, token: int) -> np.ndarray:
        return self.prefill([token], last_only=True)[-1]

    def kv_cache_bytes(self) -> int:
        """Bytes the KV cache holds at the current position."""
        per = sum(int(np.prod([d for d in s["shape"] if isinstance(d, int)])) * np.dtype(s["dtype"]).itemsize
                  for s in self.state_spec)
        return per * self.position


@dataclass
class Generation:
    """Tokens generated and their timing (seconds)."""

    tokens: list[int]
    ttft: float
    token_times: list[float] = field(default_factory=list)
    prompt_tokens: int = 0


def generate(session: DecoderSession, prompt_ids, max_new_tokens: int, eos_ids=()) -> Generation:
    """Greedy generation: prefill the prompt, then decode until ``max_new_tokens`` or an end token."""
    eos = set(int(e) for e in eos_ids)
    session.reset()
    t0 = time.perf_counter()
    token = int(np.argmax(session.prefill(prompt_ids, last_only=True)[-1]))
    out = Generation([token], time.perf_counter() - t0, prompt_tokens=len(prompt_ids))
    while len(out.tokens) < max_new_tokens and token not in eos:
        t = time.perf_counter()
        token = int(np.argmax(session.decode(token)))
        out.token_times.append(time.perf_counter() - t)
        out.tokens.append(token)
    return out


def perplexity(session: DecoderSession, ids, window: int = 128) -> float:
    """Next-token perplexity of ``ids`` in independent windows of ``window`` tokens."""
    ids = np.asarray(ids, np.int64)
    nll, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start:start + window + 1]
        if len(chunk) < 2:
            break
        session.reset()
        logits = session.prefill(chunk[:-1]).astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        nll -= float(logp[np.arange(len(chunk) - 1), chunk[1:]].sum())
        count += len(chunk) - 1
    return math.exp(nll / max(count, 1))


def read_manifest(bundle: Path) -> dict[str, Any]:
    path = Path(bundle) / "manifest.json"
    if not path.is_file():
        raise BundleError(f"{bundle}: not a bundle (no manifest.json)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if "methods" not in manifest or "state" not in manifest:
        raise BundleError(f"{bundle}: not a generation bundle (build a causal LM folder without --input-shape)")
    return manifest


def open_session(bundle: Path, threads: int | None = None) -> DecoderSession:
    """The decoder session of the bundle's runner."""
    from edgec.runtimes.registry import RUNNERS

    manifest = read_manifest(bundle)
    runner = manifest["runner"]
    path = RUNNERS.load(runner).decoder_session if runner in RUNNERS else None
    if path is None:
        raise BundleError(f"{bundle}: runner '{manifest['runner']}' has no generation session")
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(module), cls)(Path(bundle), manifest, threads)


class BundleTokenizer:
    """The bundle's ``tokenizer.json`` (HF tokenizers) plus its chat template."""

    def __init__(self, bundle: Path, manifest: dict[str, Any]):
        from edgec._deps import require

        tokenizers = require("tokenizers", "export")
        gen = manifest["generation"]
        self.tok = tokenizers.Tokenizer.from_file(str(Path(bundle) / gen["tokenizer"]))
        self.eos_ids = list(gen.get("eos_token_id") or [])
        self.bos_id = gen.get("bos_token_id")
        self.chat_template = gen.get("chat_template")
        self.add_bos = bool(gen.get("add_bos_token"))

    def encode(self, text: str, chat: bool = True) -> list[int]:
        if chat and self.chat_template:
            text = self.render_chat(text)
        ids = self.tok.encode(text, add_special_tokens=False).ids
        if self.add_bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [self.bos_id, *ids]
        return ids

    def render_chat(self, prompt: str) -> str:
        import jinja2

        env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
        env.globals["raise_exception"] = _raise
        return env.from_string(self.chat_template).render(
            messages=[{"role": "user", "content": prompt}], add_generation_prompt=True, bos_token="",
            eos_token="")

    def decode(self, ids) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)


def _raise(msg: str):
    raise BundleError(f"chat template: {msg}")


def bench_generation(bundle: Path, prompt_tokens: int = 128, new_tokens: int = 128, threads: int | None = None,
                     repeat: int = 3, warmup: int = 1) -> dict[str, Any]:
    """Load time, TTFT, TPOT (median/p90), tokens/s, peak RSS and KV-cache bytes (``edgec.bench/1``).

    The prompt is ``prompt_tokens`` fixed token ids; decoding always runs ``new_tokens`` steps
    (end tokens are ignored) so every run does the same work.
    """
    from edgec._deps import version_of
    from edgec.runtimes.harness import BENCH_SCHEMA, latency_summary, peak_rss_bytes

    session = open_session(bundle, threads)
    vocab = int(session.manifest["generation"]["vocab_size"])
    ids = [(37 * i + 11) % vocab for i in range(prompt_tokens)]
    runs = [generate(session, ids, new_tokens) for _ in range(warmup + repeat)][warmup:]
    ttft = [r.ttft for r in runs]
    tpot = [t for r in runs for t in r.token_times]
    decode_s = [sum(r.token_times) for r in runs]
    tps = float(np.median([len(r.token_times) / s for r, s in zip(runs, decode_s) if s > 0])) if tpot else None
    ttft_ms, tpot_ms = latency_summary(ttft), latency_summary(tpot or [0.0])
    runner = session.manifest["runner"]
    return {
        "schema": BENCH_SCHEMA, "runner": runner, "runtime": {"name": runner, "version": version_of(runner)},
        "target": session.manifest.get("target"), "precision": session.manifest.get("precision"),
        "device": "host", "threads": threads, "warmup": warmup, "iters": repeat, "batch": 1,
        "latency_ms": tpot_ms, "throughput_per_s": tps, "peak_rss_bytes": peak_rss_bytes(),
        "extra": {},
        "generation": {
            "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "repeat": repeat,
            "load_s": session.load_seconds, "ttft_ms": {"p50": ttft_ms["p50"], "p90": ttft_ms["p90"]},
            "tpot_ms": {"p50": tpot_ms["p50"], "p90": tpot_ms["p90"], "mean": tpot_ms["mean"]},
            "tokens_per_s": tps, "kv_cache_bytes": session.kv_cache_bytes(),
        },
    }
