"""Errors that edgec reports to users.

Every user-facing failure is an `EdgecError` whose message is one line: the CLI prints it
as ``error: <message>`` and exits non-zero. Anything else escaping is a bug in edgec.
"""

from __future__ import annotations


class EdgecError(Exception):
    """A failure caused by the user's input or environment, reported as one line."""

    exit_code = 1

    def __str__(self) -> str:
        # Keep the message on one line whatever callers pass in.
        return " ".join(super().__str__().split())


class ModelLoadError(EdgecError):
    """The model file or folder cannot be read, is corrupt, or is no model at all."""


class ExportError(EdgecError):
    """A PyTorch model could not be exported to ONNX, or the export does not match PyTorch."""


class UnsupportedOpError(EdgecError):
    """A node that the chosen target cannot run.

    Args:
        op_type: The ONNX (or TFLite) operator type.
        node: The node's name in the graph.
        target: The target's canonical name.
        hint: What the user can do about it.
    """

    def __init__(self, op_type: str, node: str, target: str, hint: str | None = None):
        self.op_type, self.node, self.target = op_type, node, target
        msg = f"op {op_type} (node '{node}') is not supported by target '{target}'"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class CalibrationDataError(EdgecError):
    """Calibration or evaluation data whose names, shapes or dtypes do not fit the model."""


class ConfigError(EdgecError):
    """An option value or a combination of options that makes no sense."""


class MissingDependencyError(EdgecError):
    """An optional dependency is not installed.

    Args:
        what: The module or tool that is missing.
        extra: The ``edgec[extra]`` that installs it, if any.
        hint: A different fix (for system tools such as compilers).
    """

    exit_code = 3

    def __init__(self, what: str, extra: str | None = None, hint: str | None = None, *, message: str | None = None):
        self.what, self.extra = what, extra
        if message is not None:
            super().__init__(message)
            return
        msg = f"{what} is not installed"
        if extra:
            msg += f": pip install 'edgec[{extra}]'"
        if hint:
            msg += f" ({hint})" if extra else f": {hint}"
        super().__init__(msg)


class BudgetError(EdgecError):
    """The model does not fit the target's memory budget."""


class AccuracyError(EdgecError):
    """The compiled model's error against the float model exceeds the allowed bound."""


class BundleError(EdgecError):
    """A bundle folder that is missing, incomplete or from an incompatible edgec."""
