"""PyTorch -> ONNX export with a parity check against PyTorch itself."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from edgec._deps import require
from edgec.errors import ExportError

OPSET = 18


def normalize_example_inputs(module: Any, example: Any) -> dict[str, Any]:
    """Example inputs as an ordered ``{name: tensor}`` using forward()'s parameter names."""
    import inspect

    torch = require("torch", "export")
    if isinstance(example, Mapping):
        return dict(example)
    if isinstance(example, torch.Tensor):
        example = (example,)
    if not isinstance(example, (tuple, list)):
        raise ExportError(f"example inputs must be a tensor, tuple or dict of tensors, got {type(example).__name__}")
    try:
        params = [p for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        names = [p.name for p in params]
    except (TypeError, ValueError):
        names = []
    if len(names) < len(example):
        names = [f"input_{i}" for i in range(len(example))]
    return {names[i]: t for i, t in enumerate(example)}


def _output_names(outputs: Any) -> list[str]:
    if isinstance(outputs, Mapping):
        return list(outputs.keys())
    if isinstance(outputs, (tuple, list)):
        return ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    return ["output"]


def flatten_outputs(outputs: Any) -> list[np.ndarray]:
    """A PyTorch model's outputs (tensor, tuple, list, dict or ModelOutput, nested) as numpy arrays in order."""
    torch = require("torch", "export")
    if isinstance(outputs, torch.Tensor):
        return [outputs.detach().cpu().numpy()]
    if isinstance(outputs, Mapping):
        return [o for v in outputs.values() for o in flatten_outputs(v)]
    if isinstance(outputs, (tuple, list)):
        return [o for v in outputs for o in flatten_outputs(v)]
    if hasattr(outputs, "to_tuple"):
        return flatten_outputs(outputs.to_tuple())
    raise ExportError(f"cannot read model output of type {type(outputs).__name__}")


def export_module(module: Any, example: dict[str, Any], *, dynamic_axes: dict[str, dict[int, str]] | None = None,
                  output_names: list[str] | None = None) -> tuple[Any, str]:
    """Export ``module`` to an in-memory ONNX ModelProto.

    Tries the dynamo exporter first and falls back to the legacy TorchScript exporter.

    Returns:
        The ModelProto and the name of the exporter that produced it.
    """
    import onnx

    torch = require("torch", "export")
    try:
        module = module.eval()
    except NotImplementedError:
        pass  # the module of a loaded ExportedProgram is already frozen in inference form
    names = list(example)
    args = tuple(example.values())
    with torch.no_grad():
        ref = module(*args)
    out_names = output_names or _output_names(ref)
    errors = []
    for exporter in ("dynamo", "legacy"):
        try:
            with warnings.catch_warnings(), _quiet_torch_logs():
                warnings.simplefilter("ignore")
                if exporter == "dynamo":
                    dyn = None
                    if dynamic_axes:
                        dyn = {n: {ax: torch.export.Dim.AUTO for ax in axes} for n, axes in dynamic_axes.items()}
                    prog = torch.onnx.export(module, args, input_names=names, output_names=out_names,
                                             dynamo=True, external_data=False, opset_version=OPSET,
                                             dynamic_shapes=dyn, verbose=False, optimize=True)
                    proto = prog.model_proto
                else:
                    buf = io.BytesIO()
                    torch.onnx.export(module, args, buf, input_names=names, output_names=out_names,
                                      dynamo=False, opset_version=17, dynamic_axes=dynamic_axes,
                                      do_constant_folding=True)
                    proto = onnx.load_from_string(buf.getvalue())
            _clear_doc_strings(proto)
            return proto, exporter
        except Exception as exc:  # noqa: BLE001 - each exporter fails in its own ways; report both
            errors.append(f"{exporter}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    raise ExportError("torch.onnx export failed (" + "; ".join(errors) + ")")


def _clear_doc_strings(proto) -> None:
    # Exporters put stack traces with absolute paths into doc strings: they would make
    # bundles differ between checkouts.
    proto.doc_string = ""
    proto.graph.doc_string = ""
    for n in proto.graph.node:
        n.doc_string = ""
    for f in proto.functions:
        f.doc_string = ""
        for n in f.node:
            n.doc_string = ""
    del proto.metadata_props[:]


class _quiet_torch_logs:
    def __enter__(self):
        self._levels = {}
        for name in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript"):
            lg = logging.getLogger(name)
            self._levels[name] = lg.level
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for name, lvl in self._levels.items():
            logging.getLogger(name).setLevel(lvl)


def export_parity(module: Any, proto: Any, example: dict[str, Any]) -> float:
    """Max abs error between PyTorch and onnxruntime outputs on the example inputs."""
    from edgec.runtimes.onnxruntime_runner import make_session

    torch = require("torch", "export")
    with torch.no_grad():
        ref = flatten_outputs(module(*example.values()))
    sess = make_session(proto.SerializeToString())
    feed_names = [i.name for i in sess.get_inputs()]
    feeds = {n: example[n].detach().cpu().numpy() for n in feed_names if n in example}
    got = sess.run(None, feeds)
    if len(got) != len(ref):
        raise ExportError(f"exported ONNX has {len(got)} outputs, PyTorch returned {len(ref)}")
    return max(float(np.max(np.abs(g.astype(np.float64) - r.astype(np.float64)), initial=0.0))
               for g, r in zip(got, ref))
