#!/usr/bin/env bash
# On a machine with CUDA: the CUDA tests, then the Batch Dispatch bench for `small` and `large`
# with up to 256 concurrent streams. Bounded to about 5 minutes; everything lands in $OUT (or
# bench/gpu-out). Target for `large`: >= 100 concurrent real-time streams with p95 <= 100 ms.
#   bash bench/gpu_check.sh            # PYTHON=/path/to/python to use another interpreter
#   MODELS=small bash bench/gpu_check.sh   # bench only these configs (default: large small)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/gpu-out}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
started=$(date +%s)
log() { echo "[$(( $(date +%s) - started ))s] $*" | tee -a "$OUT/gpu_check.log"; }

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    log "CUDA is not available to $PYTHON; nothing to check here"
    exit 2
fi
{ nvidia-smi || true; "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"; } > "$OUT/device.txt" 2>&1
"$PYTHON" -c "import torchaudio, numpy, soundfile, pyctcdecode, kenlm" > "$OUT/imports.txt" 2>&1 \
    || log "some packages are missing (imports.txt); the tests need them, the bench falls back to random frames or greedy only"

log "CUDA tests"
timeout 120 "$PYTHON" -m pytest -q tests/test_model.py tests/test_dispatch.py -rs > "$OUT/tests.txt" 2>&1
log "tests exit status $? (tests.txt)"

# Paced runs of 3 s per stream plus up to 2 s of lag, capacity runs capped at 4 s: about 20 s per N.
# The bench starts no new N after --time-budget-s, so it reports what it measured; `timeout` is the backstop.
# Latency budget 100 ms: a stream counts as real time when its p95 is within it.
bench() {  # model, streams, pipeline streams, time budget in seconds
    log "bench $1: streams $2, pipeline $3"
    timeout $(( $4 + 60 )) "$PYTHON" bench/batch_bench.py --device cuda --model "$1" --streams "$2" --seconds 3 --grace-s 2 \
        --chunk-ms 160,400 --max-batch-size 256 --max-wait-ms 5 --budget-ms 100 --saturate-seconds 120 --saturate-limit-s 4 \
        --pipeline-streams "$3" --time-budget-s "$4" --json "$OUT/batch_$1.json" --report "$OUT/batch_$1.md" > "$OUT/batch_$1.txt" 2>&1
    log "bench $1 exit status $? (batch_$1.txt, batch_$1.md)"
}
for model in ${MODELS:-large small}; do
    case "$model" in
        large) bench large 1,16,64,128,256 "" 90 ;;
        small) bench small 1,16,64,128,256 64 70 ;;
        *) log "unknown model $model (large or small)" ;;
    esac
done
log "done"
