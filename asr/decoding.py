"""CTC decoders that consume log-prob frames chunk by chunk: greedy, and beam search with an optional KenLM model.

Both share one small surface: a decoder holds read-only configuration and makes per-stream
state objects; a stream state takes `extend(log_probs)` for each new chunk of frames (T, V),
answers `result()` with the hypothesis so far, and `finalize()` once no more frames will come.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asr.text import BLANK_INDEX, LABELS


@dataclass(frozen=True)
class WordTiming:
    word: str
    start_frame: int
    end_frame: int
    confidence: float  # in [0, 1]


@dataclass(frozen=True)
class DecodeResult:
    text: str
    words: tuple[WordTiming, ...] = field(default_factory=tuple)


class GreedyStream:
    """Incremental best-path decoding: each frame is looked at once, ever."""

    def __init__(self, labels: tuple[str, ...] = LABELS):
        self.labels = labels
        self.previous_label = BLANK_INDEX
        self.frames_seen = 0
        self.characters: list[str] = []
        self.char_frames: list[int] = []
        self.char_probs: list[float] = []

    def extend(self, log_probs: np.ndarray) -> None:
        if len(log_probs) == 0:
            return
        best = log_probs.argmax(axis=1)
        best_logp = log_probs[np.arange(len(best)), best]
        # A label is emitted where it differs from the frame before it and is not blank (CTC collapse).
        previous = np.concatenate([[self.previous_label], best[:-1]])
        for offset in np.flatnonzero((best != previous) & (best != BLANK_INDEX)):
            self.characters.append(self.labels[best[offset]])
            self.char_frames.append(self.frames_seen + int(offset))
            self.char_probs.append(float(np.exp(best_logp[offset])))
        self.previous_label = int(best[-1])
        self.frames_seen += len(best)

    def result(self) -> DecodeResult:
        return DecodeResult(text=" ".join("".join(self.characters).split()), words=self._word_timings())

    def finalize(self) -> DecodeResult:
        return self.result()

    def _word_timings(self) -> tuple[WordTiming, ...]:
        words, current = [], []
        for char, frame, prob in zip(self.characters + [" "], self.char_frames + [self.frames_seen], self.char_probs + [1.0]):
            if char == " ":
                if current:
                    word = "".join(c for c, _, _ in current)
                    words.append(WordTiming(word, current[0][1], current[-1][1] + 1, min(p for _, _, p in current)))
                current = []
            else:
                current.append((char, frame, prob))
        return tuple(words)


class GreedyDecoder:
    name = "greedy"

    def __init__(self, labels: tuple[str, ...] = LABELS):
        self.labels = labels

    def new_stream(self) -> GreedyStream:
        return GreedyStream(self.labels)

    def decode(self, log_probs: np.ndarray) -> DecodeResult:
        stream = self.new_stream()
        stream.extend(log_probs)
        return stream.finalize()
