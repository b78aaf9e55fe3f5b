"""CTC decoders that consume log-prob frames chunk by chunk: greedy, and beam search with an optional KenLM model.

Both share one small surface: a decoder holds read-only configuration and makes per-stream
state objects; a stream state takes `extend(log_probs)` for each new chunk of frames (T, V),
answers `result()` with the hypothesis so far, and `finalize()` once no more frames will come.
"""

from __future__ import annotations

import bisect
import math
import weakref
from collections import deque
from dataclasses import dataclass, field, replace
from operator import itemgetter
from pathlib import Path
from typing import Collection

import numpy as np
from pyctcdecode.alphabet import Alphabet
from pyctcdecode.constants import (
    DEFAULT_ALPHA,
    DEFAULT_BETA,
    DEFAULT_HOTWORD_WEIGHT,
    DEFAULT_MIN_TOKEN_LOGP,
    DEFAULT_PRUNE_LOGP,
    MIN_TOKEN_CLIP_P,
)
# Its own normalisation and log-add, so that our scores equal its offline ones bit for bit.
from pyctcdecode.decoder import _log_softmax, _sum_log_scores
from pyctcdecode.language_model import HotwordScorer, LanguageModel, load_unigram_set_from_arpa

from asr.text import BLANK_INDEX, LABELS

try:
    import kenlm
except ImportError:  # the LM is optional: without kenlm, beam search runs without one and says so
    kenlm = None


@dataclass(frozen=True)
class WordTiming:
    word: str
    start_frame: int
    end_frame: int
    confidence: float  # in [0, 1]


@dataclass(frozen=True)
class ScoredHypothesis:
    """One entry of a beam's n-best list: its total score split into the parts the search added up.

    total == acoustic + language_model + word_bonus + hotwords (the LM part is what is left once the others are
    taken out, so the four always add up to the score the beam was ranked by).
    """

    text: str
    acoustic: float  # CTC log-probability of the transcript over the alignments the beam kept
    language_model: float  # alpha-weighted LM log-probability, with its OOV and unfinished-word penalties
    word_bonus: float  # beta for every word the LM scored
    hotwords: float
    total: float


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
        self.char_frames: list[int] = []  # frame where each char was emitted
        self.char_ends: list[int] = []  # one past the last frame of its run (a held char lasts longer)
        self.char_probs: list[float] = []

    def extend(self, log_probs: np.ndarray) -> None:
        if len(log_probs) == 0:
            return
        best = log_probs.argmax(axis=1)
        best_logp = log_probs[np.arange(len(best)), best]
        previous = np.concatenate([[self.previous_label], best[:-1]])
        # A label is emitted where it differs from the frame before it and is not blank (CTC collapse);
        # where it equals the frame before, the char emitted last is held one frame longer.
        for offset in np.flatnonzero(best != BLANK_INDEX):
            frame = self.frames_seen + int(offset)
            if best[offset] == previous[offset]:
                self.char_ends[-1] = frame + 1
                continue
            self.characters.append(self.labels[best[offset]])
            self.char_frames.append(frame)
            self.char_ends.append(frame + 1)
            self.char_probs.append(float(np.exp(best_logp[offset])))
        self.previous_label = int(best[-1])
        self.frames_seen += len(best)

    def result(self) -> DecodeResult:
        return DecodeResult(text=" ".join("".join(self.characters).split()), words=self._word_timings())

    def finalize(self) -> DecodeResult:
        return self.result()

    def _word_timings(self) -> tuple[WordTiming, ...]:
        """Words between spaces: first char's frame to last char's run end, confidence of the least sure char."""
        words, current = [], []
        for index, char in enumerate(self.characters + [" "]):
            if char != " ":
                current.append(index)
            elif current:
                word = "".join(self.characters[i] for i in current)
                confidence = min(self.char_probs[i] for i in current)
                words.append(WordTiming(word, self.char_frames[current[0]], self.char_ends[current[-1]], confidence))
                current = []
        return tuple(words)


class GreedyDecoder:
    """Best-path CTC decoding: the fast, LM-free transcript shown beside the beam search."""

    name = "greedy"

    def __init__(self, labels: tuple[str, ...] = LABELS):
        self.labels = labels

    def new_stream(self) -> GreedyStream:
        return GreedyStream(self.labels)

    def decode(self, log_probs: np.ndarray) -> DecodeResult:
        stream = self.new_stream()
        stream.extend(log_probs)
        return stream.finalize()


