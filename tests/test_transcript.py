"""N-best score splits, word timings and confidences, and the TXT / SRT / JSON documents made from them."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from asr.decoding import BeamSearchDecoder, BeamSearchOptions, DecodeResult, ScoredHypothesis, WordTiming
from asr.transcript import (
    CUE_MAX_SECONDS,
    TimedWord,
    UtteranceRecord,
    posterior_confidence,
    render,
    srt_time,
    subtitle_cues,
    timed_words,
)
from tests.test_decoding import AMBIGUOUS_CAT, arpa, log_probs, spell  # noqa: F401  (arpa: the fixture)
from asr.text import LABELS


def parts_add_up(hypothesis: ScoredHypothesis) -> bool:
    parts = hypothesis.acoustic + hypothesis.language_model + hypothesis.word_bonus + hypothesis.hotwords
    return math.isclose(parts, hypothesis.total, rel_tol=0, abs_tol=1e-9)


def test_final_n_best_splits_add_up_to_the_ranking_score_and_match_pyctcdecode(arpa):
    options = BeamSearchOptions(beam_width=8, alpha=0.7, beta=1.5, beam_prune_logp=-100.0)  # keep the losers listed
    decoder = BeamSearchDecoder(options=options, lm_path=arpa, unigrams=["the", "cat", "sat"])
    matrix = log_probs(*AMBIGUOUS_CAT)
    stream = decoder.new_stream()
    stream.extend(matrix)
    best = stream.finalize()
    listing = stream.final_n_best(5)
    assert listing[0].text == best.text == "the cat"  # the LM overrules the acoustics' "kat"
    assert all(parts_add_up(h) for h in listing)
    assert [h.total for h in listing] == sorted((h.total for h in listing), reverse=True)
    # The same totals and acoustic scores pyctcdecode's decode_beams ranks by (final_beams lists them).
    assert [(h.text, h.acoustic, h.total) for h in listing] == [(text, acoustic, total) for text, _, acoustic, total in stream.final_beams()[:5]]
    top = listing[0]
    assert top.word_bonus == pytest.approx(1.5 * 2)  # beta for each of its two words
    assert top.hotwords == 0.0
    # The acoustics preferred "kat": whichever hypothesis spells it must lose on the language model, not on acoustics.
    kat = next(h for h in listing if "kat" in h.text)
    assert kat.acoustic > top.acoustic and kat.language_model < top.language_model


def test_live_n_best_counts_only_finished_words_and_hotwords_are_their_own_part(arpa):
    options = BeamSearchOptions(beam_width=8, alpha=0.5, beta=-1.0, hotwords=("cat",), hotword_weight=3.0)
    decoder = BeamSearchDecoder(options=options, lm_path=arpa, unigrams=["the", "cat", "sat"])
    stream = decoder.new_stream()
    stream.extend(log_probs(*(spell("the cat ") + spell("sa"))))  # "sa" is a word still being spoken
    listing = stream.n_best(3)
    assert listing[0].text == "the cat sa"
    assert listing[0].word_bonus == pytest.approx(-2.0) and listing[0].hotwords == pytest.approx(3.0)
    assert all(parts_add_up(h) for h in listing)


def test_without_a_language_model_there_is_no_word_bonus():
    decoder = BeamSearchDecoder(options=BeamSearchOptions(beam_width=4, beta=2.0))
    stream = decoder.new_stream()
    stream.extend(log_probs(*spell("the cat")))
    stream.finalize()
    listing = stream.final_n_best(4)
    assert listing[0].text == "the cat" and listing[0].word_bonus == 0.0 and listing[0].language_model == pytest.approx(0.0)
    assert all(parts_add_up(h) for h in listing)


def test_confidence_is_the_least_sure_letters_best_posterior():
    matrix = log_probs({"c": 0.9}, {"_": 0.98}, {"a": 0.3, "k": 0.6, "_": 0.1}, {"t": 0.8, "_": 0.2})
    assert posterior_confidence("cat", matrix) == pytest.approx(0.3, abs=1e-3)
    assert posterior_confidence("tk", matrix) == pytest.approx(0.6, abs=1e-3)
    assert posterior_confidence("dog", matrix) < 1e-4  # letters the model never favoured: the LM's doing
    assert posterior_confidence("cat", matrix[:0]) == 0.0


def test_timed_words_are_in_seconds_from_the_stream_start():
    matrix = log_probs(*spell("the cat"))
    result = DecodeResult("the cat", (WordTiming("the", 0, 5, 1.0), WordTiming("cat", 8, 13, 1.0)))
    words = timed_words(result, matrix, start_seconds=10.0, seconds_per_frame=0.03)
    assert [(w.word, w.start, w.end) for w in words] == [("the", 10.0, 10.15), ("cat", 10.24, 10.39)]
    assert all(0.9 < w.confidence <= 1.0 for w in words)


def record(index: int, start: float, words: list[tuple[str, float, float]]) -> UtteranceRecord:
    text = " ".join(w for w, _, _ in words)
    return UtteranceRecord(index, start, words[-1][2] + 0.5 if words else start, greedy=text.replace("a", "e"), beam=text,
                           beam_lm=text, words=tuple(TimedWord(w, s, e, 0.9) for w, s, e in words),
                           n_best=(ScoredHypothesis(text, -3.0, -2.0, 1.0, 0.0, -4.0),))


def test_srt_cues_bracket_their_words_and_long_utterances_are_split():
    long_words = [(f"word{i}", 20.0 + i * 0.5, 20.0 + i * 0.5 + 0.4) for i in range(30)]  # 15 s of speech
    records = [record(0, 0.0, [("hello", 0.2, 0.6), ("there", 0.7, 1.1)]), record(1, 19.8, long_words)]
    document = render(records, "srt")
    blocks = document.strip().split("\n\n")
    cues = subtitle_cues(records)
    assert len(blocks) == len(cues) >= 4
    assert blocks[0] == "1\n00:00:00,200 --> 00:00:01,100\nhello there"
    spoken = [w for r in records for w in r.words]
    for number, block in enumerate(blocks, start=1):
        index, times, text = block.split("\n")
        assert index == str(number) and re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", times)
        start, end = cues[number - 1][:2]
        assert end - start <= CUE_MAX_SECONDS
        for word in text.split():  # every word of the cue lies within the cue's times
            timing = next(w for w in spoken if w.word == word)
            assert start <= timing.start and timing.end <= end
    assert " ".join(b.split("\n")[2] for b in blocks) == " ".join(w.word for w in spoken)
    assert srt_time(3725.5) == "01:02:05,500"


def test_txt_and_json_documents():
    records = [record(0, 0.0, [("hello", 0.2, 0.6)]), record(1, 2.0, [("there", 2.1, 2.5)])]
    assert render(records, "txt") == "hello\nthere\n"
    parsed = json.loads(render(records, "json", {"model": "m"}))
    assert parsed["model"] == "m" and len(parsed["utterances"]) == 2
    first = parsed["utterances"][0]
    assert (first["greedy"], first["beam"], first["beam_lm"], first["best"]) == ("hello", "hello", "hello", "hello")
    assert first["words"][0] == {"word": "hello", "start": 0.2, "end": 0.6, "confidence": 0.9}
    assert first["n_best"][0]["total"] == -4.0
    with pytest.raises(ValueError, match="unknown transcript format"):
        render(records, "doc")


def test_best_falls_back_to_the_beam_then_greedy():
    plain = UtteranceRecord(0, 0.0, 1.0, greedy="a", beam="b", beam_lm=None)
    assert plain.best == "b"
    assert UtteranceRecord(0, 0.0, 1.0, greedy="a", beam=None, beam_lm=None).best == "a"
    assert np.isfinite(0.0)
