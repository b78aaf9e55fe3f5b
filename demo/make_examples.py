"""Writes demo/examples/*.wav: held-out sentences spoken by held-out voices, so the demo's examples are fair.

    python demo/make_examples.py

Sentences come from the test split of asr.data.sentences and voices from the test split of
asr.data.synth, so the model never trained on either. Clips are 16 kHz mono 16-bit, a few seconds each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

from asr.data.sentences import sentences_by_split  # noqa: E402
from asr.data.synth import SAMPLE_RATE, Utterance, Voice, render, speakable, voice_inventory  # noqa: E402

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
# (engine, voice, sentences): the last clip has two sentences with a pause, to show endpointing.
CLIPS = (("flite", "rms", 1), ("espeak", "en-us+linda", 1), ("espeak", "en-gb+f4", 1), ("flite", "rms", 1),
         ("espeak", "en-us+grandpa", 2))
MIN_WORDS, MAX_WORDS = 9, 14
PAUSE_SECONDS = 1.2


def main() -> int:
    held_out = {(v.engine, v.name) for v in voice_inventory() if v.split == "test"}
    assert all((engine, name) in held_out for engine, name, _ in CLIPS), "example voices must be test-split voices"
    sentences = [s for s in sentences_by_split()["test"] if MIN_WORDS <= len(s.split()) <= MAX_WORDS and speakable(s)]
    sentences.sort(key=lambda s: (len(s), s))  # a fixed, spread-out choice
    chosen = iter(sentences[:: max(1, len(sentences) // 20)])
    EXAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    entries = []
    for number, (engine, name, count) in enumerate(CLIPS, start=1):
        voice = Voice(engine, name, "test")
        texts = [next(chosen) for _ in range(count)]
        pause = np.zeros(int(PAUSE_SECONDS * SAMPLE_RATE), np.float32)
        pieces = [render(Utterance(f"example-{number}.wav", t, voice, stretch=1.0, semitones=0.0)) for t in texts]
        audio = np.concatenate([x for piece in pieces for x in (piece, pause)][:-1])
        text = " ".join(texts)
        file_name = f"example-{number}-{voice.id}.wav"
        soundfile.write(EXAMPLES_DIR / file_name, audio, SAMPLE_RATE, subtype="PCM_16")
        entries.append({"file": file_name, "text": text, "voice": f"{engine} {name}", "seconds": round(len(audio) / SAMPLE_RATE, 2)})
        print(f"{file_name}: {len(audio) / SAMPLE_RATE:.1f} s  {text}")
    (EXAMPLES_DIR / "examples.json").write_text(json.dumps(entries, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
