"""Real recorded speech -> manifest entries with their speakers: shared corpus manifests and Common Voice releases.

Two layouts are read:
- a corpus folder with `manifest.jsonl` whose lines carry `audio_filepath`, `text` (as published: any case,
  punctuation, digits), `speaker` and `duration` (what `../shared/speech/<corpus>/` holds);
- a Common Voice release: `ROOT/clips/*.mp3` and `ROOT/<split>.tsv` (`validated`, `train`, `dev`, `test`, ...)
  with the columns `client_id`, `path` and `sentence`; durations from `clip_durations.tsv` when the release has it.

Every text goes through `asr.text.normalize_spoken`: numbers are spelled out ("1984" -> "nineteen eighty four"),
and a clip whose digits no rule reads is dropped and counted, never kept with the number deleted.

    python -m asr commonvoice ROOT --split train --out MANIFEST
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from asr.data.librispeech import audio_duration
from asr.data.manifest import ManifestEntry, write_manifest
from asr.text import normalize_spoken

COMMON_VOICE_SPLITS = ("validated", "train", "dev", "test", "other", "invalidated")


@dataclass(frozen=True)
class Utterance:
    """A manifest entry with who said it and which corpus it comes from (what speaker-disjoint splits need)."""

    entry: ManifestEntry
    speaker: str
    corpus: str


@dataclass
class ReadCounts:
    """What a reader kept and left out, so a summary can say why a corpus shrank."""

    kept: int = 0
    unreadable_numbers: int = 0  # digits no rule spells out ("mp3", "1990s")
    empty_text: int = 0
    unreadable_audio: int = 0  # missing or corrupt files: one bad clip must not stop a corpus import


def _utterance(audio: Path, raw_text: str, speaker: str, corpus: str, duration: float | None,
               counts: ReadCounts) -> Utterance | None:
    """One clip, or None (counted) when its text cannot be said in the model's alphabet."""
    text = normalize_spoken(raw_text)
    if text is None:
        counts.unreadable_numbers += 1
        return None
    if not text:
        counts.empty_text += 1
        return None
    if duration is None:
        try:
            duration = audio_duration(audio)
        except ValueError:
            counts.unreadable_audio += 1
            return None
    counts.kept += 1
    return Utterance(ManifestEntry(audio.resolve(), duration, text), speaker, corpus)


def read_corpus_manifest(path: str | Path, corpus: str | None = None) -> tuple[list[Utterance], ReadCounts]:
    """The clips of one corpus manifest with speakers; `corpus` defaults to the manifest's folder name."""
    path = Path(path)
    corpus = corpus or path.resolve().parent.name
    utterances, counts = [], ReadCounts()
    with open(path, encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                audio, text, speaker = record["audio_filepath"], record["text"], str(record["speaker"])
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{line_number}: expected a JSON object with audio_filepath, text and speaker "
                                 f"({error})") from None
            duration = record.get("duration")
            utterance = _utterance(path.parent / audio, text, speaker, corpus,
                                   float(duration) if isinstance(duration, (int, float)) else None, counts)
            if utterance is not None:
                utterances.append(utterance)
    return utterances, counts


def _clip_durations(root: Path) -> dict[str, float]:
    """Seconds per clip from the release's clip_durations.tsv (milliseconds), or {} when it has none."""
    table = root / "clip_durations.tsv"
    if not table.is_file():
        return {}
    with open(table, encoding="utf-8", newline="") as rows:
        return {row["clip"]: float(row["duration[ms]"]) / 1000 for row in csv.DictReader(rows, delimiter="\t")}


def read_common_voice(root: str | Path, split: str = "validated") -> tuple[list[Utterance], ReadCounts]:
    """The clips of one split of a Common Voice release (`clips/*.mp3` + `<split>.tsv`), speaker = client_id."""
    root = Path(root)
    table = root / f"{split}.tsv"
    if not table.is_file():
        raise ValueError(f"{root}: no {split}.tsv; point at a Common Voice language folder (clips/ and the .tsv files)")
    durations = _clip_durations(root)
    utterances, counts = [], ReadCounts()
    # Sentences hold quotes freely: a csv dialect with quoting would merge rows, so fields are split at tabs only.
    with open(table, encoding="utf-8", newline="") as rows:
        reader = csv.DictReader(rows, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"client_id", "path", "sentence"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{table}: missing column(s) {', '.join(sorted(missing))}")
        for row in reader:
            utterance = _utterance(root / "clips" / row["path"], row["sentence"], row["client_id"], "commonvoice",
                                   durations.get(row["path"]), counts)
            if utterance is not None:
                utterances.append(utterance)
    return utterances, counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the Common Voice import; shared with the main CLI."""
    parser.add_argument("root", type=Path, help="a Common Voice language folder, e.g. cv-corpus-17.0/en")
    parser.add_argument("--split", default="validated", choices=COMMON_VOICE_SPLITS, help="which .tsv to read")
    parser.add_argument("--out", type=Path, required=True, help="manifest to write (JSON lines)")


def run(args: argparse.Namespace) -> int:
    """Write the manifest; a one-line reason on stderr and status 1 when the input is unusable."""
    try:
        utterances, counts = read_common_voice(args.root, args.split)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    write_manifest(args.out, [utterance.entry for utterance in utterances])
    hours = sum(utterance.entry.duration for utterance in utterances) / 3600
    print(f"wrote {counts.kept} utterances ({hours:.2f} h) by {len({u.speaker for u in utterances})} speakers to "
          f"{args.out}; dropped {counts.unreadable_numbers} with digits no rule reads, {counts.empty_text} empty, "
          f"{counts.unreadable_audio} with unreadable audio")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.data.real_speech", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
