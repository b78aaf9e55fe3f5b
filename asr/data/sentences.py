"""English sentences from a packaged text source, and the fixed train/dev/test split of them.

The text comes from Debian's `fortunes` packages (fortune-mod's data files: quotations,
jokes, literature, science, ...), installed under /usr/share/games/fortunes. Each sentence's
split is a pure function of its normalised text, so the synthetic corpus and the language
model agree on which sentences are held out without sharing any state file.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from asr.text import normalize

FORTUNES_DIR = Path("/usr/share/games/fortunes")
# Files that are not English prose: pictures, code, packaging chatter, a translation exercise.
EXCLUDED_FILES = {"ascii-art", "perl", "debian", "translate-me", "linux", "linuxcookie", "knghtbrd"}
MIN_WORDS, MAX_WORDS = 3, 24
DEV_PERCENT, TEST_PERCENT = 3, 3

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z])")
_ATTRIBUTION = re.compile(r"^\s*(--|—)")
_HAS_DIGIT_OR_MARKUP = re.compile(r"[0-9@#$%&*_=<>{}\[\]|\\/^~+]")


def split_of(sentence: str) -> str:
    """'train', 'dev' or 'test' for a normalised sentence: a stable hash, not a random draw."""
    bucket = int(hashlib.sha1(sentence.encode("utf-8")).hexdigest(), 16) % 100
    if bucket < TEST_PERCENT:
        return "test"
    if bucket < TEST_PERCENT + DEV_PERCENT:
        return "dev"
    return "train"


def fortune_files(directory: Path = FORTUNES_DIR) -> list[Path]:
    """The plain-text fortune files (no .dat index or .u8 link), English prose only."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} not found: install Debian's 'fortunes' package (apt-get install fortunes)")
    return sorted(p for p in directory.iterdir() if p.is_file() and "." not in p.name and p.name not in EXCLUDED_FILES)


def sentences_from_text(text: str) -> list[str]:
    """Split fortune-format text (entries separated by '%' lines) into raw sentences."""
    sentences = []
    for entry in text.split("\n%\n"):
        lines = [line for line in entry.splitlines() if line.strip() and not _ATTRIBUTION.match(line)]
        prose = " ".join(line.strip() for line in lines)
        sentences.extend(s.strip() for s in _SENTENCE_END.split(prose) if s.strip())
    return sentences


def english_sentences(directory: Path = FORTUNES_DIR) -> list[str]:
    """Normalised, de-duplicated sentences suitable for speaking: no digits or markup, 3 to 24 words."""
    seen: set[str] = set()
    result = []
    for path in fortune_files(directory):
        for raw in sentences_from_text(path.read_text(encoding="latin-1")):
            if _HAS_DIGIT_OR_MARKUP.search(raw):
                continue  # TTS would read digits and symbols aloud in ways the transcript does not spell
            sentence = normalize(raw)
            if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS and sentence not in seen:
                seen.add(sentence)
                result.append(sentence)
    return result


def sentences_by_split(directory: Path = FORTUNES_DIR) -> dict[str, list[str]]:
    splits: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for sentence in english_sentences(directory):
        splits[split_of(sentence)].append(sentence)
    return splits
