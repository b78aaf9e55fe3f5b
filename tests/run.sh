#!/usr/bin/env bash
# Sets everything up on a fresh machine (system packages, .venv, KenLM tools), then runs the
# whole test suite, browser end-to-end tests included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash demo/setup.sh --tests
exec .venv/bin/python -m pytest -q tests "$@"
