#!/usr/bin/env bash
# The main job: set up, then build the bundled digits CNN for the default target
# (intel-cpu, INT8 OpenVINO IR) from real data, and print the report.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Writes calibration/eval data from scikit-learn's digits (the trained weights ship with the example).
.venv/bin/python examples/digits_cnn/model.py
.venv/bin/edgec build examples/digits_cnn/model.py:build \
  --calib examples/digits_cnn/_cache/calib.npz \
  --eval examples/digits_cnn/_cache/eval.npz \
  -o out/digits-int8 --force "$@"
