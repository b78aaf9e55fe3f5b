"""Manifests: one JSON object a line, {"audio_filepath", "duration", "text"}, paths relative to the manifest.

Relative paths let a corpus directory move (or be copied to another machine) with its
manifests; in memory every path is absolute so nothing downstream depends on the cwd.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

FIELDS = ("audio_filepath", "duration", "text")


@dataclass(frozen=True)
class ManifestEntry:
    """One utterance: where its audio is, how long it lasts in seconds, what is said."""

    audio_filepath: Path
    duration: float
    text: str


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """All entries of a manifest, audio paths resolved against the manifest's directory."""
    path = Path(path)
    base = path.resolve().parent
    entries = []
    with open(path, encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if line.strip():
                entries.append(_parse_line(line, base, f"{path}:{line_number}"))
    return entries


def _parse_line(line: str, base: Path, where: str) -> ManifestEntry:
    """One manifest line -> entry; a ValueError naming file and line for anything malformed."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [field for field in FIELDS if field not in record]
    if missing:
        raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
    audio, duration, text = (record[field] for field in FIELDS)
    if not isinstance(audio, str) or not audio:
        raise ValueError(f"{where}: audio_filepath must be a non-empty string")
    # bool is an int subclass; a true/false duration is a bug in whatever wrote the file.
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) or duration < 0:
        raise ValueError(f"{where}: duration must be a non-negative number of seconds, got {duration!r}")
    if not isinstance(text, str):
        raise ValueError(f"{where}: text must be a string")
    return ManifestEntry((base / audio).resolve(), float(duration), text)


def write_manifest(path: str | Path, entries: Iterable[ManifestEntry]) -> None:
    """Write entries with paths relative to the manifest; atomic, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with handle:
            for entry in entries:
                handle.write(json.dumps(_record(entry, base), ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o644)  # mkstemp's 0600 would hide the manifest from other users of the corpus
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _record(entry: ManifestEntry, base: Path) -> dict:
    """The JSON object for one entry; relpath also handles audio outside the manifest's directory."""
    audio = Path(os.path.relpath(Path(entry.audio_filepath).resolve(), base)).as_posix()
    return {"audio_filepath": audio, "duration": round(float(entry.duration), 6), "text": entry.text}
