#!/usr/bin/env bash
# The main job: set up, then build the bundled digits CNN for the default target
# (intel-cpu, INT8 OpenVINO IR) from real data, and print the report.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Trains the CNN on scikit-learn's digits once (cached) and writes calibration/eval data.
.venv/bin/python examples/digits_cnn/model.py
.venv/bin/edgec build examples/digits_cnn/model.py:build \
  --calib examples/digits_cnn/_cache/calib.npz \
  --eval examples/digits_cnn/_cache/eval.npz \
  -o out/digits-int8 --force "$@"
