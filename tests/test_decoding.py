"""Greedy and beam-search CTC decoding on hand-made log-prob matrices whose answers are known.

The language model is a three-word ARPA written here by hand (as pyctcdecode's own tests do);
the streaming beam search is checked against pyctcdecode's whole-matrix `decode_beams`.
"""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest

from tests.conftest import word_chain_arpa
from pyctcdecode.decoder import BeamSearchDecoderCTC

from asr.decoding import (
    _RECENT_WORD_NODES,
    BeamSearchDecoder,
    BeamSearchOptions,
    BeamSearchStream,
    GreedyDecoder,
    LanguageModelError,
    build_beam_decoder_with_fallback,
    find_unigrams_file,
    read_unigrams,
)
from asr.text import LABELS

THREE_WORD_ARPA = word_chain_arpa([("the", -0.7), ("cat", -0.9), ("sat", -1.1)])
FLOOR = 1e-6  # probability of every label a frame does not mention


@pytest.fixture(scope="module")
def arpa(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("lm") / "three_words.arpa"
    path.write_text(THREE_WORD_ARPA)
    return str(path)


def log_probs(*frames: dict[str, float]) -> np.ndarray:
    """One row per frame: the given label probabilities, every other label at FLOOR, renormalised, natural log."""
    rows = np.full((len(frames), len(LABELS)), FLOOR)
    for row, frame in zip(rows, frames):
        for label, probability in frame.items():
            row[LABELS.index(label)] = probability
    return np.log(rows / rows.sum(axis=1, keepdims=True)).astype(np.float32)


def spell(text: str) -> list[dict[str, float]]:
    """Confident frames for each character, each followed by a blank frame."""
    frames = []
    for char in text:
        frames += [{char: 0.98}, {"_": 0.98}]
    return frames


AMBIGUOUS_CAT = spell("the ") + [{"k": 0.55, "c": 0.45}, {"_": 0.98}] + spell("at")  # acoustics lean to "kat"


# ----------------------------------------------------------------------------------------------
# Greedy


@pytest.mark.parametrize(
    "labels, expected",
    [
        ("aab", "ab"),  # repeats collapse
        ("a_a", "aa"),  # a blank between repeats keeps both
        ("__a__ab_", "aab"),  # blanks vanish, and separate the two a's
        ("  a  b  ", "a b"),  # spaces: no leading, trailing or double ones
        ("a_ _b", "a b"),
        ("____", ""),
    ],
)
def test_greedy_collapse_rules(labels, expected):
    frames = log_probs(*[{label: 0.9} for label in labels])
    assert GreedyDecoder().decode(frames).text == expected


def test_greedy_word_frames_and_chunking():
    frames = log_probs(*[{label: 0.9} for label in "_hi__hii_ yo_"])
    whole = GreedyDecoder().decode(frames)
    assert whole.text == "hihi yo"
    # A word spans its first char's first frame to its last char's last frame (repeats included), as in beam search.
    assert [(w.word, w.start_frame, w.end_frame) for w in whole.words] == [("hihi", 1, 8), ("yo", 10, 12)]
    for size in (1, 2, 5):
        stream = GreedyDecoder().new_stream()
        for start in range(0, len(frames), size):
            stream.extend(frames[start : start + size])
        assert stream.finalize() == whole


# ----------------------------------------------------------------------------------------------
# Beam search: known answers


def test_beam_beats_greedy_when_probability_is_split_over_paths():
    # Per frame blank 0.6, "a" 0.4: the best path is blank-blank (0.36), but "a" has three paths (0.64).
    frames = log_probs({"_": 0.6, "a": 0.4}, {"_": 0.6, "a": 0.4})
    assert GreedyDecoder().decode(frames).text == ""
    stream = BeamSearchDecoder(LABELS, BeamSearchOptions(beam_width=8)).new_stream()
    stream.extend(frames)
    assert stream.finalize().text == "a"
    text, _, logit_score, _ = stream.final_beams()[0]
    assert text == "a"
    assert logit_score == pytest.approx(math.log(0.64), abs=1e-3)  # all three paths summed


def test_language_model_flips_ambiguous_word_to_the_known_one(arpa):
    frames = log_probs(*AMBIGUOUS_CAT)
    assert GreedyDecoder().decode(frames).text == "the kat"
    assert BeamSearchDecoder(LABELS, BeamSearchOptions(beam_width=8)).decode(frames).text == "the kat"
    assert BeamSearchDecoder(LABELS, BeamSearchOptions(beam_width=8), lm_path=arpa).decode(frames).text == "the cat"


def test_hotword_changes_the_answer():
    frames = log_probs(*AMBIGUOUS_CAT)
    assert BeamSearchDecoder(LABELS, BeamSearchOptions(beam_width=8, hotwords=("cat",))).decode(frames).text == "the cat"
    assert BeamSearchDecoder(LABELS, BeamSearchOptions(beam_width=8, hotwords=("dog",))).decode(frames).text == "the kat"


def test_beam_word_frames_and_confidence():
    result = BeamSearchDecoder(LABELS, BeamSearchOptions(beam_width=8)).decode(log_probs(*AMBIGUOUS_CAT))
    the, kat = result.words
    assert (the.word, the.start_frame, the.end_frame, the.confidence) == ("the", 0, 5, 1.0)  # no hypothesis doubts it
    assert (kat.word, kat.start_frame, kat.end_frame) == ("kat", 8, 13)
    assert 0.5 < kat.confidence < 0.6  # "kat" holds about 0.55 of the probability, "cat" the rest


def test_partial_result_shows_the_unfinished_word(arpa):
    stream = BeamSearchDecoder(LABELS, BeamSearchOptions(beam_width=8), lm_path=arpa).new_stream()
    stream.extend(log_probs(*spell("the ca")))
    partial = stream.result()
    assert partial.text == "the ca"
    assert [(w.word, w.start_frame) for w in partial.words] == [("the", 0), ("ca", 8)]
    stream.extend(log_probs(*spell("t")))
    assert stream.finalize().text == "the cat"


def test_wrong_vocabulary_size_is_refused():
    with pytest.raises(ValueError, match=r"\(frames, 29\)"):
        BeamSearchDecoder().new_stream().extend(np.zeros((3, 5), np.float32))


# ----------------------------------------------------------------------------------------------
# Streaming equals pyctcdecode's offline decode, exactly


def random_peaky(seed: int, frames: int = 40) -> np.ndarray:
    """Random frames with one favoured label each and many blanks: several candidates per frame."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(frames, len(LABELS))) * 1.5
    logits[np.arange(frames), rng.integers(0, len(LABELS), frames)] += rng.uniform(2, 6)
    logits[rng.random(frames) < 0.4, 0] += 4
    return (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(np.float32)


def spoken(text: str, seed: int) -> np.ndarray:
    """`text` spelled with noise and a few confusable letters: structured, like a model's output."""
    rng = np.random.default_rng(seed)
    frames = []
    for frame in spell(text):
        (label, _), = frame.items()
        rival = LABELS[rng.integers(1, len(LABELS))]
        frames.append({label: rng.uniform(0.4, 0.95), rival: rng.uniform(0.0, 0.4)} if label != "_" else frame)
    return log_probs(*frames)


# An exact tie between "a" and "g": pyctcdecode then keeps the one its set of candidate labels yields first
# ("g", index 9, comes before "a", index 3, in a small Python set), so the visiting order must match too.
EXACT_TIE = log_probs(*spell("the "), {"a": 0.45, "g": 0.45}, {"_": 0.98})
# Pauses: runs of frames where blank is the only candidate, which the stream passes through by a shortcut.
SILENCE = log_probs(*[{"_": p} for p in (0.97, 0.999, 0.9, 0.99)], {"_": 0.95, "t": 0.04}, *[{"_": 0.98}] * 5)
PAUSED = np.concatenate([spoken("the cat ", 4), SILENCE, spoken("sat", 5), SILENCE])
MATRICES = [random_peaky(0), random_peaky(1), spoken("the cat sat", 2), spoken("the kat sat the cat", 3), EXACT_TIE, PAUSED]


def chunkings(frames: int) -> list[list[int]]:
    """Whole, frame by frame, sevens, and random sizes (np.split leaves any overshoot as empty chunks)."""
    rng = np.random.default_rng(frames)
    return [[frames], [1] * frames, [7] * (frames // 7 + 1), list(rng.integers(1, 12, frames))]


@pytest.mark.parametrize("prune_history", [True, False])
@pytest.mark.parametrize("hotwords", [(), ("cat", "zq")])
@pytest.mark.parametrize("with_lm", [False, True])
def test_streaming_equals_offline_pyctcdecode(arpa, with_lm, hotwords, prune_history):
    options = BeamSearchOptions(beam_width=10, alpha=0.7, beta=1.0, hotwords=hotwords, prune_history=prune_history)
    decoder = BeamSearchDecoder(LABELS, options, lm_path=arpa if with_lm else None)
    reference = BeamSearchDecoderCTC(decoder.alphabet, decoder.language_model)
    try:
        for matrix in MATRICES:
            offline = reference.decode_beams(matrix, **options.decode_beams_kwargs())
            expected = [(text, word_frames, logit, score) for text, _, word_frames, logit, score in offline]
            for sizes in chunkings(len(matrix)):
                stream = decoder.new_stream()
                for chunk in np.split(matrix, np.cumsum(sizes)[:-1]):
                    stream.extend(chunk)
                    stream.result()  # partial results must not disturb the search
                assert stream.final_beams() == expected  # texts, word frames and both scores, bit for bit
                final = stream.finalize()
                assert final.text == expected[0][0]
                assert [(w.word, (w.start_frame, w.end_frame)) for w in final.words] == expected[0][1]
    finally:
        reference.cleanup()


@pytest.mark.parametrize("with_lm", [False, True])
def test_pauses_take_the_blank_shortcut(arpa, with_lm, monkeypatch):
    """The parity test above covers PAUSED; this checks that it really went through the shortcut."""
    passed = []
    shortcut = BeamSearchStream._pass_blank_frames
    monkeypatch.setattr(BeamSearchStream, "_pass_blank_frames", lambda self, *args: passed.append(shortcut(self, *args)) or passed[-1])
    decoder = BeamSearchDecoder(LABELS, BeamSearchOptions(beam_width=10, alpha=0.7, beta=1.0), lm_path=arpa if with_lm else None)
    assert decoder.decode(PAUSED).text == "the cat sat"
    # Two pauses of 10 frames, each broken once by a rival letter: all but the first frame of each run of blanks.
    assert sum(passed) >= 2 * (3 + 4)


def test_words_coming_back_are_not_scored_again(arpa):
    """A word node dropped from the beam and wanted again a few frames later is kept, not rebuilt by the LM."""
    decoder = BeamSearchDecoder(LABELS, BeamSearchOptions(beam_width=10, alpha=0.7, beta=1.0), lm_path=arpa)
    built, extend_prefix = [], decoder.extend_prefix
    decoder.extend_prefix = lambda parent, word: built.append((tuple(parent.words()), word)) or extend_prefix(parent, word)
    for matrix in MATRICES:
        built.clear()
        stream = decoder.new_stream()
        for frame in range(len(matrix)):
            stream.extend(matrix[frame : frame + 1])
        stream.finalize()
        assert len(built) == len(set(built))


def test_pruned_hypotheses_are_freed():
    """The interned transcripts of dropped hypotheses must not accumulate over a long stream."""
    decoder = BeamSearchDecoder(LABELS, BeamSearchOptions(beam_width=8))
    stream = decoder.new_stream()
    for seed in range(15):
        stream.extend(random_peaky(seed, 60))
    gc.collect()
    live = sum(1 for obj in gc.get_objects() if type(obj).__name__ == "_Prefix")
    deepest = max(beam[0].depth for beam in stream.beams)
    # Besides the beams' own words, the stream keeps a bounded number of recently dropped words alive on purpose.
    assert live <= deepest + 1 + 8 * len(stream.beams) + _RECENT_WORD_NODES


# ----------------------------------------------------------------------------------------------
# Language model files: conventions, clear errors, fallback


def test_unigram_list_found_beside_the_model(tmp_path, arpa):
    lm = tmp_path / "model.binary"
    lm.write_bytes(b"not read here")
    with pytest.raises(LanguageModelError, match=r"model\.binary has no unigram list"):
        read_unigrams(lm)
    (tmp_path / "unigrams.txt").write_text("cat\nsat\n")
    assert find_unigrams_file(lm) == tmp_path / "unigrams.txt"
    (tmp_path / "model.binary.unigrams.txt").write_text("the\n\n")
    assert read_unigrams(lm) == ["the"]  # `<lm>.unigrams.txt` wins over the folder's list
    assert sorted(read_unigrams(arpa)) == ["</s>", "<s>", "<unk>", "cat", "sat", "the"]  # an ARPA lists its own


def test_explicit_unigram_list_is_what_the_decoder_uses(tmp_path, arpa, caplog):
    only_sat = tmp_path / "words.txt"
    only_sat.write_text("sat\nthe\n")
    decoder = BeamSearchDecoder(LABELS, lm_path=arpa, unigrams=only_sat)
    assert "No known unigrams" not in caplog.text
    assert decoder.partial_word_score("sa") == 0.0  # starts a listed word
    assert decoder.partial_word_score("ca") < 0  # "cat" is in the LM but not in the given list


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("missing.arpa", None, "does not exist"),
        ("garbage.arpa", b"this is not\nan arpa file\n", "is not a readable KenLM model"),
        ("noise.binary", bytes(range(256)) * 4, "is not a readable KenLM model"),
        ("empty.arpa", b"", "is not a readable KenLM model"),
    ],
)
def test_unusable_language_model_gives_one_clear_sentence(tmp_path, name, content, problem):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LanguageModelError) as error:
        BeamSearchDecoder(LABELS, lm_path=path)
    message = str(error.value)
    assert str(path) in message and problem in message and "\n" not in message
    decoder, warning = build_beam_decoder_with_fallback(BeamSearchOptions(beam_width=8), path)
    assert not decoder.has_language_model and decoder.options.lm_path is None
    assert str(path) in warning and "without a language model" in warning
    assert decoder.decode(log_probs(*spell("the cat"))).text == "the cat"


def test_fallback_helper_keeps_a_good_model(arpa):
    decoder, warning = build_beam_decoder_with_fallback(BeamSearchOptions(beam_width=8), arpa)
    assert warning is None and decoder.has_language_model
    assert decoder.decode(log_probs(*AMBIGUOUS_CAT)).text == "the cat"
