"""Run the bad inputs of issue 10 through the real `edgec` CLI and classify each outcome.

Classes: ``clean`` (non-zero exit, exactly one ``error:`` line, no traceback, user files intact,
no code run), ``internal`` (``internal error`` / exit 70), ``traceback`` (a traceback or more
than one line of chatter on stderr), ``wrong-success`` (exit 0 where the input is bad, or a
user file deleted), ``code-executed`` (a marker file written by a payload exists).

    python benchmarks/bad_inputs.py [--only SUBSTRING] [--keep]

Prints a table per case and the counts, and writes ``benchmarks/results/bad_inputs.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import print_table, write_json  # noqa: E402
from tests.cli_subprocess import conv_onnx as _conv_onnx  # noqa: E402 - the same models as the tests

CLASSES = ("clean", "internal", "traceback", "wrong-success", "code-executed")
EDGEC = [sys.executable, "-m", "edgec"]


@dataclass
class Case:
    name: str
    args: list[str]
    expect_fail: bool = True
    marker: Path | None = None
    keep: list[Path] = field(default_factory=list)  # user files that must survive
    env: dict = field(default_factory=dict)


# -- inputs ---------------------------------------------------------------------------------------------
FACTORY = '''
import sys
import torch

class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 3)
    def forward(self, x):
        return torch.relu(self.lin(x))

def good():
    torch.manual_seed(0)
    return M().eval(), (torch.randn(1, 6),)

def returns_str():
    return "not a model"

def wrong_shape():
    return M().eval(), (torch.randn(1, 5),)

def exits():
    sys.exit(3)

def raises():
    raise ValueError("boom")
'''


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _pt2_files(work: Path, marker: Path) -> dict[str, Path]:
    import torch

    spec = {}
    exec(FACTORY, spec)  # noqa: S102 - our own factory source
    net, ex = spec["good"]()
    good = work / "good.pt2"
    torch.export.save(torch.export.export(net, ex), str(good))

    def rewrite(dst: Path, edit: Callable[[str, bytes], bytes]) -> Path:
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(dst, "w") as zout:
            for info in zin.infolist():
                zout.writestr(info, edit(info.filename, zin.read(info.filename)))
        return dst

    def pickled(obj) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    def weights(name, data):
        if name.endswith("model_weights_config.json"):
            cfg = json.loads(data)
            for e in cfg["config"].values():
                e["use_pickle"] = True
            return json.dumps(cfg).encode()
        return pickled(_Payload(str(marker))) if "/data/weights/weight_" in name else data

    junk = work / "junk.pt2"
    junk.write_bytes(os.urandom(4096))
    return {
        "evil_sample": rewrite(work / "evil_sample.pt2", lambda n, d: pickled(
            ((torch.randn(1, 6), _Payload(str(marker))), {})) if "sample_inputs" in n else d),
        "evil_weights": rewrite(work / "evil_weights.pt2", weights),
        "junk": junk,
        "broken": rewrite(work / "broken.pt2", lambda n, d: d[: len(d) // 3] if n.endswith("model.json") else d),
    }


def _cases(work: Path) -> list[Case]:
    marker = work / "PWNED"
    conv = _conv_onnx(work / "conv.onnx")
    nan_w = _conv_onnx(work / "nan_w.onnx", weight_fill=float("nan"))
    inf_w = _conv_onnx(work / "inf_w.onnx", weight_fill=float("inf"))
    zero_dim = _conv_onnx(work / "zero_dim.onnx", shape=(1, 3, 0, 8))
    dyn = _conv_onnx(work / "dyn.onnx", dyn=True)
    dyn_hw = _conv_onnx(work / "dyn_hw.onnx", dyn_hw=True)
    rng = np.random.default_rng(0)
    good = rng.random((8, 1, 3, 8, 8), dtype=np.float32).reshape(8, 3, 8, 8)[:, None][:, 0]
    np.savez(work / "calib.npz", x=good)
    bad = good.copy()
    bad[3, 0, 0, 0] = np.nan
    np.savez(work / "nan_calib.npz", x=bad)
    bad = good.copy()
    bad[5, 1, 2, 2] = np.inf
    np.savez(work / "inf_calib.npz", x=bad)
    np.savez(work / "str_calib.npz", x=np.array(["a", "b"]))
    np.savez(work / "wrong_shape.npz", x=good[:, :, :4])
    np.savez(work / "wrong_key.npz", y=good)
    (work / "factory.py").write_text(FACTORY)
    pt2 = _pt2_files(work, marker)
    text = work / "notes.onnx"
    text.write_text("hello")
    trunc = work / "trunc.onnx"
    trunc.write_bytes(conv.read_bytes()[:200])
    afile = work / "a_file"
    afile.write_text("x")
    # Pickle payloads where edgec reads data or weights: .npy/.npz calibration, an HF .bin checkpoint.
    payload = pickle.dumps(_Payload(str(marker)))
    np.save(work / "evil.npy", np.array([_Payload(str(marker))], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(work / "evil.npz", "w") as z:
        z.writestr("x.npy", (work / "evil.npy").read_bytes())
    hf = _mkdir(work / "hf_pickle")
    (hf / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    (hf / "pytorch_model.bin").write_bytes(payload)
    (work / "junk.tflite").write_bytes(os.urandom(2048))

    # A folder holding the model, the data and a user's file, used as -o with --force.
    user = work / "user"
    user.mkdir()
    shutil.copy(conv, user / "model.onnx")
    shutil.copy(work / "calib.npz", user / "calib.npz")
    (user / "notes.txt").write_text("mine")

    fast = ["--target", "onnxruntime", "--precision", "fp32"]
    out = str(work / "out")
    c = [
        Case("onnx: missing file", ["build", str(work / "nope.onnx"), "-o", out]),
        Case("onnx: text file", ["build", str(text), "-o", out]),
        Case("onnx: truncated", ["build", str(trunc), "-o", out]),
        Case("onnx: empty", ["build", str(_touch(work / "empty.onnx")), "-o", out]),
        Case("model: unknown suffix", ["build", str(afile), "-o", out]),
        Case("model: empty folder", ["build", str(_mkdir(work / "emptydir")), "-o", out]),
        Case("inspect: truncated onnx", ["inspect", str(trunc)]),
        Case("tflite: random bytes", ["build", str(work / "junk.tflite"), "--target", "mcu", "-o", out]),
        Case("calib: pickled .npy with a payload", ["build", str(conv), "--calib", str(work / "evil.npy"), "-o", out],
             marker=marker),
        Case("calib: pickled .npz with a payload", ["build", str(conv), "--calib", str(work / "evil.npz"), "-o", out],
             marker=marker),
        Case("hf: pickled pytorch_model.bin with a payload", ["build", str(hf), "-o", out], marker=marker),
        Case("pt2: pickle payload in sample inputs (build)", ["build", str(pt2["evil_sample"]), *fast, "-o", out],
             marker=marker),
        Case("pt2: pickle payload in sample inputs (inspect)", ["inspect", str(pt2["evil_sample"])], marker=marker),
        Case("pt2: pickle payload in weights (build)", ["build", str(pt2["evil_weights"]), *fast, "-o", out],
             marker=marker),
        Case("pt2: pickle payload in weights (inspect)", ["inspect", str(pt2["evil_weights"])], marker=marker),
        Case("pt2: random bytes", ["build", str(pt2["junk"]), "-o", out]),
        Case("pt2: broken archive", ["inspect", str(pt2["broken"])]),
        Case("factory: returns a str", ["build", f"{work / 'factory.py'}:returns_str", "-o", out]),
        Case("factory: wrong example shape", ["build", f"{work / 'factory.py'}:wrong_shape", "-o", out]),
        Case("factory: sys.exit(3)", ["build", f"{work / 'factory.py'}:exits", "-o", out]),
        Case("factory: raises", ["build", f"{work / 'factory.py'}:raises", "-o", out]),
        Case("factory: no such function", ["build", f"{work / 'factory.py'}:nope", "-o", out]),
        Case("weights: NaN (onnxruntime)", ["build", str(nan_w), *fast, "-o", out]),
        Case("weights: NaN (intel-cpu int8)", ["build", str(nan_w), "--calib", str(work / "calib.npz"), "-o", out]),
        Case("weights: Inf (mcu)", ["build", str(inf_w), "--target", "mcu", "--calib", str(work / "calib.npz"),
                                   "-o", out]),
        Case("calib: NaN sample", ["build", str(conv), "--calib", str(work / "nan_calib.npz"), "-o", out]),
        Case("calib: Inf sample (mcu)", ["build", str(conv), "--target", "mcu", "--calib", str(work / "inf_calib.npz"),
                                        "-o", out]),
        Case("calib: string dtype", ["build", str(conv), "--calib", str(work / "str_calib.npz"), "-o", out]),
        Case("calib: wrong shape", ["build", str(conv), "--calib", str(work / "wrong_shape.npz"), "-o", out]),
        Case("calib: wrong key", ["build", str(conv), "--calib", str(work / "wrong_key.npz"), "-o", out]),
        Case("eval: wrong shape", ["build", str(conv), "--calib", str(work / "calib.npz"),
                                   "--eval", str(work / "wrong_shape.npz"), "-o", out]),
        Case("eval: NaN sample", ["build", str(conv), "--calib", str(work / "calib.npz"),
                                  "--eval", str(work / "nan_calib.npz"), "-o", out]),
        Case("shape: 1x3x100000x100000", ["build", str(dyn_hw), "--input-shape", "x=1x3x100000x100000",
                                          "--calib", "random", "-o", out]),
        Case("shape: zero-size dim", ["build", str(zero_dim), "--calib", "random", "-o", out]),
        # A dynamic batch axis defaults to 1 (issue 12); success is the right answer here.
        Case("shape: dynamic batch, no --input-shape", ["build", str(dyn), "--calib", "random", "-o", out],
             expect_fail=False),
        Case("shape: dynamic H/W, no --input-shape", ["build", str(dyn_hw), "--calib", "random", "-o", out]),
        Case("shape: bad syntax", ["build", str(dyn), "--input-shape", "x=1xAx3", "-o", out]),
        Case("-o existing_file/sub", ["build", str(conv), *fast, "-o", str(afile / "sub")], keep=[afile]),
        Case("-o /proc/x", ["build", str(conv), *fast, "-o", "/proc/edgec-x"]),
        Case("-o ''", ["build", str(conv), *fast, "-o", "", "--force"]),
        Case("--force on the folder holding the inputs", ["build", str(user / "model.onnx"), *fast, "--calib",
                                                          str(user / "calib.npz"), "-o", str(user), "--force"],
             keep=[user / "model.onnx", user / "calib.npz", user / "notes.txt"]),
        Case("--force on a non-bundle folder", ["build", str(conv), *fast, "-o", str(_mkdir(work / "photos")),
                                                "--force"], keep=[_touch(work / "photos" / "a.jpg")]),
        Case("--flash-budget 0", ["build", str(conv), "--target", "mcu", "--calib", "random", "--flash-budget", "0",
                                  "-o", out]),
        Case("--ram-budget 0", ["build", str(conv), "--target", "mcu", "--calib", "random", "--ram-budget", "0",
                                "-o", out]),
        Case("--ram-budget 1 (too small)", ["build", str(conv), "--target", "mcu", "--calib", "random",
                                            "--ram-budget", "1", "-o", out]),
        Case("unknown target", ["build", str(conv), "--target", "gpu9000", "-o", out]),
        Case("bad precision", ["build", str(conv), "--target", "mcu", "--precision", "fp16", "-o", out]),
        Case("verify: not a bundle", ["verify", str(work), "--data", "random"]),
        Case("bench: not a bundle", ["bench", str(work)]),
        Case("inspect: missing", ["inspect", str(work / "nope.onnx")]),
    ]
    return c + _bundle_cases(work, conv, marker)


def _bundle_cases(work: Path, conv: Path, marker: Path) -> list[Case]:
    """Cases on built bundles: tampered artifacts, a verify that measures a bad result."""
    cases = []
    ov = work / "ov_bundle"
    if _run(["build", str(conv), "--calib", str(work / "calib.npz"), "-o", str(ov)]).returncode == 0:
        garbage = work / "ov_garbage"
        shutil.copytree(ov, garbage)
        (garbage / "model.bin").write_bytes(os.urandom((garbage / "model.bin").stat().st_size))
        _rehash(garbage)
        cases.append(Case("bench: garbage model.bin (sha256 updated)", ["bench", str(garbage), "--iters", "2"]))
        cases.append(Case("verify: garbage model.bin (sha256 updated)", ["verify", str(garbage), "--data",
                                                                         str(work / "calib.npz")]))
        tampered = work / "ov_tampered"
        shutil.copytree(ov, tampered)
        (tampered / "model.bin").write_bytes(b"x")
        cases.append(Case("verify: model.bin changed (sha256 not updated)", ["verify", str(tampered), "--data",
                                                                              "random"]))
        far = np.random.default_rng(1).random((8, 3, 8, 8), dtype=np.float32) * 50 - 25
        np.savez(work / "far.npz", x=far)
        cases.append(Case("verify: data far outside calibration (low cosine)",
                          ["verify", str(ov), "--data", str(work / "far.npz")]))
    mcu = work / "mcu_bundle"
    if shutil.which("gcc") and _run(["build", str(conv), "--target", "mcu", "--calib", str(work / "calib.npz"),
                                     "-o", str(mcu)]).returncode == 0:
        xdg = work / "xdg"
        env = {"XDG_CACHE_HOME": str(xdg), "EDGEC_CACHE_DIR": ""}
        _run(["verify", str(mcu), "--data", "random"], env)
        evil_c = work / "evil.c"
        evil_c.write_text('#include <stdio.h>\n__attribute__((constructor)) static void p(void)'
                          f'{{FILE*f=fopen("{marker}","w");if(f){{fputs("x",f);fclose(f);}}}}\n'
                          "int edgec_model_run(void**a,void**b){(void)a;(void)b;return 0;}\n")
        evil = work / "evil.so"
        subprocess.run(["gcc", "-shared", "-fPIC", str(evil_c), "-o", str(evil)], check=True)
        for lib in list(xdg.rglob("host-*.so")) + list(Path(tempfile.gettempdir()).glob(
                f"edgec-cache-{os.getuid()}/mcu/host-*.so")):
            shutil.copyfile(evil, lib)
        cases.append(Case("mcu: planted host library in the cache", ["verify", str(mcu), "--data", "random"],
                          marker=marker, env=env))
        shared = work / "shared_tmp"
        planted_root = _mkdir(shared / f"edgec-cache-{os.getuid()}")
        os.chmod(planted_root, 0o777)
        cases.append(Case("mcu: cache folder pre-created by another user",
                          ["verify", str(mcu), "--data", "random"], marker=marker,
                          env={"XDG_CACHE_HOME": str(_open_dir(work / "xdg_open")), "EDGEC_CACHE_DIR": "",
                               "TMPDIR": str(shared)}))
    return cases


def _open_dir(path: Path) -> Path:
    (path / "edgec").mkdir(parents=True, exist_ok=True)
    os.chmod(path / "edgec", 0o777)
    if os.geteuid() == 0:
        os.chown(path / "edgec", 65534, 65534)
    return path


def _rehash(bundle: Path) -> None:
    import hashlib

    m = json.loads((bundle / "manifest.json").read_text())
    for e in m["files"]:
        data = (bundle / e["path"]).read_bytes()
        e["sha256"], e["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
    return p


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGEC, *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})


def classify(case: Case, proc: subprocess.CompletedProcess, snapshot: dict[Path, bytes]) -> str:
    """One of CLASSES for a finished run."""
    if case.marker is not None and case.marker.exists():
        return "code-executed"
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    if proc.returncode == 70 or "internal error" in proc.stderr:
        return "internal"
    if "Traceback" in proc.stderr or (proc.returncode != 0 and len(lines) != 1):
        return "traceback"
    if any(not p.exists() or p.read_bytes() != data for p, data in snapshot.items()):
        return "wrong-success"
    if case.expect_fail and proc.returncode == 0:
        return "wrong-success"
    if proc.returncode != 0 and not (lines and lines[0].startswith("error: ")):
        return "traceback"
    return "clean"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="run the cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgec-bad-inputs-"))
    rows, results = [], []
    try:
        for case in _cases(work):
            if args.only and args.only not in case.name:
                continue
            shutil.rmtree(work / "out", ignore_errors=True)
            if case.marker is not None and case.marker.exists():
                case.marker.unlink()
            snapshot = {p: p.read_bytes() for p in case.keep}
            t0 = time.perf_counter()
            proc = _run(case.args, case.env)
            cls = classify(case, proc, snapshot)
            err = proc.stderr.strip().splitlines()
            first = err[-1] if err else proc.stdout.strip().splitlines()[-1:] and "(exit 0)"
            rows.append([case.name, proc.returncode, cls, str(first)[:110]])
            results.append({"case": case.name, "exit": proc.returncode, "class": cls, "stderr": proc.stderr[-2000:],
                            "seconds": round(time.perf_counter() - t0, 1)})
            print(f"[{cls:>13}] {case.name}: {str(first)[:140]}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    counts = {c: sum(r["class"] == c for r in results) for c in CLASSES}
    print_table("bad inputs through the real CLI", ["case", "exit", "class", "last stderr line"], rows)
    print_table("counts", list(CLASSES) + ["total"], [[counts[c] for c in CLASSES] + [len(results)]])
    if not args.only:
        write_json("bad_inputs", {"counts": counts, "cases": results})


if __name__ == "__main__":
    main()
