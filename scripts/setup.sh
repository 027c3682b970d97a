#!/usr/bin/env bash
# Set up .venv with edgec and every backend that installs on this machine.
#
#   scripts/setup.sh               Python packages only (torch CPU, onnx, OpenVINO, TFLite, ...)
#   scripts/setup.sh --toolchains  also the Debian cross toolchains the mcu tests need
#                                  (gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm)
#                                  and the corpus's font and voice (fonts-dejavu-core, espeak-ng)
#
# Re-running is cheap: the install is skipped while pyproject.toml and constraints.txt
# are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

toolchains=0
for arg in "$@"; do
  case "$arg" in
    --toolchains) toolchains=1 ;;
    *) echo "error: unknown option $arg" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

stamp_want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.edgec-stamp 2>/dev/null)" != "$stamp_want" ]; then
  echo "[setup] creating .venv with $PY" >&2
  "$PY" -m venv .venv
  # torch first, pinned: an unpinned torch (asked for by any later package) would pull
  # several GB of CUDA wheels; the constraints file keeps it at this CPU build.
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[all,dev]'
  echo "$stamp_want" > .venv/.edgec-stamp
else
  echo "[setup] .venv is up to date" >&2
fi

if [ "$toolchains" = 1 ]; then
  need=()
  command -v arm-none-eabi-gcc >/dev/null || need+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
  [ -e /usr/lib/arm-none-eabi/newlib/libc.a ] || [ -d /usr/lib/arm-none-eabi/newlib ] || need+=(libnewlib-arm-none-eabi)
  command -v qemu-system-arm >/dev/null || need+=(qemu-system-arm)
  command -v gcc >/dev/null || need+=(gcc libc6-dev)
  # The farm tests start a real sshd on 127.0.0.1 as an ssh:// device.
  [ -x /usr/sbin/sshd ] || need+=(openssh-server)
  # The real-model corpus (benchmarks/corpus): a TTF font to render OCR text lines, a voice for speech.
  [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
  command -v espeak-ng >/dev/null || need+=(espeak-ng)
  if [ "${#need[@]}" -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    echo "[setup] installing ${need[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
