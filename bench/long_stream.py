"""An hour through one Stream, full pipeline (features, model, greedy, beam + LM, endpointing).

Prints RSS and mean time per chunk minute by minute, then the growth of RSS from minute 1 to the end
(target: under 50 MB) and the ratio of time per chunk in the last minute to the first (target: flat).

    python bench/long_stream.py --minutes 60
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from asr.device import DEVICE_CHOICES  # noqa: E402
from asr.pretrained import BeamSettings, load_recognizer  # noqa: E402
from stream_bench import speech_like_audio  # noqa: E402


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--chunk-ms", type=int, default=400)
    parser.add_argument("--clip", default=None, help="a speech WAV to loop (default: a speech-like synthetic signal)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recognizer = load_recognizer(beam=BeamSettings(), device=args.device).recognizer
    if args.clip:
        import soundfile

        clip, rate = soundfile.read(args.clip, dtype="float32")
        assert rate == 16000, "use a 16 kHz clip"
        block = np.concatenate([clip, np.zeros(8000, np.float32)])  # a pause between repeats lets endpointing work
    else:
        block = speech_like_audio(60.0)
    stream = recognizer.create_stream()
    chunk = 16 * args.chunk_ms
    chunks_per_minute = 60_000 // args.chunk_ms
    position, rows, utterances = 0, [], 0
    print(f"{'minute':>6} {'RSS MB':>8} {'ms/chunk':>9} {'utterances':>11}")
    for minute in range(args.minutes):
        started = time.perf_counter()
        for _ in range(chunks_per_minute):
            piece = np.take(block, np.arange(position, position + chunk), mode="wrap")
            position = (position + chunk) % len(block)
            utterances += len(stream.accept(piece, 16000).finished)
        per_chunk_ms = 1000 * (time.perf_counter() - started) / chunks_per_minute
        rows.append((current_rss_mb(), per_chunk_ms))
        if minute in (0, 1) or (minute + 1) % 5 == 0:
            print(f"{minute + 1:>6} {rows[-1][0]:>8.1f} {per_chunk_ms:>9.2f} {utterances:>11}", flush=True)
    growth = rows[-1][0] - rows[0][0]
    ratio = rows[-1][1] / rows[0][1]
    print(f"RSS growth minute 1 -> {args.minutes}: {growth:+.1f} MB (target < 50); time per chunk last/first minute: {ratio:.2f}; "
          f"{args.minutes * 60 / sum(r[1] * chunks_per_minute / 1000 for r in rows):.1f}x faster than real time overall")


if __name__ == "__main__":
    main()
