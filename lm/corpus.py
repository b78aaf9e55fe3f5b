"""Turn raw English text into LM training text: one normalised sentence a line, held-out sentences removed.

The alphabet is the acoustic model's (`asr.text.normalize`), so every word the LM knows is a
word the decoder can spell. Sentences with digits are dropped rather than mangled: normalize()
deletes digits, which would teach the LM word sequences nobody says ("in he was born").
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from asr.text import normalize

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]\u201d\u2019]*\s+(?=[\"'(\[\u201c\u2018]?[A-Z])")
_DIGIT = re.compile(r"[0-9]")
# Fortune files repeat quotations with small changes (punctuation, an added attribution), so an exact
# match is not enough: a training line that shares this many consecutive words with a held-out
# sentence is taken to be a copy of it.
OVERLAP_WORDS = 6


@dataclass
class CorpusStats:
    sentences: int = 0
    words: int = 0
    dropped_with_digits: int = 0
    dropped_held_out: int = 0


def raw_sentences(text: str) -> Iterator[str]:
    """Sentences of running prose: paragraphs at blank lines, lines joined, split after . ! ? before a capital."""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        prose = " ".join(paragraph.split())
        yield from (sentence for sentence in _SENTENCE_END.split(prose) if sentence)


def normalized_sentences(sentences: Iterable[str], stats: CorpusStats) -> Iterator[str]:
    """Normalised sentences, skipping those with digits and those that normalise to nothing."""
    for sentence in sentences:
        if _DIGIT.search(sentence):
            stats.dropped_with_digits += 1
            continue
        normalized = normalize(sentence)
        if normalized:
            yield normalized


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
    """Lines sharing a run of `overlap_words` words with a held-out sentence, or containing a shorter one whole."""
    held_out = {sentence for sentence in held_out if sentence}
    grams = set().union(*(word_ngrams(sentence, overlap_words) for sentence in held_out))
    short = [sentence for sentence in held_out if len(sentence.split()) < overlap_words]
    hits = lines_containing(lines, short)
    hits.update(index for index, line in enumerate(lines) if not grams.isdisjoint(word_ngrams(line, overlap_words)))
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
