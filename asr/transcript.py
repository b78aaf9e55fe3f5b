"""Finished utterances as documents: timed words with confidences, and plain text, SRT subtitles and JSON.

The demo's Export and `python -m asr transcribe --format` both write these, from the same records:
an utterance's greedy, beam (no LM) and beam + LM transcripts, the beam + LM n-best list, and the
words of its best transcript with start and end times and a confidence read off the CTC posteriors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from asr.decoding import DecodeResult, ScoredHypothesis
from asr.streaming import Utterance
from asr.text import LABELS

FORMATS = ("txt", "srt", "json")
LOW_CONFIDENCE = 0.5  # the demo shades words below this
# Subtitle cues: an utterance is split where a cue would grow past either limit (a viewer reads about 15 characters
# a second; two lines of 42 characters is the usual broadcast limit).
CUE_MAX_SECONDS = 6.0
CUE_MAX_CHARACTERS = 84


@dataclass(frozen=True)
class TimedWord:
    word: str
    start: float  # seconds from the start of the stream
    end: float
    confidence: float  # in [0, 1]


@dataclass(frozen=True)
class UtteranceRecord:
    """One finished utterance as every decoder heard it."""

    index: int
    start: float  # seconds from the start of the stream
    end: float
    greedy: str
    beam: str | None  # beam search without a language model (None where it did not run)
    beam_lm: str | None  # beam search with the language model (None without one)
    words: tuple[TimedWord, ...] = ()  # of `best`
    n_best: tuple[ScoredHypothesis, ...] = ()  # of the beam + LM search (or the plain beam without an LM)
    source: str = ""

    @property
    def best(self) -> str:
        """The transcript to read: beam + LM, else beam, else greedy."""
        return next(text for text in (self.beam_lm, self.beam, self.greedy) if text is not None)


def posterior_confidence(word: str, log_probs: np.ndarray, labels: tuple[str, ...] = LABELS) -> float:
    """How sure the acoustic model is of `word` over its frames: for each of its letters, the highest posterior that
    letter reaches within the word's frames; the word is as sure as its least sure letter. A letter the model never
    favoured (one the LM brought in) scores near 0 whatever the LM thought."""
    if len(log_probs) == 0 or not word:
        return 0.0
    peaks = np.exp(log_probs.max(axis=0))
    index = {label: position for position, label in enumerate(labels)}
    letters = [index[char] for char in set(word) if char in index]
    return float(min(peaks[letters])) if letters else 0.0


def timed_words(result: DecodeResult, log_probs: np.ndarray, start_seconds: float, seconds_per_frame: float,
                labels: tuple[str, ...] = LABELS) -> tuple[TimedWord, ...]:
    """A decoder's words in seconds, each with its posterior confidence; frames count from the utterance's start."""
    words = []
    for timing in result.words:
        first, last = max(0, timing.start_frame), max(timing.start_frame + 1, timing.end_frame)
        words.append(TimedWord(timing.word, round(start_seconds + first * seconds_per_frame, 3),
                               round(start_seconds + last * seconds_per_frame, 3),
                               round(posterior_confidence(timing.word, log_probs[first:last], labels), 4)))
    return tuple(words)


def record_of(utterance: Utterance, seconds_per_frame: float, beam_has_lm: bool, source: str = "") -> UtteranceRecord:
    """An utterance's record; `beam_has_lm` says whether its main beam search used the LM (then the plain one, if it
    ran, is the search without it)."""
    main = utterance.beam.text if utterance.beam else None
    plain = utterance.plain_beam.text if utterance.plain_beam else None
    beam, beam_lm = (plain, main) if beam_has_lm else (main, None)
    words = timed_words(utterance.beam or utterance.greedy, utterance.log_probs, utterance.start_seconds, seconds_per_frame)
    return UtteranceRecord(utterance.index, round(utterance.start_seconds, 3), round(utterance.end_seconds, 3),
                           utterance.greedy.text, beam, beam_lm, words, tuple(utterance.n_best), source)


def to_text(records: list[UtteranceRecord]) -> str:
    """One line per utterance: its best transcript."""
    return "".join(f"{record.best}\n" for record in records if record.best)


def srt_time(seconds: float) -> str:
    milliseconds = max(0, int(round(seconds * 1000)))
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    seconds, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d},{milliseconds:03d}"


def subtitle_cues(records: list[UtteranceRecord]) -> list[tuple[float, float, str]]:
    """(start, end, text) cues: each utterance's timed words, split where a cue grows too long to read."""
    cues = []
    for record in records:
        cue: list[TimedWord] = []
        for word in record.words:
            text = " ".join(w.word for w in cue + [word])
            if cue and (word.end - cue[0].start > CUE_MAX_SECONDS or len(text) > CUE_MAX_CHARACTERS):
                cues.append((cue[0].start, cue[-1].end, " ".join(w.word for w in cue)))
                cue = []
            cue.append(word)
        if cue:
            cues.append((cue[0].start, cue[-1].end, " ".join(w.word for w in cue)))
    return cues


def to_srt(records: list[UtteranceRecord]) -> str:
    blocks = [f"{number}\n{srt_time(start)} --> {srt_time(end)}\n{text}\n"
              for number, (start, end, text) in enumerate(subtitle_cues(records), start=1)]
    return "\n".join(blocks)


def to_json(records: list[UtteranceRecord], about: dict | None = None) -> str:
    """Every utterance with all its transcripts, n-best (scores split) and timed words; `about` says what made it."""
    utterances = []
    for record in records:
        entry = asdict(record)
        entry["best"] = record.best
        utterances.append(entry)
    return json.dumps({**(about or {}), "utterances": utterances}, indent=1, ensure_ascii=False) + "\n"


def render(records: list[UtteranceRecord], fmt: str, about: dict | None = None) -> str:
    if fmt == "txt":
        return to_text(records)
    if fmt == "srt":
        return to_srt(records)
    if fmt == "json":
        return to_json(records, about)
    raise ValueError(f"unknown transcript format {fmt!r} (choose from {', '.join(FORMATS)})")
