#!/usr/bin/env bash
# One-command set-up: a virtual environment in .venv (or $VENV) with lreorg-hub installed
# editable, its runtime and test requirements, and facenet-pytorch without its stale pins.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade pip
# torch first, from the exact pins (taken from local disk on this project's machines).
pip install -q torch==2.14.1 torchvision==0.29.1
pip install -q -r requirements.txt -r requirements-dev.txt
# facenet-pytorch pins torch<2.3 / numpy<2 in its metadata; --no-deps keeps our versions.
pip install -q --no-deps facenet-pytorch==2.6.0
pip install -q --no-deps -e .
"$VENV/bin/python" - <<'PY'
import torch, facenet_pytorch, open_clip, huggingface_hub, lreorg_hub
print(f"lreorg-hub {lreorg_hub.__version__} ready: torch {torch.__version__}, "
      f"huggingface_hub {huggingface_hub.__version__}, open_clip {open_clip.__version__}")
PY
