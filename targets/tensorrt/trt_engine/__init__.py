"""TensorRT engine building and running, shared by edgec and the bundle's scripts (a package).

This module is the single source of the on-device logic: ``edgec`` imports it (the
`TensorRTRunner`, ``edgec build --target jetson --engine``), and the bundle's
``build_engine.py`` / ``bench_trt.py`` import this package, which the bundle carries as
``trt_engine/`` (copied verbatim, with ``bench_stats.py`` and ``metrics.py`` from
``edgec/runtimes``: the same latency statistics and cosine as ``edgec bench``), so the scripts run on a Jetson with nothing but TensorRT's
Python API, numpy and the CUDA binding TensorRT's samples use (cuda-python; pycuda as a
fallback). Rules that keep that possible:

* import only the standard library and numpy at module level; ``tensorrt`` and the CUDA
  binding are imported lazily, after argument parsing (``--help`` and ``--dry-run``
  work without them);
* no ``edgec`` imports (`_shared` falls back to ``edgec.runtimes`` only inside edgec);
* one API for TensorRT 8.6 and 10.x: named I/O tensors (``set_input_shape``,
  ``set_tensor_address``, ``execute_async_v3``, all present since 8.5), the memory-pool
  workspace limit, ``build_serialized_network``; ``EXPLICIT_BATCH`` only before 10;
  precision builder flags only where the TensorRT version still has them.

The bench output follows edgec's ``edgec.bench/1`` schema (see
``edgec/runtimes/harness.py``).
"""

from __future__ import annotations

from .plan import (  # noqa: F401 - the package's API
    BENCH_SCHEMA,
    CHECK_FAILED_EXIT,
    ENGINE_CONFIG_SCHEMA,
    EngineError,
    MIN_COSINE,
    NO_TENSORRT_EXIT,
    TensorRTMissing,
    build_plan,
    builder_flags,
    load_config,
    parse_shape,
    parse_shape_arg,
    shape_str,
    trtexec_bench_command,
    trtexec_build_command,
)
from .results import (  # noqa: F401 - the package's API
    bench_result,
    check_outputs,
    load_reference,
)
from .device import (  # noqa: F401 - the package's API
    EngineSession,
    build_engine,
    gpu_available,
    import_tensorrt,
    synthetic_inputs,
    time_session,
    trt_major,
)
from .cli import (  # noqa: F401 - the package's API
    bench_arg_parser,
    bench_main,
    build_arg_parser,
    build_main,
)
from ._shared import cosine, latency_summary, peak_rss_bytes  # noqa: F401