# ---------------------------------------------------------------------------------------------
# Beam search: pyctcdecode's algorithm, carried from chunk to chunk.
#
# pyctcdecode 0.5.0 keeps each hypothesis's whole transcript as one string and re-splits,
# re-hashes and re-matches it every frame, so a frame costs more the longer the stream. Here the
# transcript is an interned chain of word nodes (equal transcripts are one object, so merging
# and LM caching are O(1)), and the frames of finished words are a shared linked list. The search
# itself (candidates, merge, scores, pruning, tie order) follows pyctcdecode step for step, so the
# final result is identical to its `decode_beams` on the whole matrix.
# ---------------------------------------------------------------------------------------------

_BEAM_SCORE = 7
_total_score = itemgetter(_BEAM_SCORE)
_PARTIAL_CACHE_LIMIT = 100_000
# Word nodes a stream keeps alive after its hypotheses drop them: a word dropped often comes back a few frames later
# (on the real dev set 64 % of LM look-ups were such returns), and keeping the node saves the LM its work again.
_RECENT_WORD_NODES = 128
# The finished words' (start, end) frames as a linked list, newest first: ((start, end), older) or None.
# Hypotheses share their common tails, so extending one is O(1) and memory grows with words, not beams.
FrameList = tuple


class LanguageModelError(Exception):
    """A language model or its unigram list cannot be used; the message is one sentence naming the file."""


@dataclass(frozen=True)
class BeamSearchOptions:
    """Beam search settings, named and defaulted as in pyctcdecode so results can be checked against it."""

    beam_width: int = 32
    alpha: float = DEFAULT_ALPHA  # LM weight (alpha and beta only matter with an LM)
    beta: float = DEFAULT_BETA  # word insertion bonus
    beam_prune_logp: float = DEFAULT_PRUNE_LOGP  # drop hypotheses this far below the best
    token_min_logp: float = DEFAULT_MIN_TOKEN_LOGP  # skip tokens below this log-prob (unless a frame's best)
    hotwords: tuple[str, ...] = ()
    hotword_weight: float = DEFAULT_HOTWORD_WEIGHT
    # Keep one hypothesis per recent history (the last LM-order - 1 words): pyctcdecode's choice for its
    # top-1 `decode`, and ours, since only the best hypothesis is shown; it also keeps the beam diverse.
    prune_history: bool = True
    lm_path: str | None = None  # a BeamSearchDecoder's own lm_path argument, when given, wins

    def decode_beams_kwargs(self) -> dict:
        """These settings as keyword arguments of pyctcdecode's `decode_beams`, the whole-matrix reference."""
        return dict(beam_width=self.beam_width, beam_prune_logp=self.beam_prune_logp, token_min_logp=self.token_min_logp,
                    prune_history=self.prune_history, hotwords=list(self.hotwords), hotword_weight=self.hotword_weight)


class _Prefix:
    """The finished words of a hypothesis, with the LM state after them; one object per distinct word sequence."""

    __slots__ = ("parent", "word", "depth", "history", "lm_state", "raw_lm_score", "hotword_count", "lm_score", "children",
                 "__weakref__")

    def __init__(self, parent: _Prefix | None, word: str, history: tuple[str, ...], lm_state, raw_lm_score: float,
                 hotword_count: int, lm_score: float):
        self.parent, self.word, self.history = parent, word, history  # history: the last words the LM still sees
        self.depth = 0 if parent is None else parent.depth + 1
        self.lm_state, self.raw_lm_score = lm_state, raw_lm_score
        self.hotword_count, self.lm_score = hotword_count, lm_score
        self.children: dict[str, weakref.ref] | None = None  # the live one-word extensions, see _child

    def words(self) -> list[str]:
        words, node = [], self
        while node.parent is not None:
            words.append(node.word)
            node = node.parent
        return words[::-1]


def _common_depth(a: _Prefix, b: _Prefix) -> int:
    """How many leading words two hypotheses share: walk up to their common ancestor."""
    while a.depth > b.depth:
        a = a.parent
    while b.depth > a.depth:
        b = b.parent
    while a is not b:
        a, b = a.parent, b.parent
    return a.depth


def _spans(frames: FrameList | None) -> list[tuple[int, int]]:
    """The linked list of finished words' (start, end) frames, oldest first."""
    spans = []
    while frames is not None:
        span, frames = frames
        spans.append(span)
    return spans[::-1]


