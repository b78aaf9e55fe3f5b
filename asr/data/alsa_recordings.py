"""A real human voice that Debian ships: alsa-utils' speaker-test recordings -> manifest.

Every training and held-out voice of this project is synthetic. The one recording of a person
speaking English that the machine's packages carry is alsa-utils' channel test set (a woman
saying "front left", "rear center", ...: eight two-word clips, 48 kHz; festival pulls the
package in). Far too small to score a model by, it still shows how a real voice reads next to
the synthetic ones; the model card reports it as such.

    python -m asr.data.alsa_recordings --out data/alsa/real.jsonl [--sounds /usr/share/sounds/alsa]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.data.librispeech import audio_duration
from asr.data.manifest import ManifestEntry, write_manifest
from asr.text import normalize

DEFAULT_SOUNDS = Path("/usr/share/sounds/alsa")
# The clips that are speech: the file name is what is said (Noise.wav, the pink-noise test, is not speech).
SPOKEN_GLOB = "*_*.wav"


def build_entries(sounds: Path) -> list[ManifestEntry]:
    """One entry per spoken clip, its text read from the file name (Front_Left.wav -> "front left")."""
    clips = sorted(sounds.glob(SPOKEN_GLOB))
    if not clips:
        raise ValueError(f"{sounds}: no speaker-test recordings (*_*.wav) found; install Debian's alsa-utils")
    return [ManifestEntry(clip.resolve(), audio_duration(clip), normalize(clip.stem.replace("_", " "))) for clip in clips]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.data.alsa_recordings", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="manifest to write (JSON lines)")
    parser.add_argument("--sounds", type=Path, default=DEFAULT_SOUNDS, help="folder of the recordings")
    args = parser.parse_args(argv)
    try:
        entries = build_entries(args.sounds)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    write_manifest(args.out, entries)
    print(f"wrote {len(entries)} utterances ({sum(e.duration for e in entries):.1f} s) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
