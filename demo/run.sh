#!/usr/bin/env bash
# Sets everything up on a fresh machine, then starts the demo on http://localhost:7860
# (GRADIO_SERVER_PORT and ASR_DEVICE are respected).
set -euo pipefail
cd "$(dirname "$0")/.."
bash demo/setup.sh
exec .venv/bin/python demo/app.py "$@"