class _SettledWords:
    """The leading words that every hypothesis shares, described once, so a partial result costs O(new words)."""

    def __init__(self):
        self.links: list[tuple[_Prefix, FrameList]] = []  # (word node, frames cell) of each settled word
        self.timings: list[WordTiming] = []
        self.words: list[str] = []

    def fresh_links(self, prefix: _Prefix, done: FrameList | None) -> list[tuple[_Prefix, FrameList]]:
        """(node, frames cell) of the hypothesis's words past the settled ones it still matches, oldest first."""
        fresh = []
        while prefix.depth > 0:
            links = self.links
            if prefix.depth <= len(links) and links[prefix.depth - 1][0] is prefix and links[prefix.depth - 1][1] is done:
                break
            fresh.append((prefix, done))
            prefix, done = prefix.parent, done[1]
        self.truncate(prefix.depth)  # a different alignment of settled words replaces the cached one
        return fresh[::-1]

    def truncate(self, depth: int) -> None:
        del self.links[depth:], self.timings[depth:], self.words[depth:]

    def add(self, links: list[tuple[_Prefix, FrameList]], timings: list[WordTiming]) -> None:
        self.links += links
        self.timings += timings
        self.words += [timing.word for timing in timings]


def find_unigrams_file(lm_path: str | Path) -> Path | None:
    """The unigram list shipped beside an LM: `<lm>.unigrams.txt`, `<lm stem>.unigrams.txt` or `unigrams.txt`."""
    lm_path = Path(lm_path)
    candidates = (Path(f"{lm_path}.unigrams.txt"), lm_path.with_suffix(".unigrams.txt"), lm_path.parent / "unigrams.txt")
    return next((path for path in candidates if path.is_file()), None)


