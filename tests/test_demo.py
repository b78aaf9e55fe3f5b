"""The demo's handlers and rendering, on a tiny random model: sessions, settings, errors, history."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.conftest import word_chain_arpa
import soundfile
import torch
import torchaudio

from asr.decoding import BeamSearchDecoder, BeamSearchOptions
from asr.streaming import EndpointConfig
from demo import handlers, render, session as demo_session

TINY_ARPA = word_chain_arpa([("xq", -0.6), ("dx", -0.8), ("qd", -0.9)])
# The shared engines decode every test's streams at once: tests leave streams open (as a closed tab would until the
# reaper), and waiting for a slot is what the admission tests below test, with engines of their own.
ROOMY = demo_session.MAX_SLOTS
CHUNK_SECONDS = 0.4
UTTERANCE_SECONDS = 1.0  # forced endpoint: the random model never pauses, so utterances close on length


@pytest.fixture(scope="module")
def arpa(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "tiny.arpa"
    path.write_text(TINY_ARPA)
    return path


@pytest.fixture(scope="module")
def engine(tiny_checkpoint, arpa):
    return handlers.load_engine(str(tiny_checkpoint), lm_path=str(arpa), device="cpu",
                                endpoint=EndpointConfig(max_utterance_seconds=UTTERANCE_SECONDS), slots=ROOMY)


@pytest.fixture(scope="module")
def long_endpoint_engine(tiny_checkpoint, arpa):
    """No forced split within a few seconds: a clip is one utterance, comparable with offline decoding."""
    return handlers.load_engine(str(tiny_checkpoint), lm_path=str(arpa), device="cpu", slots=ROOMY)


@pytest.fixture(scope="module")
def clip(spoken_clip):
    samples, rate = soundfile.read(str(spoken_clip), dtype="float32")
    return samples, rate


def controls(**changes) -> handlers.Controls:
    return handlers.Controls(**{"use_lm": False, "beam_width": 4, **changes})


def as_browser_chunks(samples: np.ndarray, rate: int, out_rate: int = 48000, channels: int = 2):
    """What Gradio hands the stream handler: (rate, int16 array (n, channels)), CHUNK_SECONDS each."""
    resampled = torchaudio.functional.resample(torch.from_numpy(samples), rate, out_rate).numpy()
    pcm = np.clip(np.round(resampled * 32767), -32768, 32767).astype(np.int16)
    pcm = np.repeat(pcm[:, None], channels, axis=1)
    step = int(CHUNK_SECONDS * out_rate)
    return [(out_rate, pcm[i : i + step]) for i in range(0, len(pcm), step)], pcm


def speak_into(engine, session, chunks, settings=None):
    """Record, send the chunks, stop: what the page does."""
    session, _ = handlers.on_record_start(engine, session)
    for chunk in chunks:
        session, view = handlers.on_microphone_chunk(engine, session, chunk, settings or controls())
    return handlers.on_record_stop(engine, session)


def shown_lines(transcripts_html: str, column: str) -> list[str]:
    """The utterance texts one column of the transcript HTML shows, tags stripped."""
    body = transcripts_html.split(f'<div class="column {column}">', 1)[1].split('<div class="column ', 1)[0]
    return [re.sub(r"<[^>]+>", "", words) for words in re.findall(r'<span class="words">(.*?)</span></p>', body)]


def history_texts(session):
    return [(line.greedy, line.beam) for line in session.history]


# --- sessions --------------------------------------------------------------------------------

def test_microphone_path_equals_offline_decoding(long_endpoint_engine, clip):
    """int16 stereo 48 kHz chunks, as the browser sends them, give the offline transcripts of that audio."""
    engine = long_endpoint_engine
    chunks, pcm = as_browser_chunks(*clip)
    session, view = speak_into(engine, None, chunks)
    greedy, _, log_probs = engine.recognizer.transcribe(pcm, 48000)
    beam = BeamSearchDecoder(options=BeamSearchOptions(beam_width=4)).decode(log_probs)
    assert history_texts(session) == [(greedy.text, beam.text)]
    assert greedy.text and beam.text
    assert shown_lines(view.transcripts, "greedy") == [greedy.text]
    assert shown_lines(view.transcripts, "beam") == [beam.text]
    assert view.picture_changed and view.picture.ndim == 3 and view.picture.shape[2] == 3


def test_sessions_never_share_state(long_endpoint_engine, clip):
    """Two tabs speaking at once, chunks interleaved, each get what they would get alone."""
    engine = long_endpoint_engine
    speech, _ = as_browser_chunks(*clip)
    noise = np.random.default_rng(1).standard_normal(len(clip[0])).astype(np.float32) * 0.05
    other, _ = as_browser_chunks(noise, clip[1])
    alone_speech, _ = speak_into(engine, None, speech)
    alone_other, _ = speak_into(engine, None, other)

    first = second = None
    for speech_chunk, other_chunk in zip(speech, other):
        first, _ = handlers.on_microphone_chunk(engine, first, speech_chunk, controls())
        second, _ = handlers.on_microphone_chunk(engine, second, other_chunk, controls(beam_width=2))
    assert first is not second and first.stream is not second.stream
    first, _ = handlers.on_record_stop(engine, first)
    second, _ = handlers.on_record_stop(engine, second)
    assert history_texts(first) == history_texts(alone_speech)
    assert [g for g, _ in history_texts(second)] == [g for g, _ in history_texts(alone_other)]
    assert history_texts(first) != history_texts(second)


def test_chunk_handler_does_not_wait_for_a_slow_model(tiny_checkpoint, clip):
    """Gradio keeps only the newest chunk while a stream handler runs, so the handler must return at once."""
    import time

    slow = handlers.load_engine(str(tiny_checkpoint), lm_path=None, device="cpu", slots=ROOMY)
    model_step = slow.recognizer.step_function

    def slow_step(features, state):
        time.sleep(0.6)
        return model_step(features, state)

    slow.recognizer.step_function = slow_step  # the hook Batch Dispatch plugs into
    chunks, _ = as_browser_chunks(*clip)
    session, returned_within = None, []
    for chunk in chunks[:3]:
        started = time.perf_counter()
        session, view = handlers.on_microphone_chunk(slow, session, chunk, controls())
        returned_within.append(time.perf_counter() - started)
    assert max(returned_within) < 0.4  # a handler that waited for the model would take 0.6 s or more
    assert "Waiting to be decoded" in view.figures
    session, view = handlers.on_record_stop(slow, session)
    assert session.figures["audio_seconds"] == pytest.approx(3 * CHUNK_SECONDS)
    assert session.figures["chunks"] == 3


def test_closed_session_is_freed_and_a_new_one_starts(engine, clip):
    chunks, _ = as_browser_chunks(*clip)
    session, _ = handlers.on_microphone_chunk(engine, None, chunks[0], controls())
    assert session.stream is not None
    handlers.close_session(session)
    assert session.stream is None and not session.history and session.picture is None
    fresh, view = handlers.on_microphone_chunk(engine, session, chunks[1], controls())
    assert fresh is not session and fresh.id != session.id and fresh.stream is not None
    handlers.close_session(None)  # a tab that never spoke has nothing to free


# --- settings --------------------------------------------------------------------------------

def test_settings_change_applies_from_the_next_utterance(engine, clip):
    """Changed mid-utterance: the utterance in progress keeps its decoder, the following ones use the new one."""
    chunks, _ = as_browser_chunks(*clip)
    before, after = controls(use_lm=True, beam_width=8, alpha=2.0), controls(use_lm=False, beam_width=8)
    session, _ = handlers.on_microphone_chunk(engine, None, chunks[0], before)  # 0.4 s into utterance 1
    session, view = handlers.on_controls_change(engine, session, after)
    assert "next utterance" in view.notice
    session, view = speak_into(engine, session, chunks[1:], after)
    assert "Beam search (no LM)" in view.transcripts  # the newest line was decoded without the LM

    lines = list(session.history)
    assert len(lines) >= 3
    assert [line.decoder.settings.use_lm for line in lines] == [True] + [False] * (len(lines) - 1)
    assert "LM α=2" in lines[0].decoder.label and "no LM" in lines[1].decoder.label

    # Known answer: each utterance's beam text is its own frames decoded with the decoder it was started with.
    # Its frames come from a reference Stream fed the same chunks (the recurrent state restarts at each endpoint).
    reference = engine.recognizer.create_stream()
    pieces = [u.log_probs for rate, samples in chunks for u in reference.accept(samples, rate).finished]
    pieces += [u.log_probs for u in reference.finalize().finished]
    decoders = {s: engine.decoders.get(handlers.settings_for(engine, s))[0] for s in (before, after)}
    expected, differs = [], False
    for index, line in enumerate(lines):
        piece = pieces[index]
        with_before, with_after = (decoders[s].decode(piece).text for s in (before, after))
        differs |= with_before != with_after
        expected.append(with_before if index == 0 else with_after)
    assert differs, "the two settings must decode this audio differently for the test to mean anything"
    assert [line.beam for line in lines] == expected


def test_beam_column_title_speaks_for_the_newest_line(engine, clip):
    chunks, _ = as_browser_chunks(*clip)
    session, view = speak_into(engine, None, chunks[:2], controls(use_lm=True))
    session, view = handlers.on_controls_change(engine, session, controls(use_lm=False))
    assert "Beam search + LM" in view.transcripts  # what is on screen was decoded with the LM
    assert "no LM" in view.figures  # what the next utterance will use
    session, view = speak_into(engine, session, chunks[:2], controls(use_lm=False))
    assert len(session.history) == 2
    assert "Beam search (no LM)" in view.transcripts


def test_a_chunk_sent_after_stop_is_not_a_new_recording(engine, clip):
    """The browser may send the tail of a recording after Stop; it must not open a stream nobody will close."""
    chunks, _ = as_browser_chunks(*clip)
    session, _ = speak_into(engine, None, chunks[:2])
    session, view = handlers.on_microphone_chunk(engine, session, chunks[2], controls())
    assert session.stream is None and 'data-name="State">finished' in view.figures
    session, _ = handlers.on_record_start(engine, session)
    session, _ = handlers.on_microphone_chunk(engine, session, chunks[2], controls())
    assert session.stream is not None


def test_decoders_are_cached_by_settings(engine, clip):
    chunks, _ = as_browser_chunks(*clip)
    session = None
    settings = [controls(beam_width=3), controls(beam_width=5), controls(beam_width=3)]
    for chunk, choice in zip(chunks * 3, settings * 3):
        session, _ = handlers.on_microphone_chunk(engine, session, chunk, choice)
    builds = engine.decoders.builds
    for chunk, choice in zip(chunks, settings * 3):
        session, _ = handlers.on_microphone_chunk(engine, session, chunk, choice)
    assert engine.decoders.builds == builds  # flipping between known settings rebuilds nothing


def test_missing_language_model_falls_back_with_a_visible_warning(engine, tiny_checkpoint, tmp_path):
    missing = tmp_path / "nowhere.binary"
    fallback = handlers.load_engine(str(tiny_checkpoint), lm_path=str(missing), device="cpu", slots=ROOMY)
    session, view = handlers.on_load(fallback, None, handlers.default_controls(fallback))
    assert "nowhere.binary" in view.notice and "without a language model" in view.notice
    assert 'class="warning"' in view.notice
    assert "Beam search (no LM)" in view.transcripts
    _, view = handlers.on_load(fallback, None, controls(use_lm=False))
    assert "warning" not in view.notice  # no LM asked for, nothing to warn about


def test_controls_are_clamped_and_hotwords_split(engine):
    settings = handlers.settings_for(engine, handlers.Controls(beam_width=10_000, hotwords=" Deep Speech , ,kenlm "))
    assert settings.beam_width == handlers.MAX_BEAM_WIDTH
    assert settings.hotwords == ("deep speech", "kenlm")
    assert handlers.settings_for(engine, handlers.Controls(beam_width=0)).beam_width == 1


# --- files and bad input ---------------------------------------------------------------------

def test_file_goes_through_the_same_stream_path_as_the_microphone(engine, spoken_clip, clip):
    """An upload shows the same utterances (same endpoints, same texts) as that audio spoken into the mic."""
    session = None
    for session, view in handlers.on_file(engine, None, str(spoken_clip), controls()):
        pass
    spoken, _ = speak_into(engine, None, [(clip[1], clip[0][i : i + int(CHUNK_SECONDS * clip[1])])
                                         for i in range(0, len(clip[0]), int(CHUNK_SECONDS * clip[1]))])
    assert len(session.history) >= 2  # the forced endpoint split it
    assert history_texts(session) == history_texts(spoken)
    assert all(line.source == f"upload: {spoken_clip.name}" for line in session.history)
    assert view.picture_changed and view.picture is not None
    assert "Audio processed" in view.figures and f"{len(clip[0]) / clip[1]:.1f} s" in view.figures


def test_bad_upload_gives_a_one_line_message_and_the_session_goes_on(engine, spoken_clip, tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 50)
    views = list(handlers.on_file(engine, None, str(garbage), controls()))
    session, view = views[-1]
    assert "garbage.wav" in view.notice and "not a readable audio file" in view.notice
    assert str(tmp_path) not in view.notice and "Traceback" not in view.notice
    assert not session.history
    for session, view in handlers.on_file(engine, session, str(spoken_clip), controls()):
        pass
    assert session.history and 'class="error"' not in view.notice


def test_error_messages_never_show_the_servers_folders(engine, tmp_path):
    deep = tmp_path.joinpath(*["a-long-temporary-folder-name"] * 6)
    deep.mkdir(parents=True)
    garbage = deep / "notes.wav"
    garbage.write_text("this is not audio at all")
    _, view = list(handlers.on_file(engine, None, str(garbage), controls()))[-1]
    assert "notes.wav: not a readable audio file" in view.notice
    assert "a-long-temporary-folder-name" not in view.notice and str(tmp_path) not in view.notice


def test_upload_limits(engine, spoken_clip, monkeypatch):
    monkeypatch.setattr(handlers, "UPLOAD_MAX_SECONDS", 1.0)
    _, view = list(handlers.on_file(engine, None, str(spoken_clip), controls()))[-1]
    assert "limit" in view.notice and spoken_clip.name in view.notice
    monkeypatch.setattr(handlers, "UPLOAD_MAX_BYTES", 1000)
    _, view = list(handlers.on_file(engine, None, str(spoken_clip), controls()))[-1]
    assert "MB limit" in view.notice


def test_bad_microphone_chunk_is_reported_and_the_stream_keeps_going(engine, clip):
    chunks, _ = as_browser_chunks(*clip)
    session, _ = handlers.on_microphone_chunk(engine, None, chunks[0], controls())
    session, view = handlers.on_microphone_chunk(engine, session, (1000, chunks[1][1]), controls())
    assert session.wait_until_idle(30)
    view = handlers.view_of(session)
    assert "sample rate" in view.notice and 'class="error"' in view.notice
    session, view = handlers.on_microphone_chunk(engine, session, chunks[1], controls())
    assert session.wait_until_idle(30)
    assert session.stream is not None and session.figures["chunks"] == 2


def test_starting_to_record_supersedes_a_file_in_progress(engine, spoken_clip, clip):
    chunks, _ = as_browser_chunks(*clip)
    upload = handlers.on_file(engine, None, str(spoken_clip), controls())
    session, _ = next(upload)
    session, _ = handlers.on_microphone_chunk(engine, session, chunks[0], controls())
    assert list(upload) == []  # the file stops at its next chunk
    assert session.source == handlers.MICROPHONE


# --- endpointing and history -----------------------------------------------------------------

def test_endpoints_build_a_bounded_scrolling_history(engine, clip, monkeypatch):
    monkeypatch.setattr(demo_session, "HISTORY_LIMIT", 3)
    chunks, _ = as_browser_chunks(*clip)
    session, view = None, None
    seen_partial = False
    for round_ in range(2):  # the clip twice: more utterances than the history keeps
        for chunk in chunks:
            session, view = handlers.on_microphone_chunk(engine, session, chunk, controls())
            assert session.wait_until_idle(30)
            seen_partial |= 'class="utterance partial"' in handlers.view_of(session).transcripts
    session, view = handlers.on_record_stop(engine, session)
    assert seen_partial
    assert len(session.history) == 3
    starts = [line.start_seconds for line in session.history]
    assert starts == sorted(starts) and starts[-1] > 2 * UTTERANCE_SECONDS
    assert view.transcripts.count('class="utterance"') == 2 * 3  # both columns, finished lines only
    assert 'class="utterance partial"' not in view.transcripts
    session, view = handlers.on_clear(engine, session)
    assert not session.history and "Nothing yet" in view.transcripts and view.picture_changed and view.picture is None


def test_stop_closes_the_last_utterance_and_keeps_it(engine, clip):
    chunks, _ = as_browser_chunks(*clip)
    session = None
    for chunk in chunks[:2]:  # 0.8 s: below the forced endpoint, so nothing finished yet
        session, view = handlers.on_microphone_chunk(engine, session, chunk, controls())
    assert session.wait_until_idle(30)
    assert not session.history and session.picture is None
    session, view = handlers.on_record_stop(engine, session)
    assert len(session.history) == 1 and session.stream is None
    assert view.picture_changed and view.picture is not None


# --- rendering -------------------------------------------------------------------------------

def test_differing_words_are_marked_in_both_columns():
    greedy_flags, beam_flags = render.differing_words("the cat sad on the mat".split(), "the cat sat on a mat".split())
    assert greedy_flags == [False, False, True, False, True, False]
    assert beam_flags == [False, False, True, False, True, False]
    html = render.transcripts_html([render.TranscriptLine("the cat sad", "the cat sat", "0:00.0-0:01.0"),
                                    render.TranscriptLine("on <b>", "on <b>", "now", final=False)])
    assert html.count('<mark class="differs">') == 2 and "sad</mark>" in html and "sat</mark>" in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert 'class="utterance partial"' in html


def test_picture_aligns_spectrogram_and_posteriorgram():
    features = np.random.default_rng(0).standard_normal((200, 80)).astype(np.float32)
    log_probs = np.log(np.full((50, 29), 0.01, np.float32))
    log_probs[10:20, 5] = 0.0
    image = render.utterance_picture(features, log_probs, 0.01, 0.04, title="test")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert render.utterance_picture(features[:0], log_probs[:0], 0.01, 0.04).shape[2] == 3  # empty utterance


def test_figures_show_speed_and_device():
    html = render.figures_html(render.LiveFigures(device="cpu (2 threads)", audio_seconds=12.34, real_time_factor=0.05,
                                                  last_chunk_ms=20, last_chunk_audio_ms=400, mean_chunk_ms=18, chunks=31))
    assert "cpu (2 threads)" in html and "12.3 s" in html and "20.0× faster" in html and "20 ms for 400 ms" in html


def test_app_builds_with_the_engine(engine):
    gradio = pytest.importorskip("gradio")
    from demo import app

    demo = app.build_app(engine)
    assert isinstance(demo, gradio.Blocks)
    rows, labels = app.example_rows()
    assert rows and len(rows) == len(labels) and all(path.endswith(".wav") for [path] in rows)


# --- comparing decoders, n-best, timings, playback, export ---------------------------------------

def test_third_column_is_the_beam_search_without_the_lm_from_the_same_frames(long_endpoint_engine, clip):
    engine = long_endpoint_engine
    chunks, pcm = as_browser_chunks(*clip)
    settings = controls(use_lm=True, alpha=2.0, beta=0.0, compare_without_lm=True)
    session, view = speak_into(engine, None, chunks, settings)
    _, _, log_probs = engine.recognizer.transcribe(pcm, 48000)
    plain = BeamSearchDecoder(options=BeamSearchOptions(beam_width=4)).decode(log_probs).text
    line = session.history[0]
    assert line.plain_beam == plain and line.beam is not None
    assert '<div class="columns three">' in view.transcripts
    assert shown_lines(view.transcripts, "plain") == [plain] and shown_lines(view.transcripts, "beam") == [line.beam]
    if plain != line.beam:  # the LM changed words: they are marked in the middle and right columns
        assert 'class="differs-lm"' in view.transcripts or 'class="differs differs-lm"' in view.transcripts
    # Off again: two columns for what follows, and no second search runs.
    session, view = handlers.on_controls_change(engine, session, controls(use_lm=True, alpha=2.0, beta=0.0))
    assert session.compare_without_lm is None


def test_switching_the_third_column_on_midway_catches_up_on_the_utterance(long_endpoint_engine, clip):
    engine = long_endpoint_engine
    chunks, pcm = as_browser_chunks(*clip)
    session, _ = handlers.on_record_start(engine, None)
    half = len(chunks) // 2
    for chunk in chunks[:half]:
        session, _ = handlers.on_microphone_chunk(engine, session, chunk, controls(use_lm=True))
    for chunk in chunks[half:]:
        session, _ = handlers.on_microphone_chunk(engine, session, chunk, controls(use_lm=True, compare_without_lm=True))
    session, _ = handlers.on_record_stop(engine, session)
    _, _, log_probs = engine.recognizer.transcribe(pcm, 48000)
    assert session.history[0].plain_beam == BeamSearchDecoder(options=BeamSearchOptions(beam_width=4)).decode(log_probs).text


def test_n_best_scores_add_up_and_each_utterance_keeps_its_own(engine, clip):
    chunks, _ = as_browser_chunks(*clip)
    session, view = speak_into(engine, None, chunks, controls(use_lm=True))
    assert len(session.history) >= 2
    for line in session.history:
        n_best = line.record.n_best
        assert n_best and n_best[0].text == line.beam
        assert all(abs(h.acoustic + h.language_model + h.word_bonus + h.hotwords - h.total) < 1e-9 for h in n_best)
    rows = re.findall(r'data-total="([^"]+)" data-acoustic="([^"]+)" data-lm="([^"]+)" data-bonus="([^"]+)" data-hotwords="([^"]+)"', view.n_best)
    assert rows and all(abs(sum(map(float, row[1:])) - float(row[0])) < 1e-9 for row in rows)
    assert f"utterance {session.history[-1].number}" in view.n_best  # the newest finished one, unless one is clicked
    session, view, audio = handlers.on_select_line(engine, session, session.history[0].number)
    assert f"utterance {session.history[0].number} " in view.n_best and 'class="utterance selected"' in view.transcripts
    rate, samples = audio
    line = session.history[0]
    expected = (line.end_seconds - line.start_seconds + 2 * demo_session.PLAYBACK_PADDING_SECONDS) * rate
    assert rate == demo_session.PLAYBACK_RATE and samples.dtype == np.int16 and abs(len(samples) - expected) <= 0.2 * rate
    # It is that stretch of what was said: the second utterance's audio matches the clip there, not elsewhere.
    second = session.history[1]
    _, cut = handlers.on_select_line(engine, session, second.number)[2]
    said = torchaudio.functional.resample(torch.from_numpy(clip[0]), clip[1], rate).numpy()
    start = int(max(0.0, second.start_seconds - demo_session.PLAYBACK_PADDING_SECONDS) * rate)

    def similarity(offset: int) -> float:
        piece, heard = said[offset : offset + len(cut)], cut[: len(said) - offset].astype(np.float32) / 32767
        return float(np.dot(piece, heard) / (np.linalg.norm(piece) * np.linalg.norm(heard) + 1e-9))

    assert similarity(start) > 0.95 and similarity(start) > similarity(max(0, start - rate // 2)) + 0.2
    session, view, audio = handlers.on_select_line(engine, session, "not a number")
    assert audio is None and not notice_errors_in(view)


def test_word_timings_and_confidence_are_shown_on_finished_lines(engine, clip):
    chunks, _ = as_browser_chunks(*clip)
    session, view = speak_into(engine, None, chunks, controls(use_lm=True))
    spans = re.findall(r'<span class="w[^"]*" data-start="([\d.]+)" data-end="([\d.]+)" data-confidence="([\d.]+)" title="[^"]+">([^<]+)</span>',
                       view.transcripts)
    words = [w for line in session.history for w in line.record.words]
    assert len(spans) == len(words) and [s[3] for s in spans] == [w.word for w in words]
    for (start, end, confidence, _), line_words in zip(spans, words):
        assert float(start) < float(end) and 0.0 <= float(confidence) <= 1.0
    low = [w for w in words if w.confidence < 0.5]
    assert view.transcripts.count('class="w low"') + view.transcripts.count('class="w very-low"') == len(low)


def test_export_writes_each_format_and_nothing_before_an_utterance(engine, clip):
    session, view, path = handlers.on_export(engine, None, "srt")
    assert path is None and "Nothing to export yet" in view.notice
    chunks, _ = as_browser_chunks(*clip)
    session, _ = speak_into(engine, session, chunks, controls(use_lm=True))
    texts = {}
    for fmt in ("txt", "srt", "json"):
        session, view, path = handlers.on_export(engine, session, fmt)
        assert path.endswith(f"transcript.{fmt}")
        texts[fmt] = open(path, encoding="utf-8").read()
    assert texts["txt"].splitlines() == [line.beam for line in session.history if line.beam]
    assert texts["srt"].startswith("1\n00:00:")
    import json
    assert [u["beam_lm"] for u in json.loads(texts["json"])["utterances"]] == [line.beam for line in session.history]
    folder = session._export_folder
    handlers.close_session(session)
    assert not __import__("os").path.exists(folder)  # a closed tab leaves no files behind


def notice_errors_in(view) -> list[str]:
    return re.findall(r'<div class="error">(.*?)</div>', view.notice)


def test_narrow_screens_stack_the_columns():
    assert "@media (max-width: 800px)" in render.CSS
    html = render.transcripts_html([render.TranscriptLine("a b", "a c", "now", final=False, plain="a d")], show_plain=True)
    assert html.count('<div class="column ') == 3 and '<div class="columns three">' in html


# --- a busy demo: slots, the line, catching up ------------------------------------------------------

def test_admission_serves_in_arrival_order_and_estimates_the_wait():
    from demo.capacity import Admission, StreamCost

    admission = Admission(2)
    admitted = []
    assert admission.request(1, lambda: admitted.append(1)) and admission.request(2, lambda: admitted.append(2))
    assert not admission.request(3, lambda: admitted.append(3)) and not admission.request(4, lambda: admitted.append(4))
    assert not admission.request(3, lambda: admitted.append(3))  # asking again keeps its place, once
    assert (admission.position(3), admission.position(4), admission.busy()) == (1, 2, (2, 2))
    first, second, third = (admission.estimated_wait(position) for position in (1, 2, 3))
    assert 0 < first <= second + 0.1 and second + 5 < third  # the third waits a whole round more
    admission.release(4)  # gave up waiting
    admission.release(1)
    deadline = __import__("time").monotonic() + 5
    while admitted != [3] and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.01)
    assert admitted == [3] and admission.holds(3) and admission.position(4) is None and admission.busy() == (2, 0)
    # Cores bound the whole cost; one core bounds the part outside the model (it holds the interpreter lock).
    assert StreamCost(0.25, 2, transport=0.0, model_seconds_per_second=0.2).slots == 5  # 0.65 * 2 / 0.25
    assert StreamCost(0.25, 2, transport=0.0).slots == 2  # 0.65 * 1 / 0.25: all of it under the lock
    assert StreamCost(0.45, 16, transport=0.05, model_seconds_per_second=0.45).slots == 13  # 0.65 / 0.05
    assert StreamCost(5.0, 2).slots == 1
    assert StreamCost(0.1, 2, transport=0.05).waiting == 2  # 0.1 / 0.05: waiting costs the transport alone


def test_a_recording_waiting_for_a_slot_keeps_its_audio_and_catches_up(tiny_checkpoint, arpa, clip):
    engine = handlers.load_engine(str(tiny_checkpoint), lm_path=str(arpa), device="cpu", slots=1)
    assert engine.admission.slots == 1 and engine.stream_cost.cpu_seconds_per_second > 0
    chunks, pcm = as_browser_chunks(*clip)
    first, _ = handlers.on_record_start(engine, None)
    first, view = handlers.on_microphone_chunk(engine, first, chunks[0], controls())
    assert re.search(r'data-name="State">live<', view.figures)
    idle, view = handlers.on_load(engine, None, controls())
    assert "Busy: all 1 live transcription slots are in use" in view.capacity and "1st in line" in view.capacity

    second, _ = handlers.on_record_start(engine, None)
    for chunk in chunks:  # says everything while waiting
        second, view = handlers.on_microphone_chunk(engine, second, chunk, controls())
    assert re.search(r'data-name="State">waiting<', view.figures) and "you are 1st in line" in view.notice
    assert not second.history and second.queued_seconds() > 0.9 * len(pcm) / 48000
    second, view = handlers.on_record_stop(engine, second)  # stops before its turn: finished once it has a slot
    assert second.finish_when_done and not second.history
    idle, view = handlers.on_tick(engine, idle)
    assert "2nd in line" in view.capacity  # the line grew since the idle tab's last view
    idle, view = handlers.on_tick(engine, idle)
    assert view is None  # nothing changed since

    handlers.on_record_stop(engine, first)  # frees the slot: the waiting recording catches up and finishes
    deadline = __import__("time").monotonic() + 60
    while second.stream is not None and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.05)
    second, view = handlers.on_tick(engine, second)
    assert view is not None and re.search(r'data-name="State">finished<', view.figures)
    greedy, _, log_probs = engine.recognizer.transcribe(pcm, 48000)
    assert [line.greedy for line in second.history] == [greedy.text]  # every word said while waiting is there
    assert not engine.admission.busy()[0] and not engine.admission.busy()[1]
    idle, view = handlers.on_tick(engine, idle)
    assert view is not None and view.capacity == ""  # the busy notice went away


def test_waiting_audio_is_bounded_and_the_page_says_what_was_not_kept(tiny_checkpoint, arpa, clip, monkeypatch):
    monkeypatch.setattr(demo_session, "MAX_WAITING_SECONDS", 1.0)
    engine = handlers.load_engine(str(tiny_checkpoint), lm_path=str(arpa), device="cpu", slots=1)
    chunks, _ = as_browser_chunks(*clip)
    first, _ = handlers.on_microphone_chunk(engine, None, chunks[0], controls())
    second = None
    for chunk in chunks[:6]:
        second, view = handlers.on_microphone_chunk(engine, second, chunk, controls())
    assert second.queued_seconds() <= 1.0 + CHUNK_SECONDS and second.audio_not_kept >= 1.0
    assert "were not kept" in view.notice
    handlers.close_session(first)
    handlers.close_session(second)
    assert engine.admission.busy() == (0, 0)


def test_past_the_line_the_page_says_not_to_speak_yet(tiny_checkpoint, arpa, clip, monkeypatch):
    """One slot and one place in line: a third recording sits in Gradio's queue (no chunk reaches it), and its page, and
    an idle page, say that what is said before it starts is not kept."""
    monkeypatch.setattr(handlers, "QUEUED_AFTER_SECONDS", 0.0)
    engine = handlers.load_engine(str(tiny_checkpoint), lm_path=str(arpa), device="cpu", slots=1, waiting=1)
    chunks, _ = as_browser_chunks(*clip)
    first, _ = handlers.on_microphone_chunk(engine, None, chunks[0], controls())
    second, view = handlers.on_microphone_chunk(engine, None, chunks[0], controls())
    assert "you are 1st in line" in view.notice
    idle, view = handlers.on_load(engine, None, controls())
    assert "as many as can wait" in view.capacity and "not kept" in view.capacity
    third, view = handlers.on_record_start(engine, None)  # its stream event is queued: no chunk comes
    assert "Your recording is queued" in view.capacity and "speak yet" in view.capacity
    third, view = handlers.on_microphone_chunk(engine, third, chunks[0], controls())  # a place freed: it runs
    assert view.capacity == ""
    for session in (first, second, third, idle):
        handlers.close_session(session)


def test_a_containers_cpu_quota_caps_the_cores(tmp_path):
    from demo.capacity import usable_cores

    affinity = usable_cores(tmp_path)  # no quota files: the affinity alone
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # one and a half CPUs' worth of time
    assert usable_cores(tmp_path) == min(affinity, 1.5)
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")  # cgroup v1: one CPU
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert usable_cores(tmp_path) == affinity
