"""Latency statistics and cosine, one definition with ``edgec bench`` and ``edgec verify``.

Inside a jetson bundle ``bench_stats.py`` and ``metrics.py`` are copies of edgec's
``runtimes/bench_stats.py`` and ``runtimes/metrics.py`` next to this file; inside edgec
they are imported from ``edgec.runtimes``.
"""

from __future__ import annotations

try:
    from .bench_stats import latency_summary, peak_rss_bytes  # noqa: F401
    from .metrics import cosine  # noqa: F401
except ImportError:  # running from edgec's source tree
    from edgec.runtimes.bench_stats import latency_summary, peak_rss_bytes  # noqa: F401
    from edgec.runtimes.metrics import cosine  # noqa: F401
