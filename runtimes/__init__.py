"""Runners that load bundle artifacts, and the shared bench/compare harness."""
