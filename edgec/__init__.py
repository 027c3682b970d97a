"""edgec: compile trained models into verified, quantized bundles for edge targets.

`import edgec` is cheap: the functions below import their heavy dependencies on call.
"""

from edgec.errors import EdgecError

__version__ = "0.1.0"

__all__ = ["EdgecError", "__version__", "bench", "build", "inspect", "list_targets", "verify"]


def __getattr__(name):
    if name in ("build", "bench", "verify", "inspect", "list_targets"):
        from edgec import api

        return getattr(api, name)
    raise AttributeError(name)
