"""Streaming speed of the acoustic pipeline (features + model step + greedy) for `small` and `large`.

Prints, for each model and chunk size: real-time factor (audio seconds per compute second), the
median time per chunk (robust to other tenants of a shared machine) in the first minute of a stream and after `--minutes` of audio (their ratio
shows whether work per chunk grows with stream length), and the process's peak RSS.

    python bench/stream_bench.py --minutes 30
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from asr.device import DEVICE_CHOICES, resolve_device  # noqa: E402
from asr.features import FeatureConfig  # noqa: E402
from asr.model import NAMED_CONFIGS, DeepSpeech2  # noqa: E402
from asr.streaming import EndpointConfig, Recognizer  # noqa: E402


def speech_like_audio(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Syllable-rate modulated harmonic noise with pauses: exercises every stage like speech does."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.3 * t)
    voiced = np.sin(2 * np.pi * np.cumsum(pitch) / rate) + 0.3 * rng.standard_normal(t.size)
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.1 * t) > -0.5)
    return (0.2 * voiced * syllables).astype(np.float32)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_streams(recognizers: dict[str, Recognizer], minutes: float, chunk_ms: int) -> dict[str, dict]:
    """One stream per recognizer, fed the same chunks in turn (chunk i to each, then chunk i + 1), so a
    comparison between them sees the same moments of a shared machine's load."""
    rate, chunk = 16000, 16 * chunk_ms
    block = speech_like_audio(60.0)  # one minute, replayed: the stream itself never restarts
    streams = {label: recognizer.create_stream(EndpointConfig(enabled=True)) for label, recognizer in recognizers.items()}
    chunks_per_minute = len(block) // chunk
    first = {label: [] for label in streams}
    last = {label: [] for label in streams}
    total_compute = dict.fromkeys(streams, 0.0)
    total_chunks = int(minutes * chunks_per_minute)
    for index in range(total_chunks):
        offset = (index % chunks_per_minute) * chunk
        for label, stream in streams.items():
            started = time.perf_counter()
            stream.accept(block[offset : offset + chunk], rate)
            elapsed = time.perf_counter() - started
            total_compute[label] += elapsed
            if index < chunks_per_minute:
                first[label].append(elapsed)
            elif index >= total_chunks - chunks_per_minute:
                last[label].append(elapsed)
    audio_seconds = total_chunks * chunk / rate
    return {label: {"rtf_x": audio_seconds / total_compute[label], "first_ms": 1000 * np.median(first[label]),
                    "last_ms": 1000 * np.median(last[label] or first[label])} for label in streams}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="small,large")
    parser.add_argument("--chunks-ms", default="160,500")
    parser.add_argument("--minutes", type=float, default=30.0, help="stream length for the flatness check")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare-unfolded", action="store_true",
                        help="also run, chunk for chunk alongside, the model with its BatchNorms not folded (row 'name*')")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device {device}, {args.threads} threads, streams of {args.minutes:g} min, random-initialised weights (speed only)")
    print(f"{'model':<6} {'chunk':>6} {'x real time':>12} {'ms/chunk min 1':>15} {'ms/chunk last min':>18} {'ratio':>6} {'peak RSS MB':>12}")
    for name in args.models.split(","):
        model = DeepSpeech2(NAMED_CONFIGS[name]).eval()
        recognizers = {name: Recognizer(model, FeatureConfig(), beam_decoder=None, device=device)}  # folds BatchNorms
        if args.compare_unfolded:  # the Recognizer folds a copy; stepping `model` itself keeps its BatchNorms
            recognizers[name + "*"] = Recognizer(model, FeatureConfig(), beam_decoder=None, device=device, step_function=model.step)
        for chunk_ms in map(int, args.chunks_ms.split(",")):
            for label, result in run_streams(recognizers, args.minutes, chunk_ms).items():
                print(f"{label:<6} {chunk_ms:>4}ms {result['rtf_x']:>12.1f} {result['first_ms']:>15.2f} {result['last_ms']:>18.2f} "
                      f"{result['last_ms'] / result['first_ms']:>6.2f} {peak_rss_mb():>12.0f}", flush=True)


if __name__ == "__main__":
    main()
