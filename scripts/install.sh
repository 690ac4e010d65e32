#!/bin/sh
# The README's set-up: a virtual environment in .venv with effnet installed from this checkout (editable), with the
# extras named by the argument (default: lite-weights; the tests use "test"). Then: . .venv/bin/activate
#
# torch: pip's default Linux wheel is the CUDA build (a venv of about 5.6 GB). On a machine without an NVIDIA GPU, torch
# comes from PyTorch's CPU-only index instead, if it can be reached within a few seconds; where it cannot (offline, a
# private mirror), pip takes torch from its configured indexes as usual. A torch already in .venv is kept as it is.
set -eu
cd "$(dirname "$0")/.."
extras="${1:-lite-weights}"
CPU_INDEX="https://download.pytorch.org/whl/cpu"

python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip

set --  # the extra pip options
if nvidia-smi -L >/dev/null 2>&1; then
    echo "install.sh: NVIDIA GPU found: torch's default (CUDA) build"
elif python -c "import torch" >/dev/null 2>&1; then
    echo "install.sh: no NVIDIA GPU; keeping the torch already in .venv"
elif python -c "import urllib.request; urllib.request.urlopen('$CPU_INDEX/torch/', timeout=5)" >/dev/null 2>&1; then
    echo "install.sh: no NVIDIA GPU: torch's CPU-only build from $CPU_INDEX"
    set -- --extra-index-url "$CPU_INDEX"  # its +cpu wheels rank above the same release's default build
else
    echo "install.sh: no NVIDIA GPU, and $CPU_INDEX cannot be reached: torch from pip's configured indexes"
fi
python -m pip install "$@" -e ".[$extras]"
