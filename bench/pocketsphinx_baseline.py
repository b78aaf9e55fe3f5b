"""PocketSphinx (a 2015-era HMM recogniser with its bundled US-English model) on a manifest: the yardstick row.

    .venv/bin/pip install pocketsphinx==5.1.1        # not a project dependency: only this comparison needs it
    python bench/pocketsphinx_baseline.py data/real/test-commonvoice.jsonl [--json]

Each clip is read and resampled exactly as the project's own evaluation reads it (asr.data.dataset), PocketSphinx
decodes it as one utterance, and both transcripts are scored with the project's normaliser and jiwer, so the row
stands beside `python -m asr evaluate MANIFEST` on the same clips.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asr.data.dataset import SpeechDataset  # noqa: E402
from asr.data.manifest import read_manifest  # noqa: E402
from asr.evaluate import score  # noqa: E402
from asr.features import SAMPLE_RATE  # noqa: E402
from asr.text import normalize  # noqa: E402


def transcribe_all(manifest: Path) -> tuple[list[str], list[str], float, float]:
    """(references, hypotheses, audio seconds, decoding seconds) for every clip of the manifest."""
    try:
        from pocketsphinx import Decoder
    except ImportError:
        raise SystemExit("error: pocketsphinx is not installed: .venv/bin/pip install pocketsphinx==5.1.1") from None
    entries = read_manifest(manifest)
    loader = SpeechDataset(entries)
    decoder = Decoder(samprate=SAMPLE_RATE, logfn="/dev/null")
    references, hypotheses, audio_seconds, decode_seconds = [], [], 0.0, 0.0
    for entry in tqdm(entries, desc="pocketsphinx", unit="clip", disable=not sys.stderr.isatty()):
        samples = loader.load_waveform(entry).numpy()
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        started = time.perf_counter()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        decode_seconds += time.perf_counter() - started
        hypothesis = decoder.hyp()
        hypotheses.append(normalize(hypothesis.hypstr if hypothesis else ""))
        references.append(normalize(entry.text))
        audio_seconds += len(samples) / SAMPLE_RATE
    return references, hypotheses, audio_seconds, decode_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--json", action="store_true", help="print the row as JSON")
    args = parser.parse_args(argv)
    references, hypotheses, audio_seconds, decode_seconds = transcribe_all(args.manifest)
    row = {"decoder": "pocketsphinx", **score(references, hypotheses), "rtf": decode_seconds / max(audio_seconds, 1e-9),
           "utterances": len(references), "audio_hours": audio_seconds / 3600}
    if args.json:
        print(json.dumps(row))
    else:
        print(f"{'decoder':12s} {'WER %':>6s} {'CER %':>7s} {'RTF':>8s}")
        print(f"{row['decoder']:12s} {100 * row['wer']:6.2f} {100 * row['cer']:7.2f} {row['rtf']:8.4f}")
        print(f"{row['utterances']} utterances, {row['audio_hours']:.2f} h of audio, manifest {args.manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
