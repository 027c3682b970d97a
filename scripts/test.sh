#!/usr/bin/env bash
# Set up everything the tests need (Python packages and the cross toolchains), then run
# the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --toolchains
exec .venv/bin/python -m pytest -q "$@"
