"""LibriSpeech layout -> manifest: the real-data half of the training recipe.

Layout of one split (e.g. LibriSpeech/train-clean-100):
    ROOT/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   lines "<utterance-id> TEXT"
    ROOT/<speaker>/<chapter>/<utterance-id>.flac
Any corpus laid out the same way (Multilingual LibriSpeech English, LibriTTS-style exports)
goes through unchanged.

    python -m asr.data.librispeech ROOT --out MANIFEST [--max-duration SECONDS]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import soundfile
from tqdm import tqdm

from asr.data.manifest import ManifestEntry, write_manifest
from asr.text import normalize

TRANSCRIPT_GLOB = "*/*/*.trans.txt"
AUDIO_SUFFIX = ".flac"


def transcript_files(root: Path) -> list[Path]:
    """Every chapter's transcript under a split directory, in a stable order."""
    files = sorted(root.glob(TRANSCRIPT_GLOB))
    if not files:
        raise ValueError(f"{root}: no <speaker>/<chapter>/*.trans.txt found; point at one split, e.g. LibriSpeech/train-clean-100")
    return files


def read_transcript(path: Path) -> Iterator[tuple[Path, str]]:
    """(audio path, raw text) for each line of one chapter's transcript."""
    with open(path, encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            utterance_id, _, text = line.strip().partition(" ")
            if not text:
                raise ValueError(f"{path}:{line_number}: expected '<utterance-id> TEXT'")
            yield path.parent / f"{utterance_id}{AUDIO_SUFFIX}", text


def audio_duration(path: Path) -> float:
    """Seconds of audio from the file header alone (no decoding), so a 1000-hour scan stays quick."""
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise ValueError(f"{path}: cannot read audio ({error})") from None
    return info.frames / info.samplerate


def build_entries(root: Path, max_duration: float | None = None, progress: bool = False) -> tuple[list[ManifestEntry], int]:
    """Manifest entries of a split, and how many utterances were skipped (empty text or too long)."""
    entries, skipped = [], 0
    for transcript in tqdm(transcript_files(root), desc="chapters", unit="ch", disable=not progress):
        for audio, raw_text in read_transcript(transcript):
            text, duration = normalize(raw_text), audio_duration(audio)
            if not text or (max_duration is not None and duration > max_duration):
                skipped += 1
                continue
            entries.append(ManifestEntry(audio.resolve(), duration, text))
    return entries, skipped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the LibriSpeech import; shared with the main CLI."""
    parser.add_argument("root", type=Path, help="one split directory, e.g. LibriSpeech/train-clean-100")
    parser.add_argument("--out", type=Path, required=True, help="manifest to write (JSON lines)")
    parser.add_argument("--max-duration", type=float, default=None, help="skip utterances longer than this many seconds")


def run(args: argparse.Namespace) -> int:
    """Write the manifest; a one-line reason on stderr and status 1 when the input is unusable."""
    try:
        entries, skipped = build_entries(args.root, args.max_duration, progress=sys.stderr.isatty())
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    write_manifest(args.out, entries)
    hours = sum(entry.duration for entry in entries) / 3600
    print(f"wrote {len(entries)} utterances ({hours:.2f} h) to {args.out}; skipped {skipped}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.data.librispeech", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
