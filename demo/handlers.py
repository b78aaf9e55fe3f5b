"""The demo's event handlers: `(engine, session, inputs) -> (session, View)`, with no Gradio in sight.

Each handler takes the tab's Session (None on its first event, or after the session was freed),
hands new audio to it, and returns what the page should show. Recognition lives in `asr/`; the
per-tab bookkeeping in `session.py`; the drawing in `render.py`.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from asr.audio import load_audio
from asr.features import AudioError, to_mono_float32
from asr.pretrained import BeamSettings
from demo import render
from asr.streaming import EndpointConfig
from demo import session as sessions
from demo.capacity import CALIBRATION_CLIP, measure_cost
from demo.session import CATCHING_UP_SECONDS, MAX_SLOTS, MAX_WAITING_SECONDS, DecoderChoice, Engine, FinishedLine, Session

log = logging.getLogger("demo")

MICROPHONE, UPLOAD = "microphone", "upload"
EXPORT_FORMATS = ("txt", "srt", "json")
UPLOAD_MAX_BYTES = 50 * 2**20
UPLOAD_MAX_SECONDS = 600.0
UPLOAD_CHUNK_SECONDS = 0.4  # files go through the Stream in chunks the size the microphone sends
UPLOAD_REFRESH_SECONDS = 0.3  # how often a file being transcribed refreshes the page
MAX_BEAM_WIDTH = 128
LATE_CHUNK_SECONDS = 3.0  # a chunk this soon after Stop, before Record is pressed again, belongs to the stopped recording


@dataclass(frozen=True)
class Controls:
    """The beam search controls as the page shows them."""

    use_lm: bool = True
    beam_width: int = BeamSettings.beam_width
    alpha: float = BeamSettings.alpha
    beta: float = BeamSettings.beta
    hotwords: str = ""  # comma-separated words or phrases
    compare_without_lm: bool = False  # a third column: the same beam search without the LM


@dataclass
class View:
    """Everything the page shows for a session; picture_changed False leaves the picture as it is."""

    transcripts: str
    figures: str
    notice: str
    picture: np.ndarray | None = None
    picture_changed: bool = False
    n_best: str = ""
    capacity: str = ""  # under the Record button: what pressing it will do when the demo is busy
    picture_token: str = ""  # changes exactly when the picture does: the page fetches the picture only then


def load_engine(model: str | None = None, lm_path: str | None = None, device: str = "auto",
                endpoint: EndpointConfig = EndpointConfig(), slots: int | None = None, waiting: int | None = None) -> Engine:
    """The demo's engine, its decoding slots and the recordings that may wait beside them sized by what one stream costs
    here (measured now), unless `slots` / `waiting` say."""
    engine = sessions.load_engine(model, lm_path, device, endpoint, slots)
    _speak_calibration_clip(engine)  # the first pass pays for loading (LM pages, allocations), not for streaming
    engine.stream_cost = cost = measure_cost(lambda: _speak_calibration_clip(engine), lambda: _step_calibration_clip(engine))
    engine.admission.resize(min(slots or cost.slots, MAX_SLOTS))
    engine.waiting_recordings = cost.waiting if waiting is None else waiting
    log.info("one stream costs %.3f CPU s per s of audio here (+%.3f for Gradio's transport; the model %.3f of it) on %g "
             "cores: %d streams decode at once%s, %d more may wait with their audio kept", cost.cpu_seconds_per_second,
             cost.transport, cost.model_seconds_per_second, cost.cores, engine.admission.slots,
             " (set by ASR_MAX_RECORDINGS)" if slots else "", engine.waiting_recordings)
    return engine


def _step_calibration_clip(engine: Engine) -> float:
    """The model alone on the calibration clip, stepped in 0.4 s chunks as a stream steps it; returns its seconds."""
    import soundfile
    import torch

    from asr.features import compute_features

    samples, rate = soundfile.read(str(CALIBRATION_CLIP), dtype="float32")
    recognizer = engine.recognizer
    features = compute_features(samples, rate, recognizer.feature_config).to(recognizer.device)
    state = recognizer.model.initial_state(1, recognizer.device)
    step = int(round(UPLOAD_CHUNK_SECONDS / recognizer.feature_config.frame_seconds))
    step -= step % recognizer.model.config.time_subsampling
    with torch.no_grad():
        for start in range(0, len(features) - step + 1, step):
            _, state = recognizer.model.step(features[None, start : start + step], state)
    return len(samples) / rate


def _speak_calibration_clip(engine: Engine) -> float:
    """A shipped clip through a fresh session as a browser sends it (48 kHz 16-bit chunks of 0.4 s, then Stop), every
    page update rendered; returns its seconds."""
    import soundfile
    import torch
    import torchaudio

    samples, rate = soundfile.read(str(CALIBRATION_CLIP), dtype="float32")
    browser_rate = 48_000
    resampled = torchaudio.functional.resample(torch.from_numpy(samples), rate, browser_rate).numpy()
    pcm = (np.clip(resampled, -1.0, 1.0) * 32767).astype(np.int16)
    step = int(UPLOAD_CHUNK_SECONDS * browser_rate)
    session, _ = on_record_start(engine, None)
    controls = default_controls(engine)
    for start in range(0, len(pcm), step):
        session, _ = on_microphone_chunk(engine, session, (browser_rate, pcm[start : start + step]), controls)
        session.wait_until_idle(30)
    on_record_stop(engine, session)
    close_session(session)
    return len(pcm) / browser_rate


def settings_for(engine: Engine, controls: Controls) -> BeamSettings:
    hotwords = tuple(word.strip().lower() for word in controls.hotwords.split(",") if word.strip())
    defaults = engine.default_settings
    return BeamSettings(use_lm=bool(controls.use_lm), lm_path=defaults.lm_path,
                        beam_width=min(max(int(controls.beam_width), 1), MAX_BEAM_WIDTH),
                        alpha=float(controls.alpha), beta=float(controls.beta), hotwords=hotwords,
                        hotword_weight=defaults.hotword_weight)


def default_controls(engine: Engine) -> Controls:
    s = engine.default_settings
    return Controls(use_lm=s.use_lm, beam_width=s.beam_width, alpha=s.alpha, beta=s.beta, hotwords=", ".join(s.hotwords))


def close_session(session: Session | None) -> None:
    """Free what a tab held (Gradio calls this when the tab's state is deleted)."""
    if session is not None:
        session.close()
        log.info("session %d closed", session.id)


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------

def on_load(engine: Engine, session: Session | None, controls: Controls) -> tuple[Session, View]:
    """A fresh page: show the settings' warnings (a missing LM) before anything is said."""
    session = _live(engine, session)
    session.choose_decoder(_decoder(engine, controls))
    session.choose_comparison(_comparison(engine, controls))
    return session, view_of(session)


def on_controls_change(engine: Engine, session: Session | None, controls: Controls) -> tuple[Session, View]:
    """Build (or fetch) the decoder for the new settings now, so the next utterance starts without a wait."""
    session = _live(engine, session)
    session.choose_decoder(_decoder(engine, controls))
    session.choose_comparison(_comparison(engine, controls))  # the third column starts or stops at once
    with session.lock:
        pending = session.stream is not None and session.upcoming != session.current
        session.info = "New beam search settings apply from the next utterance." if pending else ""
    return session, view_of(session)


def on_record_start(engine: Engine, session: Session | None) -> tuple[Session, View]:
    session = _live(engine, session)
    with session.lock:
        session.errors = []
        session.microphone_stopped_at = None
        session.record_pressed_at = time.monotonic()  # until its first chunk comes, the recording may be in Gradio's queue
    return session, view_of(session)


def on_microphone_chunk(engine: Engine, session: Session | None, audio, controls: Controls) -> tuple[Session, View]:
    """A chunk from the browser, `(sample_rate, samples)` as Gradio delivers it: checked, made mono, queued for the Stream."""
    session = _live(engine, session)
    if audio is None or _after_stop(session):
        return session, view_of(session)
    with session.lock:
        session.record_pressed_at = None  # the recording's stream event runs
    sample_rate, samples = audio
    try:  # a chunk no stream could take (no rate, not an array) is refused here, before it is queued
        samples = to_mono_float32(samples, sample_rate)
    except AudioError as error:
        with session.lock:
            session.errors = [f"{MICROPHONE}: {error}"]
        return session, view_of(session)
    choice = _decoder(engine, controls)
    session.choose_comparison(_comparison(engine, controls))
    with session.lock:
        if session.stream is None or session.source != MICROPHONE:
            session.start_stream(MICROPHONE, choice)
        else:
            session.choose_decoder(choice)
        session.enqueue(samples, sample_rate)
    return session, view_of(session)


def on_record_stop(engine: Engine, session: Session | None) -> tuple[Session, View]:
    """Stop pressed: decode what is queued and close the last utterance, so it joins the history (at once, or by the
    worker when the stream is still waiting for a slot or catching up: the timer shows it then)."""
    session = _live(engine, session)
    with session.lock:
        session.microphone_stopped_at = time.monotonic()
        session.record_pressed_at = None
        if session.source == MICROPHONE:
            session.finish_stream()
    return session, view_of(session)


def on_tick(engine: Engine, session: Session | None) -> tuple[Session | None, View | None]:
    """The page's timer: a view when something changed that no other event shows (see needs_refresh); None (nothing
    to send) otherwise."""
    return (session, view_of(session)) if needs_refresh(session) else (session, None)


def needs_refresh(session: Session | None) -> bool:
    """Whether the tab's view is out of date with nobody else to update it: a stream waiting for a slot, catching up or
    being finished by its worker, one that just finished that way, or a change in the busy notice."""
    if session is None or session.closed:
        return False
    with session.lock:
        behind = session.stream is not None and (not session.admitted or session.finish_when_done
                                                 or session.queued_seconds() > CATCHING_UP_SECONDS)
        catching_up_done = session.stream is None and session.figures.get("shown_state") in ("waiting", "catching up", "finishing")
        return behind or catching_up_done or capacity_notice(session) != session.capacity_shown


def picture_of(session: Session | None) -> np.ndarray | None:
    """The tab's current picture (fetched by the page when the view's picture_token changes)."""
    if session is None:
        return None
    with session.lock:
        session.picture_shown = session.picture_version
        return session.picture


QUEUED_AFTER_SECONDS = 1.5  # Record pressed this long ago and no chunk yet: the recording sits in Gradio's queue


def capacity_notice(session: Session) -> str:
    """What pressing Record would do now, or what a pressed Record is waiting for; nothing while a slot is free."""
    engine, admission = session.engine, session.engine.admission
    if session.stream is not None:
        return ""
    in_use, waiting = admission.busy()
    pressed = session.record_pressed_at
    if pressed is not None and time.monotonic() - pressed > QUEUED_AFTER_SECONDS:  # every place, line included, is taken
        ahead = sum(1 for other in list(engine.sessions) if other is not session and other.stream is None
                    and other.record_pressed_at is not None and other.record_pressed_at < pressed)
        wait = admission.estimated_wait(waiting + ahead + 1)
        return (f"Your recording is queued: every transcription slot and every place in line is taken ({ahead} queued "
                f"before you). Don't speak yet: what you say before it starts is not kept. It starts by itself when a place "
                f"frees ({_wait_in_words(wait)}); this notice then goes away.")
    if in_use < admission.slots and not waiting:
        return ""
    wait = admission.estimated_wait(waiting + 1)
    busy = (f"Busy: all {admission.slots} live transcription slots are in use"
            + (f" and {waiting} recording{'s' if waiting != 1 else ''} {'are' if waiting != 1 else 'is'} waiting" if waiting else ""))
    if waiting >= engine.waiting_recordings:
        return (f"{busy}, which is as many as can wait. Press Record now and your recording is queued until a place frees "
                f"({_wait_in_words(wait)}): what you say before it starts is not kept, so wait for the go-ahead here.")
    return (f"{busy}. Press Record now and you will be {_ordinal(waiting + 1)} in line ({_wait_in_words(wait)}); what you say "
            f"meanwhile is kept (up to {MAX_WAITING_SECONDS:.0f} s) and transcribed when your turn comes.")


def on_file(engine: Engine, session: Session | None, path: str | None, controls: Controls) -> Iterator[tuple[Session, View]]:
    """A file (upload or example) goes through a fresh Stream in microphone-sized chunks.

    Yields a view every UPLOAD_REFRESH_SECONDS; stops early when the tab starts another input.
    """
    session = _live(engine, session)
    if not path:
        yield session, view_of(session)
        return
    try:
        samples, sample_rate = load_audio(path, max_bytes=UPLOAD_MAX_BYTES, max_seconds=UPLOAD_MAX_SECONDS)
    except AudioError as error:
        with session.lock:
            session.errors = [_without_folders(str(error), path)]
        yield session, view_of(session)
        return
    name = Path(path).name
    log.info("session %d: file %s, %.1f s at %d Hz", session.id, name, len(samples) / sample_rate, sample_rate)
    session.choose_comparison(_comparison(engine, controls))
    number = session.start_stream(f"{UPLOAD}: {name}", _decoder(engine, controls))
    chunk = max(1, int(round(UPLOAD_CHUNK_SECONDS * sample_rate)))
    for start in range(0, len(samples), chunk):
        session.enqueue(samples[start : start + chunk], sample_rate)
    yield session, view_of(session)
    while True:  # decoding, or waiting for a slot (the view says where it stands in line)
        idle = session.wait_until_idle(UPLOAD_REFRESH_SECONDS)
        if session.stream_number != number:
            return  # superseded: the tab started recording, chose another file, or cleared
        if idle and session.admitted:
            break
        if idle:
            time.sleep(UPLOAD_REFRESH_SECONDS)
        yield session, view_of(session)
    with session.lock:
        if session.stream_number != number:
            return
        session.finish_stream()
    yield session, view_of(session)


def on_select_line(engine: Engine, session: Session | None, number) -> tuple[Session, View, tuple[int, np.ndarray] | None]:
    """A finished utterance was clicked: show its n-best, and hand back its audio to play (None once it is dropped)."""
    session = _live(engine, session)
    try:
        number = int(number)
    except (TypeError, ValueError):
        return session, view_of(session), None
    with session.lock:
        if any(line.number == number for line in session.history):
            session.selected_line = number
            audio = session.utterance_audio(number)
            session.info = "" if audio is not None else "The audio of older utterances is not kept; its n-best is shown."
        else:
            audio = None
    return session, view_of(session), audio


def on_export(engine: Engine, session: Session | None, fmt: str) -> tuple[Session, View, str | None]:
    """The session's finished utterances as a file to download: txt, srt or json."""
    session = _live(engine, session)
    fmt = (fmt or "txt").lower()
    path = session.export(fmt) if fmt in EXPORT_FORMATS else None
    with session.lock:
        session.info = "" if path else "Nothing to export yet: finished utterances are exported (speak, then pause or press Stop)."
    return session, view_of(session), path


def on_clear(engine: Engine, session: Session | None) -> tuple[Session, View]:
    session = _live(engine, session)
    session.clear()
    return session, view_of(session)


# ---------------------------------------------------------------------------------------------

def _live(engine: Engine, session: Session | None) -> Session:
    if session is None or session.closed:
        session = Session(engine)
        log.info("session %d opened", session.id)
    return session


def _without_folders(message: str, path: str) -> str:
    """The message with the upload's name instead of the server's temporary folder (even where it was cut short)."""
    name = Path(path).name
    message = message.replace(str(path), name)
    return re.sub(r"'/[^')]*'?", f"'{name}'", message)


def _after_stop(session: Session) -> bool:
    """A chunk the browser sent after Stop (the tail of a stopped recording, not the start of a new one)."""
    with session.lock:
        stopped = session.microphone_stopped_at
        return stopped is not None and session.stream is None and time.monotonic() - stopped < LATE_CHUNK_SECONDS


def _decoder(engine: Engine, controls: Controls) -> DecoderChoice:
    return engine.decoder_for(settings_for(engine, controls))


def _comparison(engine: Engine, controls: Controls) -> DecoderChoice | None:
    """The same beam search without the LM, when the third column is on (and the main search has an LM to compare)."""
    if not (controls.compare_without_lm and controls.use_lm):
        return None
    return engine.decoder_for(replace(settings_for(engine, controls), use_lm=False))


def _when(line: FinishedLine) -> str:
    """Where and when an utterance was said: "mic 0:03.2-0:05.9" or "clip.wav 0:00.0-0:02.1"."""
    where = "mic" if line.source == MICROPHONE else line.source.removeprefix(f"{UPLOAD}: ")
    return f"{where} {render.clock(line.start_seconds)}-{render.clock(line.end_seconds)}"


def view_of(session: Session) -> View:
    """What the tab should show now (the picture only when it changed since the last view)."""
    with session.lock:
        lines = [render.TranscriptLine(line.greedy, line.beam, _when(line), beam_note=line.decoder.label if line.decoder else "",
                                       plain=line.plain_beam, words=line.record.words if line.record else (), number=line.number,
                                       selected=line.number == session.selected_line)
                 for line in session.history]
        greedy, beam = session.partial
        current = session.current
        newest = current if session.stream is not None or not session.history else session.history[-1].decoder
        if session.stream is not None and (greedy or beam):
            lines.append(render.TranscriptLine(greedy, beam, "now", final=False, beam_note=current.label if current else "",
                                               plain=session.partial_plain))
        show_plain = session.compare_without_lm is not None or any(line.plain_beam is not None for line in session.history)
        # The title speaks for the newest line; each line's note says what it was decoded with.
        beam_title = "Beam search + LM" if newest is None or newest.has_lm else "Beam search (no LM)"
        figures, chunks = session.figures, session.figures.get("chunks", 0)
        live = render.LiveFigures(
            device=session.engine.device, audio_seconds=figures.get("audio_seconds", 0.0), real_time_factor=figures.get("rtf"),
            last_chunk_ms=1000 * figures["last_chunk"] if "last_chunk" in figures else None,
            last_chunk_audio_ms=1000 * figures["last_chunk_audio"] if "last_chunk_audio" in figures else None,
            mean_chunk_ms=1000 * figures["compute"] / chunks if chunks else None, chunks=chunks,
            queued_seconds=session.queued_seconds(), utterances=len(session.history), source=session.source or "idle",
            state=_state(session),
            decoder=current.label if current else "",
        )
        picture_changed = session.picture_version != session.picture_shown
        session.picture_shown = session.picture_version
        session.figures["shown_state"] = live.state
        session.capacity_shown = capacity_notice(session)
        notes = [note for note in (session.info, _line_notice(session)) if note]
        return View(transcripts=render.transcripts_html(lines, beam_title, show_plain=show_plain), figures=render.figures_html(live),
                    notice=render.notice_html(session.errors, session.warnings, " ".join(notes)),
                    picture=session.picture if picture_changed else None, picture_changed=picture_changed,
                    n_best=_n_best_view(session, beam_title), capacity=render.capacity_html(session.capacity_shown),
                    picture_token=f"{session.id}.{session.picture_version}")


def _state(session: Session) -> str:
    """idle, waiting (for a slot), catching up (decoding audio that waited), finishing (Stop pressed, queue still
    being decoded), live, or finished."""
    if session.stream is None:
        return "finished" if session.source else "idle"
    if not session.admitted:
        return "waiting"
    if session.queued_seconds() > CATCHING_UP_SECONDS:
        return "finishing" if session.finish_when_done else "catching up"
    return "finishing" if session.finish_when_done else "live"


def _line_notice(session: Session) -> str:
    """Where a waiting or catching-up stream stands, in words."""
    lost = (f" {session.audio_not_kept:.0f} s of audio beyond the {MAX_WAITING_SECONDS:.0f} s kept while waiting were not "
            "kept.") if session.audio_not_kept >= 0.05 else ""
    position = session.waiting_position()
    if position is not None:
        wait = session.engine.admission.estimated_wait(position)
        return (f"Waiting for a free transcription slot: you are {_ordinal(position)} in line ({_wait_in_words(wait)}). "
                f"Keep talking: your audio is kept ({session.queued_seconds():.0f} s so far) and transcribed when your turn "
                f"comes.{lost}")
    behind = session.queued_seconds() if session.stream is not None else 0.0
    if behind > CATCHING_UP_SECONDS:
        return f"Catching up: {behind:.1f} s of audio that waited for a slot is being transcribed.{lost}"
    return lost.strip()


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _wait_in_words(seconds: float) -> str:
    """A wait in words, as rough as the estimate is."""
    if seconds < 5:
        return "a slot should free up any moment"
    return f"about {5 * round(seconds / 5):.0f} s" if seconds < 120 else f"about {seconds / 60:.0f} min"


def _n_best_view(session: Session, beam_title: str) -> str:
    """The live n-best of the utterance under way, and the clicked (else the newest) finished utterance's final one."""
    live = session.live_n_best if session.stream is not None else []
    chosen = next((line for line in session.history if line.number == session.selected_line), None)
    chosen = chosen or (session.history[-1] if session.history else None)
    finished = chosen.record.n_best if chosen is not None and chosen.record is not None else ()
    finished_title = f"{beam_title}, utterance {chosen.number} ({_when(chosen)}), final" if chosen is not None else ""
    return render.n_best_html(live, f"{beam_title}, now", finished, finished_title)