def _is_arpa(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(256).lstrip().startswith(b"\\data\\")


def read_unigrams(lm_path: str | Path, unigrams: str | Path | Collection[str] | None = None) -> list[str]:
    """The LM's vocabulary for pyctcdecode: given words, a given file, the file beside the LM, or the ARPA's 1-grams."""
    if unigrams is not None and not isinstance(unigrams, (str, Path)):
        return list(unigrams)
    lm_path = Path(lm_path)
    source = Path(unigrams) if unigrams is not None else find_unigrams_file(lm_path)
    try:
        if source is None and _is_arpa(lm_path):
            return sorted(load_unigram_set_from_arpa(str(lm_path)))
        if source is None:
            raise LanguageModelError(f"language model {lm_path} has no unigram list beside it "
                                     f"(looked for {lm_path}.unigrams.txt and {lm_path.parent / 'unigrams.txt'})")
        words = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as error:
        raise LanguageModelError(f"unigram list {source or lm_path} cannot be read ({error})") from error
    if not words:
        raise LanguageModelError(f"unigram list {source} is empty")
    return words


def open_kenlm(lm_path: str | Path) -> "kenlm.Model":
    """The KenLM model at lm_path; LanguageModelError, naming the file, if it is missing or unreadable."""
    lm_path = Path(lm_path)
    if not lm_path.is_file():
        raise LanguageModelError(f"language model {lm_path} does not exist")
    if kenlm is None:
        raise LanguageModelError(f"language model {lm_path} cannot be used: the kenlm package is not installed")
    try:
        return kenlm.Model(str(lm_path))
    except (OSError, ValueError) as error:  # kenlm raises OSError, or UnicodeDecodeError on binary garbage
        raise LanguageModelError(f"language model {lm_path} is not a readable KenLM model (ARPA or binary)") from error


def _starts_any(sorted_words: list[str], part: str) -> bool:
    """Whether `part` begins some word of the sorted list (a trie's has_node, by bisection: no per-char Python)."""
    index = bisect.bisect_left(sorted_words, part)
    return index < len(sorted_words) and sorted_words[index].startswith(part)


class BeamSearchDecoder:
    """CTC prefix beam search (pyctcdecode's), optionally fused with a KenLM model; read-only, shared by streams."""

    name = "beam"

    def __init__(self, labels: tuple[str, ...] = LABELS, options: BeamSearchOptions = BeamSearchOptions(),
                 lm_path: str | Path | None = None, unigrams: str | Path | Collection[str] | None = None):
        lm_path = lm_path if lm_path is not None else options.lm_path
        self.options = replace(options, lm_path=None if lm_path is None else str(lm_path))
        # pyctcdecode spells the blank "" and the word separator " ".
        self.alphabet = Alphabet.build_alphabet(["" if index == BLANK_INDEX else label for index, label in enumerate(labels)])
        self.language_model, self._vocabulary = None, []
        if lm_path is not None:
            kenlm_model, words = open_kenlm(lm_path), read_unigrams(lm_path, unigrams)
            self.language_model = LanguageModel(kenlm_model, words, alpha=options.alpha, beta=options.beta)
            # The words pyctcdecode's LM keeps in its prefix trie: the unigrams KenLM knows.
            self._vocabulary = sorted({word for word in words if word in kenlm_model})
        self.hotword_scorer = HotwordScorer.build_scorer(options.hotwords, weight=options.hotword_weight)
        self._hotword_unigrams = frozenset(word for phrase in options.hotwords for word in phrase.split())
        self._hotword_list = sorted(self._hotword_unigrams)
        # Words of history that can still change LM scores (pyctcdecode's rule, at least one).
        self._history_words = max(1, (1 if self.language_model is None else self.language_model.order) - 1)
        self.partial_scores: dict[str, float] = {}
        self._lm_partial_scores: dict[tuple[bool, int], float] = {}

    @property
    def has_language_model(self) -> bool:
        return self.language_model is not None

    def new_stream(self) -> BeamSearchStream:
        return BeamSearchStream(self)

    def decode(self, log_probs: np.ndarray) -> DecodeResult:
        stream = self.new_stream()
        stream.extend(log_probs)
        return stream.finalize()

    def root_prefix(self) -> _Prefix:
        """The empty transcript, at the LM's sentence start."""
        state = None if self.language_model is None else self.language_model.get_start_state()
        return _Prefix(None, "", (), state, 0.0, 0, 0.0)

    def extend_prefix(self, parent: _Prefix, word: str) -> _Prefix:
        """A new word node, LM-scored once (pyctcdecode caches the same score by transcript string)."""
        hotword_count = parent.hotword_count + (word in self._hotword_unigrams)
        hotword_score = self.options.hotword_weight * hotword_count  # pyctcdecode: weight * number of matches
        history = (parent.history + (word,))[-self._history_words:]
        if self.language_model is None:
            return _Prefix(parent, word, history, None, 0.0, hotword_count, hotword_score)
        score, state = self.language_model.score(parent.lm_state, word)
        raw_lm_score = parent.raw_lm_score + score
        return _Prefix(parent, word, history, state, raw_lm_score, hotword_count, raw_lm_score + hotword_score)

    def final_lm_score(self, prefix: _Prefix, word: str) -> float:
        """LM and hotword score of the transcript `prefix + word` as a finished sentence (with </s>)."""
        hotword_score = self.options.hotword_weight * (prefix.hotword_count + (word in self._hotword_unigrams))
        if self.language_model is None:
            return hotword_score
        score, _ = self.language_model.score(prefix.lm_state, word, is_last_word=True)
        return (prefix.raw_lm_score + score) + hotword_score

    def partial_word_score(self, word_part: str) -> float:
        """Heuristic score of an unfinished word, pyctcdecode's value, memoised (bounded) by word part."""
        score = self.partial_scores.get(word_part)
        if score is None:
            if len(self.partial_scores) >= _PARTIAL_CACHE_LIMIT:
                self.partial_scores.clear()  # a pure function of the word part: clearing only costs time
            score = self.partial_scores[word_part] = self._score_partial_word(word_part)
        return score

    def _score_partial_word(self, word_part: str) -> float:
        """Hotword prefix bonus if the part starts a hotword, else the LM's out-of-vocabulary penalty."""
        if self._hotword_list and _starts_any(self._hotword_list, word_part):  # `word_part in hotword_scorer`, cheaper
            return self.hotword_scorer.score_partial_token(word_part)
        if self.language_model is None:
            return 0.0  # what the hotword scorer gives a part that starts no hotword
        # pyctcdecode's LM penalty depends only on whether the part starts a vocabulary word, and its length. Most
        # parts are new (the real dev set: 213k distinct, 7 % of them starting a word), so _starts_any is inlined.
        vocabulary = self._vocabulary
        index = bisect.bisect_left(vocabulary, word_part)
        shape = (index < len(vocabulary) and vocabulary[index].startswith(word_part), len(word_part))
        score = self._lm_partial_scores.get(shape)
        if score is None:
            score = self._lm_partial_scores[shape] = self.language_model.score_partial_token(word_part)
        return score

    def normalize(self, log_probs: np.ndarray) -> np.ndarray:
        """Row-wise renormalise and clip exactly as pyctcdecode does, so chunked and whole inputs agree."""
        if log_probs.ndim != 2 or log_probs.shape[1] != len(self.alphabet.labels):
            raise ValueError(f"log_probs must have shape (frames, {len(self.alphabet.labels)}), got {log_probs.shape}")
        return np.clip(_log_softmax(log_probs, axis=1), np.log(MIN_TOKEN_CLIP_P), 0)

    def frame_candidates(self, log_probs: np.ndarray) -> list[list[tuple[str, float]]]:
        """Per frame, the (char, log-prob) pairs worth expanding, in the order pyctcdecode visits them."""
        labels = self.alphabet.labels
        rows, columns = np.nonzero(log_probs >= self.options.token_min_logp)
        row_ends = np.searchsorted(rows, np.arange(1, len(log_probs) + 1)).tolist()
        columns, best = columns.tolist(), log_probs.argmax(axis=1).tolist()
        candidates, start = [], 0
        for row, end, top in zip(log_probs.tolist(), row_ends, best):
            # The visiting order is that of a Python set, as in pyctcdecode: merges keep the last-visited
            # hypothesis's frames and sum scores in visiting order, so parity needs the same order.
            order = set(columns[start:end]) | {top}
            candidates.append([(labels[index], row[index]) for index in order])
            start = end
        return candidates


# A live hypothesis: [prefix, word_part, last_char, finished words' frames (linked list of (start, end)),
# word part's start frame, its end frame (-1 before it starts), acoustic log-prob, total score].
# A list, so that merging updates it in place.
Beam = list


class BeamSearchStream:
    """One stream's beam: `extend` costs the same per frame however long the stream has run."""

    def __init__(self, decoder: BeamSearchDecoder):
        self.decoder = decoder
        self.frames_seen = 0
        self._settled = _SettledWords()
        self.beams: list[Beam] = [[decoder.root_prefix(), "", None, None, -1, -1, 0.0, 0.0]]
        self._recent_words: deque[_Prefix] = deque(maxlen=_RECENT_WORD_NODES)  # strong references, see _child

    def extend(self, log_probs: np.ndarray) -> None:
        """Advance every hypothesis over new frames: natural-log probabilities (T, V), never plain probabilities."""
        if len(log_probs) == 0:
            return
        log_probs = self.decoder.normalize(np.asarray(log_probs))
        candidates = self.decoder.frame_candidates(log_probs)
        frame = 0
        while frame < len(candidates):
            frame += self._pass_blank_frames(candidates, frame)
            if frame < len(candidates):
                self.beams = self._prune(self._expand(self.frames_seen + frame, candidates[frame]).values())
                frame += 1
        self.frames_seen += len(log_probs)

    def _pass_blank_frames(self, candidates: list[list[tuple[str, float]]], first: int) -> int:
        """How many frames from `first` on it took through the shortcut for silence: returns 0 where it does not apply.

        When blank is a frame's only candidate and every hypothesis already ends in blank, the frame merges nothing
        and starts no word: each hypothesis's score just moves by the blank's log-prob. That is done here with a
        few floats a hypothesis, by the same additions as the full step, up to the first frame where the full
        step's pruning would drop or reorder a hypothesis (left to it), so the result is the same bit for bit.
        (A third of the real dev set's frames are such frames, in runs of 7 on average.)
        """
        beams, decoder = self.beams, self.decoder
        if decoder.language_model is None and decoder.options.hotwords or any(beam[2] != "" for beam in beams):
            return 0  # hotwords without an LM add their scores in another order; a non-blank ending may merge
        logits, totals = [beam[6] for beam in beams], [beam[7] for beam in beams]
        added = None if decoder.language_model is None else [  # what _score adds to the acoustic score
            beam[0].lm_score + decoder.partial_word_score(beam[1]) if beam[1] else beam[0].lm_score for beam in beams]
        prune_logp, passed = decoder.options.beam_prune_logp, 0
        for frame in range(first, len(candidates)):
            if len(candidates[frame]) != 1 or candidates[frame][0][0] != "":
                break
            log_prob = candidates[frame][0][1]
            new_logits = [logit + log_prob for logit in logits]
            new_totals = new_logits if added is None else [logit + extra for logit, extra in zip(new_logits, added)]
            if new_totals[-1] < new_totals[0] + prune_logp or any(a < b for a, b in zip(new_totals, new_totals[1:])):
                break
            logits, totals, passed = new_logits, new_totals, passed + 1
        for beam, logit, total in zip(beams, logits, totals):
            beam[6], beam[7] = logit, total
        return passed

    def _expand(self, frame_index: int, candidates: list[tuple[str, float]]) -> dict:
        """Every hypothesis times every candidate char (pyctcdecode's order), merged by (transcript, word part, last char)."""
        merged: dict = {}
        for char, log_prob in candidates:
            if char == "":
                self._expand_blank(merged, log_prob)
            elif char == " ":
                self._expand_space(merged, frame_index, log_prob)
            else:
                self._expand_char(merged, frame_index, char, log_prob)
        return merged

    def _expand_blank(self, merged: dict, log_prob: float) -> None:
        """A blank emits nothing: same transcript and word frames, last char becomes blank."""
        for prefix, word_part, _, done, start, end, logit_score, _ in self.beams:
            key = (prefix, word_part, "")
            same = merged.get(key)
            if same is None:
                merged[key] = [prefix, word_part, "", done, start, end, logit_score + log_prob, 0.0]
            else:  # CTC paths to one labelling add up; the later path's frames are kept
                same[3], same[4], same[5], same[6] = done, start, end, _sum_log_scores(same[6], logit_score + log_prob)

    def _expand_space(self, merged: dict, frame_index: int, log_prob: float) -> None:
        """A space repeats a space, or closes the word part into a finished word."""
        for prefix, word_part, last_char, done, start, end, logit_score, _ in self.beams:
            if last_char == " ":
                key, end = (prefix, word_part, " "), frame_index + 1
            elif word_part:
                key, done, start, end = (self._child(prefix, word_part), "", " "), ((start, end), done), -1, -1
            else:
                key, start, end = (prefix, "", " "), -1, -1
            same = merged.get(key)
            if same is None:
                merged[key] = [key[0], key[1], " ", done, start, end, logit_score + log_prob, 0.0]
            else:
                same[3], same[4], same[5], same[6] = done, start, end, _sum_log_scores(same[6], logit_score + log_prob)

    def _expand_char(self, merged: dict, frame_index: int, char: str, log_prob: float) -> None:
        """A letter repeats the last char (collapsed) or extends the word part."""
        end = frame_index + 1
        for prefix, word_part, last_char, done, start, _, logit_score, _ in self.beams:
            if last_char != char:
                word_part += char
                if start < 0:
                    start = frame_index
            key = (prefix, word_part, char)
            same = merged.get(key)
            if same is None:
                merged[key] = [prefix, word_part, char, done, start, end, logit_score + log_prob, 0.0]
            else:
                same[3], same[4], same[5], same[6] = done, start, end, _sum_log_scores(same[6], logit_score + log_prob)

    def _prune(self, beams) -> list[Beam]:
        """Score, drop hypotheses far below the best, keep the best `beam_width` (ties in arrival order)."""
        beams = list(beams)
        self._score(beams)
        # pyctcdecode's heapq.nlargest is documented to equal this stable sort, which is several times faster here.
        # Sorting first and cutting at the floor afterwards keeps the same beams in the same order as filtering first.
        best = sorted(beams, key=_total_score, reverse=True)[: self.decoder.options.beam_width]
        floor = best[0][_BEAM_SCORE] + self.decoder.options.beam_prune_logp
        if best[-1][_BEAM_SCORE] < floor:
            best = [beam for beam in best if beam[_BEAM_SCORE] >= floor]
        return _distinct_histories(best) if self.decoder.options.prune_history else best

    def _score(self, beams: list[Beam]) -> None:
        """Acoustic + LM + hotword score of each beam, added in pyctcdecode's order so floats match bit for bit."""
        partial_scores, partial_word_score = self.decoder.partial_scores, self.decoder.partial_word_score
        if self.decoder.language_model is None and not self.decoder.options.hotwords:
            for beam in beams:  # LM, hotword and partial-word scores are all exactly 0.0
                beam[7] = beam[6]
            return
        if self.decoder.language_model is None:
            for beam in beams:
                partial = partial_scores.get(beam[1])
                if partial is None:
                    partial = partial_word_score(beam[1])
                beam[7] = beam[6] + beam[0].lm_score + partial
            return
        known = partial_scores.get
        for beam in beams:
            word_part = beam[1]
            if word_part:
                partial = known(word_part)
                if partial is None:
                    partial = partial_word_score(word_part)
                beam[7] = beam[6] + (beam[0].lm_score + partial)
            else:
                beam[7] = beam[6] + beam[0].lm_score

    def _child(self, prefix: _Prefix, word: str) -> _Prefix:
        """The interned node for `prefix + word`, so equal transcripts compare by identity."""
        children = prefix.children
        if children is None:
            children = prefix.children = {}
        known = children.get(word)
        child = None if known is None else known()
        if child is None:
            child = self.decoder.extend_prefix(prefix, word)
            # Weak, and forgotten when it dies: dropped hypotheses must not pile up under a long-lived prefix.
            children[word] = weakref.ref(child, lambda dead, word=word: children.get(word) is dead and children.pop(word))
            self._recent_words.append(child)
        return child

    def result(self) -> DecodeResult:
        """The current best hypothesis, its unfinished word included, without end-of-sentence scoring."""
        prefix, word_part, _, done, start, end, _, _ = self.beams[0]

        def agreement(beam: Beam) -> int:
            same_part = word_part and beam[0] is prefix and beam[1] == word_part
            return _common_depth(beam[0], prefix) + (1 if same_part else 0)

        tail = (word_part, start, end) if word_part else None
        return self._describe(prefix, done, tail, [(agreement(beam), beam[_BEAM_SCORE]) for beam in self.beams])

    def finalize(self) -> DecodeResult:
        """The best hypothesis once the stream has ended: last word finished, scored with </s>."""
        hypotheses = self._final_hypotheses()
        best, done = hypotheses[0][0], hypotheses[0][1]
        agreements = [(_common_depth(prefix, best), score) for prefix, _, _, score, _ in hypotheses]
        return self._describe(best, done, None, agreements, remember=False)

    def final_beams(self) -> list[tuple[str, list[tuple[str, tuple[int, int]]], float, float]]:
        """End-of-stream hypotheses as pyctcdecode's `decode_beams` lists them: text, word frames, acoustic, total."""
        return [(" ".join(prefix.words()), list(zip(prefix.words(), _spans(done))), logit_score, score)
                for prefix, done, logit_score, score, _ in self._final_hypotheses()]

    def n_best(self, count: int = 5) -> list[ScoredHypothesis]:
        """The best `count` live hypotheses (unfinished word included), scores split; for display, not per frame."""
        hypotheses = []
        for prefix, word_part, _, _, _, _, logit_score, score in self.beams[:count]:
            text = " ".join(prefix.words() + ([word_part] if word_part else []))
            hypotheses.append(self._split_score(text, logit_score, score, scored_words=prefix.depth,
                                                hotword_count=prefix.hotword_count))
        return hypotheses

    def final_n_best(self, count: int = 5) -> list[ScoredHypothesis]:
        """The best `count` end-of-stream hypotheses (as `finalize` ranks them), scores split."""
        return [self._split_score(" ".join(finished.words()), logit_score, score, scored_words=lm_words,
                                  hotword_count=finished.hotword_count)
                for finished, _, logit_score, score, lm_words in self._final_hypotheses()[:count]]

    def _split_score(self, text: str, acoustic: float, total: float, scored_words: int, hotword_count: int) -> ScoredHypothesis:
        """pyctcdecode's LM adds beta with every word it scores; hotwords add their weight per matched word."""
        word_bonus = self.decoder.options.beta * scored_words if self.decoder.language_model is not None else 0.0
        hotwords = self.decoder.options.hotword_weight * hotword_count
        return ScoredHypothesis(text, acoustic, total - acoustic - word_bonus - hotwords, word_bonus, hotwords, total)

    def _describe(self, prefix: _Prefix, done: FrameList | None, tail: tuple[str, int, int] | None,
                  agreements: list[tuple[int, float]], remember: bool = True) -> DecodeResult:
        """Text and word timings of one hypothesis; words all hypotheses share are reused from earlier calls."""
        fresh = self._settled.fresh_links(prefix, done)
        first_depth = prefix.depth - len(fresh) + 1
        items = [(node.word, cell[0]) for node, cell in fresh] + ([(tail[0], tail[1:])] if tail else [])
        settled_depth = min(depth for depth, _ in agreements)  # every hypothesis has these words
        shares = _agreement_shares(agreements, first_depth, first_depth + len(items) - 1)
        timings = [WordTiming(word, start, end, 1.0 if depth <= settled_depth else share)
                   for depth, (word, (start, end)), share in zip(range(first_depth, first_depth + len(items)), items, shares)]
        settling = max(0, min(settled_depth, prefix.depth) - first_depth + 1)
        if remember:  # later hypotheses all descend from today's, so settled words stay settled
            self._settled.add(fresh[:settling], timings[:settling])
            timings = timings[settling:]
        words = self._settled.words + [timing.word for timing in timings]
        return DecodeResult(text=" ".join(words), words=tuple(self._settled.timings) + tuple(timings))

    def _final_hypotheses(self) -> list[tuple[_Prefix, FrameList | None, float, float, int]]:
        """Finish each word part, merge equal transcripts, add end-of-sentence LM scores, prune (pyctcdecode's last step).

        Each is (transcript, word frames, acoustic score, total score, words the LM scored): the end-of-sentence
        step scores the unfinished part as a word even when it is empty, as pyctcdecode does.
        """
        merged: dict[_Prefix, list] = {}
        for prefix, word_part, _, done, start, end, logit_score, _ in self.beams:
            finished = self._child(prefix, word_part) if word_part else prefix
            done = ((start, end), done) if word_part else done
            same = merged.get(finished)
            if same is None:
                merged[finished] = [prefix, word_part, done, logit_score]
            else:  # the later hypothesis's split of the transcript and frames are kept, as in pyctcdecode
                merged[finished] = [prefix, word_part, done, _sum_log_scores(same[3], logit_score)]
        hypotheses = []
        for finished, (prefix, word_part, done, logit_score) in merged.items():
            score = self._final_score(logit_score, prefix, word_part)
            hypotheses.append((finished, done, logit_score, score, prefix.depth + 1))
        floor = max(h[3] for h in hypotheses) + self.decoder.options.beam_prune_logp
        kept = [h for h in hypotheses if h[3] >= floor]
        return sorted(kept, key=itemgetter(3), reverse=True)[: self.decoder.options.beam_width]

    def _final_score(self, logit_score: float, prefix: _Prefix, word: str) -> float:
        """As `_score` for a beam with no word part left, with the end-of-sentence LM score."""
        lm_score = self.decoder.final_lm_score(prefix, word)
        if self.decoder.language_model is None:
            return logit_score + lm_score + self.decoder.partial_word_score("")
        return logit_score + lm_score


def _distinct_histories(beams: list[Beam]) -> list[Beam]:
    """The best beam of each (recent words, word part, last char): the others can only ever score the same way."""
    if len({(beam[0].history, beam[1], beam[2]) for beam in beams}) == len(beams):
        return beams  # the usual case, found without a Python loop
    seen, kept = set(), []
    for beam in beams:
        key = (beam[0].history, beam[1], beam[2])
        if key not in seen:
            seen.add(key)
            kept.append(beam)
    return kept


def _agreement_shares(agreements: list[tuple[int, float]], first: int, last: int) -> list[float]:
    """For word depths first..last, the share of beam probability whose hypothesis agrees up to that word."""
    top = max(score for _, score in agreements)
    weights = [(depth, math.exp(score - top)) for depth, score in agreements]
    total = sum(weight for _, weight in weights)
    mass_at = [0.0] * (last - first + 2)  # index 0: agrees on fewer than `first` words
    for depth, weight in weights:
        mass_at[max(0, min(depth, last) - first + 1)] += weight / total
    shares, mass = [], 0.0
    for index in range(len(mass_at) - 1, 0, -1):
        mass += mass_at[index]
        shares.append(min(1.0, mass))
    return shares[::-1]


def build_beam_decoder_with_fallback(options: BeamSearchOptions = BeamSearchOptions(), lm_path: str | Path | None = None,
                                     labels: tuple[str, ...] = LABELS,
                                     unigrams: str | Path | Collection[str] | None = None) -> tuple[BeamSearchDecoder, str | None]:
    """A beam decoder with the LM if it loads, else one without and the warning for the app or CLI to show."""
    try:
        return BeamSearchDecoder(labels, options, lm_path, unigrams), None
    except LanguageModelError as error:
        return BeamSearchDecoder(labels, replace(options, lm_path=None)), f"{error}; beam search runs without a language model"
