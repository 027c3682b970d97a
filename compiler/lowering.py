"""Lowering and verifying one candidate model into the bundle folder, and the manifest it gets.

`Lowering` is what the build's lower-and-verify stage calls once, and what the accuracy gate
(``--max-accuracy-drop``) drives with other quantized models until one fits.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgec import __version__
from edgec.compiler.manifest import Manifest
from edgec.compiler.model import ModelHandle
from edgec.compiler.packaging import copy_tokenizer, dependencies, jsonable_options, write_reference
from edgec.compiler.progress import Progress

if TYPE_CHECKING:
    from edgec.compiler.config import BuildConfig
    from edgec.compiler.pipeline import BuildState


class Lowering:
    """Lowers one quantized model (or the float one) into the bundle folder and verifies it.

    The accuracy gate calls it once per candidate; each call starts from an empty bundle
    folder and the passes as they were before quantization, so the bundle left in place is
    exactly the one last verified.

    Args:
        state: The build state after the quantize stage.
    """

    def __init__(self, state: "BuildState"):
        self.state = state
        self.base_passes = list(state.passes)
        self.base_options = dict(state.options)
        self.tries = 0
        # The float reference's outputs on the evaluation samples, from the first verification:
        # the float model does not change between the gate's candidates, so later ones replay them.
        self.reference_outputs: list[dict[str, Any]] | None = None
        self.reference_info: dict[str, Any] | None = None

    def __call__(self, quant: ModelHandle | None, keep_float: tuple[str, ...], quant_summary: dict[str, Any] | None,
                 store: bool = False, options: dict[str, Any] | None = None,
                 ) -> tuple[dict[str, Any], Any, dict[str, Any], Any]:
        """Lower ``quant`` (None: the float model), write the manifest, verify.

        Args:
            quant: The quantized model, or None.
            keep_float: Node names left in float (for the target's lowering).
            quant_summary: The quantize pass's config for the manifest, or None.
            store: Keep every output for the gate's metric.
            options: Target options replacing the build's for this lowering (a gate move).

        Returns:
            ``(manifest, lowered, accuracy, recorder)``.
        """
        from edgec.compiler.quality import OutputRecorder
        from edgec.targets.base import LowerSpec

        st = self.state
        handle, target, tmp = st.handle, st.target, st.tmp
        if self.tries:  # the accuracy gate lowers again: start from an empty bundle folder
            _clear_dir(tmp)
        self.tries += 1
        st.options = {**self.base_options, **(options or {})}
        passes = self.base_passes + ([{"name": "quantize", "config": quant_summary}] if quant_summary else [])
        spec = LowerSpec(precision=st.precision, float_model=handle, quant_model=quant, calibration=st.calibration,
                         ranges=st.ranges, options=st.options, input_profiles=input_profiles(st.config),
                         keep_float=keep_float, progress=st.progress,
                         accept_low_accuracy=st.config.gate.accept_low_accuracy)
        model = quant or handle
        target.check(model, spec).raise_if_unsupported()
        st.progress.message(f"lowering for {target.name} ({st.precision})")
        lowered = target.lower(model, spec, tmp)
        passes.extend(lowered.passes)
        st.passes = passes
        ref = write_reference(handle, tmp, quant)
        if handle.tokenizer_dir is not None:
            copy_tokenizer(handle.tokenizer_dir, tmp / "tokenizer")
        manifest = _manifest(st, lowered, ref)
        st.progress.message("verifying against the float model")
        recorder = OutputRecorder(store=store, perplexity=handle.task == "text-generation")
        replay = _Replay(self.reference_outputs, self.reference_info) if self.reference_outputs is not None else None
        accuracy = _verify(target, tmp, manifest, st.eval_samples, st.labels, st.progress, recorder, replay)
        accuracy.update(recorder.summary())
        if store and self.reference_outputs is None and recorder.ppl is None:
            self.reference_outputs = recorder.outputs["reference"]
            self.reference_info = {"name": accuracy["reference"]}
        return manifest, lowered, accuracy, recorder


def _manifest(st: "BuildState", lowered, ref: dict[str, str]) -> dict[str, Any]:
    handle, config, target, calibration = st.handle, st.config, st.target, st.calibration
    art = lowered.model_artifact
    return Manifest(
        edgec_version=__version__,
        target=target.name,
        precision=st.precision,
        runner=target.runner,
        artifact={"path": art.path, "kind": art.kind},
        artifacts=[{"path": a.path, "kind": a.kind, "role": a.role} for a in lowered.artifacts],
        source={"path": config.model, "sha256": handle.source_sha256, "kind": handle.meta.get("source_kind")},
        task=handle.task,
        model_inputs=[s.to_json() for s in handle.inputs],
        model_outputs=[s.to_json() for s in handle.outputs],
        inputs=[s.to_json() for s in lowered.inputs],
        outputs=[s.to_json() for s in lowered.outputs],
        io_names=_io_names(handle, lowered),
        reference=ref,
        tokenizer="tokenizer" if handle.tokenizer_dir is not None else None,
        passes=st.passes,
        calibration=({"method": config.int8.calib_method, "samples": len(calibration), "source": calibration.source,
                      "random": calibration.random} if calibration is not None else None),
        config=config.manifest_view() | {"precision": st.precision, "target_options": jsonable_options(st.options)},
        target_info=lowered.manifest,
        dependencies=dependencies(handle, target),
    ).to_json()


def _io_names(handle: ModelHandle, lowered) -> dict[str, dict[str, str]]:
    """Artifact I/O name -> model I/O name; every target keeps the model's order."""
    out = {}
    for kind, model_specs, art_specs in (("inputs", handle.inputs, lowered.inputs),
                                         ("outputs", handle.outputs, lowered.outputs)):
        if len(model_specs) == len(art_specs):
            out[kind] = {a.name: m.name for a, m in zip(art_specs, model_specs)}
    return out


class _Replay:
    """A reference runner that returns the outputs recorded by an earlier verification, in order."""

    def __init__(self, outputs: list[dict[str, Any]], info: dict[str, Any]):
        self._outputs, self._info, self._next = outputs, info, 0

    def infer(self, feeds):
        out = self._outputs[self._next]
        self._next += 1
        return out

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _verify(target, tmp: Path, manifest: dict[str, Any], samples: list[dict], labels, progress: Progress,
            recorder=None, replay: _Replay | None = None) -> dict[str, Any]:
    from edgec.runtimes.harness import compare
    from edgec.runtimes.registry import reference_runner

    runner = target.verify_runner(tmp, manifest)
    ref = replay or reference_runner(tmp, manifest)
    with runner, ref, progress.task("verifying", total=len(samples)) as t:
        got, want = (recorder.wrap(runner, "artifact"), recorder.wrap(ref, "reference")) if recorder else (runner, ref)
        acc = compare(got, want, samples, labels=labels, classification=is_classifier(manifest),
                      on_sample=lambda _: t.advance())
    acc["runner"] = runner.name
    return acc


CLASSIFICATION_TASKS = ("classification", "image-classification", "text-classification", "token-classification", "fill-mask",
                        "text-generation")


def is_classifier(manifest: dict[str, Any]) -> bool:
    """Whether top-1 agreement means something for this model's first output.

    The task (``--task``) decides when given; otherwise a 2-D first output is read as class scores,
    so regressors with 2-D outputs (landmarks, embeddings) need ``--task`` to be scored by cosine only.
    """
    task = manifest.get("task")
    if task is not None:
        return task in CLASSIFICATION_TASKS
    out = manifest["model_outputs"][0]
    return len(out["shape"]) == 2


def _clear_dir(folder: Path) -> None:
    for p in folder.iterdir():
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def input_profiles(config: "BuildConfig") -> dict[str, tuple]:
    return {n: (s.min, s.opt, s.max) for n, s in config.input_shapes.items() if s.is_profile}
