#!/usr/bin/env bash
# Create .venv and install the harness. `scripts/setup.sh test` also installs the test tools.
# Without an NVIDIA GPU the CPU build of PyTorch is installed first, so the torch range in
# pyproject.toml is already satisfied and pip never pulls the multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
[ "${1:-}" = "test" ] && extras="[test]"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    .venv/bin/python -m pip install --quiet "torch>=2.4,<3"
  else
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
  fi
fi
.venv/bin/python -m pip install --quiet -e ".${extras}"
echo "setup done: $(.venv/bin/python -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)')"
