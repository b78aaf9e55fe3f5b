"""Turn raw English text into LM training text: one normalised sentence a line, held-out sentences removed.

The alphabet is the acoustic model's (`asr.text.normalize`), so every word the LM knows is a
word the decoder can spell. Numbers are spelled out as people say them (`asr.text.normalize_spoken`:
"in 1984" -> "in nineteen eighty four"); a sentence with digits that no rule reads ("at 7:45",
"mp3") is dropped rather than mangled, since deleting the digits would teach the LM word
sequences nobody says ("at she left").
"""

from __future__ import annotations

import bisect
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from asr.text import normalize_spoken

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# A period after these (or after a lone initial, "J. Smith") does not end a sentence: "Mr. Bennet" stays whole.
ABBREVIATIONS = ("Mr", "Mrs", "Messrs", "Dr", "St", "Mme", "Mlle", "Jr", "Sr", "Capt", "Col", "Gen", "Lieut", "Lt", "Rev", "Prof", "Hon", "Gov", "Mt")
_NOT_AFTER_ABBREVIATION = "".join(rf"(?<!\b{name}\.)" for name in ABBREVIATIONS) + r"(?<!\b[A-Z]\.)"
_SENTENCE_END = re.compile(rf"(?<=[.!?]){_NOT_AFTER_ABBREVIATION}[\"')\]\u201d\u2019]*\s+(?=[\"'(\[\u201c\u2018]?[A-Z])")
_DIGIT = re.compile(r"[0-9]")
# Fortune files repeat quotations with small changes (punctuation, an added attribution), so an exact
# match is not enough: a training line that shares this many consecutive words with a held-out
# sentence is taken to be a copy of it.
OVERLAP_WORDS = 6
# A held-out sentence shorter than that is a copy only where a line contains it whole, and one shorter than
# this only where a line is exactly it: "zero" or "thank you" inside a longer line is the language, not a copy
# of the evaluation set, and removing every line that says "zero" would take the word out of the LM.
CONTAINED_MIN_WORDS = 3

@dataclass
class CorpusStats:
    sentences: int = 0
    words: int = 0
    with_numbers_spelled: int = 0
    dropped_with_digits: int = 0  # digits no rule of asr.text.spell_numbers reads
    dropped_held_out: int = 0


def raw_sentences(text: str) -> Iterator[str]:
    """Sentences of running prose: paragraphs at blank lines, lines joined, split after . ! ? before a capital."""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        prose = " ".join(paragraph.split())
        yield from (sentence for sentence in _SENTENCE_END.split(prose) if sentence)


def normalized_sentences(sentences: Iterable[str], stats: CorpusStats) -> Iterator[str]:
    """Normalised sentences with numbers spelled out, skipping those with unreadable digits and those left empty."""
    for sentence in sentences:
        normalized = normalize_spoken(sentence)
        if normalized is None:
            stats.dropped_with_digits += 1
            continue
        if _DIGIT.search(sentence):
            stats.with_numbers_spelled += 1
        if normalized:
            yield normalized


def is_held_out(sentence: str, per_mille: int) -> bool:
    """Whether a normalised sentence is in a held-out sample of `per_mille` in 1000: a hash of its text, so every
    copy of a sentence falls on the same side, whichever file it is in and however often the text is rebuilt."""
    return int.from_bytes(hashlib.sha1(sentence.encode("utf-8")).digest()[:4], "big") % 1000 < per_mille


def read_text(path: Path) -> str:
    """A text file as str: UTF-8 when it decodes, else Latin-1 (old plain-text corpora)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _line_starts(lines: list[str]) -> list[int]:
    starts, position = [], 0
    for line in lines:
        starts.append(position)
        position += len(line) + 1
    return starts


def lines_containing(lines: list[str], phrases: Iterable[str]) -> set[int]:
    """Indices of the lines that contain any phrase as whole words (one pass of str.find per phrase)."""
    joined = "\n" + "\n".join(lines) + "\n"
    starts = _line_starts(lines)
    hits: set[int] = set()
    for phrase in phrases:
        position = joined.find(phrase)
        while position != -1:
            before, after = joined[position - 1], joined[position + len(phrase)]
            if before in " \n" and after in " \n":
                hits.add(bisect.bisect_right(starts, position - 1) - 1)
            position = joined.find(phrase, position + 1)
    return hits


def word_ngrams(sentence: str, n: int) -> set[tuple[str, ...]]:
    """The word n-grams of a sentence (none when it is shorter than n words)."""
    words = sentence.split()
    return {tuple(words[index : index + n]) for index in range(len(words) - n + 1)}


def leaking_lines(lines: list[str], held_out: Iterable[str], overlap_words: int = OVERLAP_WORDS) -> set[int]:
    """Lines sharing a run of `overlap_words` words with a held-out sentence, containing a shorter one whole, or,
    for one of fewer than CONTAINED_MIN_WORDS words, equal to it."""
    held_out = {sentence for sentence in held_out if sentence}
    grams = set().union(*(word_ngrams(sentence, overlap_words) for sentence in held_out))
    lengths = {sentence: len(sentence.split()) for sentence in held_out}
    short = [sentence for sentence, length in lengths.items() if CONTAINED_MIN_WORDS <= length < overlap_words]
    tiny = {sentence for sentence, length in lengths.items() if length < CONTAINED_MIN_WORDS}
    hits = lines_containing(lines, short)
    hits.update(index for index, line in enumerate(lines) if line in tiny or not grams.isdisjoint(word_ngrams(line, overlap_words)))
    return hits


def without_held_out(lines: list[str], held_out: Iterable[str], stats: CorpusStats) -> list[str]:
    """Drop every line that overlaps a held-out sentence, so no evaluation text (or a near copy of it) trains the LM."""
    leaking = leaking_lines(lines, held_out)
    stats.dropped_held_out += len(leaking)
    return [line for index, line in enumerate(lines) if index not in leaking]


def write_training_text(lines: Iterable[str], path: Path, stats: CorpusStats) -> None:
    """Write one sentence a line and count sentences and words."""
    with path.open("w", encoding="utf-8") as out:
        for line in lines:
            out.write(line + "\n")
            stats.sentences += 1
            stats.words += line.count(" ") + 1
