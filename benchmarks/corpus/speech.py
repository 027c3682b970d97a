"""Spoken sentences for the speech encoder: espeak-ng speaks, Whisper's feature extractor listens.

espeak-ng (Debian package ``espeak-ng``) writes a 22.05 kHz WAV of a real sentence; it is
resampled to 16 kHz and turned into the 80-bin log-mel [1, 80, 3000] Whisper expects.
Each sample is cached as .npy (the synthesis is deterministic but slow-ish).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from . import cache_dir, data


def speak(text: str) -> np.ndarray:
    """``text`` spoken by espeak-ng, as float32 mono at 16 kHz."""
    from scipy.signal import resample_poly

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError("espeak-ng not found: install the Debian package espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run([exe, "-w", str(wav), text], check=True, capture_output=True)
        with wave.open(str(wav)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
    g = np.gcd(16000, rate)
    return resample_poly(pcm, 16000 // g, rate // g).astype(np.float32)


def log_mel_sample(k: int) -> np.ndarray:
    """Sample ``k``: the log-mel features [1, 80, 3000] of sentence ``k``."""
    path = cache_dir() / "speech" / f"{k}.npy"
    if path.is_file():
        return np.load(path)
    from transformers import WhisperFeatureExtractor

    lines = data.sentences()
    audio = speak(lines[k % len(lines)])
    feats = WhisperFeatureExtractor()(audio, sampling_rate=16000, return_tensors="np").input_features
    feats = feats.astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{k}.tmp.npy")
    np.save(tmp, feats)
    tmp.replace(path)
    return feats
