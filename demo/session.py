"""What the demo keeps: one shared `Engine` (recognizer + beam decoders) and one `Session` per browser tab.

A Session owns its tab's Stream. Audio is queued and fed to the Stream by a worker thread, so
the event handler that receives a microphone chunk returns at once: Gradio keeps only the newest
chunk while a stream handler is busy, and a handler that waited for the model would lose audio
whenever the machine falls behind (an LM loading, a picture drawing, another tab talking).
A worker feeds it only while the session holds one of the engine's decoding slots
(demo/capacity.py); until then the audio waits in the queue, bounded, and is decoded on admission.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr.decoding import ScoredHypothesis
from asr.features import AudioError, StreamingResampler
from asr.pretrained import DEFAULT_LM, DEFAULT_MODEL, BeamSettings, build_beam_decoder, load_recognizer
from asr.streaming import EndpointConfig, Partial, Recognizer, Stream, Utterance
from asr.transcript import UtteranceRecord, record_of
from asr.transcript import render as render_document
from demo import render
from demo.capacity import Admission, StreamCost

log = logging.getLogger("demo")

HISTORY_LIMIT = 200  # finished utterances kept per session, oldest dropped first
DECODER_CACHE_SIZE = 8
MAX_SLOTS = 64  # whatever the measured cost says, no more streams decode at once (and no more worker threads)
MAX_WAITING_SECONDS = 60.0  # audio a stream waiting for a slot keeps; past it the page says what is not kept
CATCHING_UP_SECONDS = 1.0  # a stream with more than this queued is shown as catching up
# A microphone stream that got no audio for this long lost its browser without a Stop (time limit, network): it is
# finished, so its slot goes to who waits. A recording tab sends chunks every 0.4 s, silence included.
SILENT_STREAM_SECONDS = 10.0
REAPER_SECONDS = 2.0
FINISH_TIMEOUT_SECONDS = 60.0  # how long Stop waits for queued audio before giving the stream up
SUPERSEDE_TIMEOUT_SECONDS = 2.0  # a new input waits this long for the old one's queue, then drops it
N_BEST_REFRESH_SECONDS = 1.0  # the live n-best panel is listed at most this often (a display, not a per-frame cost)
PLAYBACK_SECONDS = 300.0  # the newest finished utterances keep their audio for playback, this much in all (16 kHz
# 16-bit: 9.6 MB a tab at most); older ones lose it (their n-best and words stay)
PLAYBACK_RATE = 16_000
PLAYBACK_PADDING_SECONDS = 0.15  # utterance bounds come from output frames; a little margin keeps word edges audible
RETAINED_AUDIO_SECONDS = 45.0  # audio kept for the utterance under way (endpointing closes one at 30 s)


class DecoderCache:
    """Beam decoders by settings, least recently used dropped first; decoders are read-only and shared."""

    def __init__(self, capacity: int = DECODER_CACHE_SIZE):
        self.capacity = capacity
        self._decoders: OrderedDict[BeamSettings, tuple[object, str | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0

    def put(self, settings: BeamSettings, decoder, warning: str | None) -> None:
        with self._lock:
            self._decoders[settings] = (decoder, warning)
            self._trim()

    def get(self, settings: BeamSettings) -> tuple[object, str | None]:
        with self._lock:  # one build at a time: loading an LM twice at once would only waste memory
            if settings in self._decoders:
                self._decoders.move_to_end(settings)
                return self._decoders[settings]
            entry = build_beam_decoder(settings)
            self.builds += 1
            self._decoders[settings] = entry
            self._trim()
            return entry

    def _trim(self) -> None:
        while len(self._decoders) > self.capacity:
            self._decoders.popitem(last=False)


@dataclass(frozen=True)
class DecoderChoice:
    """Beam settings with the decoder built for them (and the warning if its LM could not be used)."""

    settings: BeamSettings
    decoder: object
    warning: str | None

    @property
    def has_lm(self) -> bool:
        return bool(getattr(self.decoder, "has_language_model", False))

    @property
    def label(self) -> str:
        s = self.settings
        parts = [f"width {s.beam_width}", f"LM α={s.alpha:g} β={s.beta:g}" if self.has_lm else "no LM"]
        if s.hotwords:
            parts.append("hotwords: " + ", ".join(s.hotwords))
        return ", ".join(parts)


@dataclass
class Engine:
    """Shared by every session: the recognizer, the decoder cache, the worker threads, and their description."""

    recognizer: Recognizer
    default_settings: BeamSettings
    decoders: DecoderCache
    device: str
    model_name: str
    lm_name: str
    admission: Admission = field(default_factory=lambda: Admission(4))
    waiting_recordings: int = 4  # recordings that may wait in line with their audio kept (the app's stream limit adds them)
    stream_cost: StreamCost | None = None  # what sized the admission, when it was measured
    workers: ThreadPoolExecutor | None = None  # one thread per slot: only streams holding a slot decode

    sessions: weakref.WeakSet = field(default_factory=weakref.WeakSet)  # the open tabs, for the reaper

    def __post_init__(self):
        if self.workers is None:
            self.workers = ThreadPoolExecutor(MAX_SLOTS, thread_name_prefix="decode")  # threads start as needed: at most one per slot
        threading.Thread(target=self._reap_silent_streams, name="reaper", daemon=True).start()

    def _reap_silent_streams(self) -> None:
        while True:
            time.sleep(REAPER_SECONDS)
            for session in list(self.sessions):
                try:
                    session.finish_if_silent(SILENT_STREAM_SECONDS)
                except Exception:  # noqa: BLE001 - a bug here must not stop the reaper for every other tab
                    log.exception("session %d: finishing a silent stream failed", session.id)

    def decoder_for(self, settings: BeamSettings) -> DecoderChoice:
        decoder, warning = self.decoders.get(settings)
        return DecoderChoice(settings, decoder, warning)


def load_engine(model: str | None = None, lm_path: str | None = None, device: str = "auto",
                endpoint: EndpointConfig = EndpointConfig(), slots: int | None = None) -> Engine:
    """The one place the demo makes its Recognizer; `slots` streams decode at once (None: one for now, until
    handlers.load_engine has measured what a stream costs)."""
    # One intra-op thread: the decode workers and the dispatcher already keep both vCPUs busy, and
    # OpenMP threads spinning against them made steps several times slower on a shared 2-core box.
    torch.set_num_threads(int(os.environ.get("ASR_TORCH_THREADS", "1")))
    settings = BeamSettings(lm_path=lm_path)
    # Batch Dispatch: the chunks that concurrent sessions have waiting run through the model as one batch.
    loaded = load_recognizer(model, settings, device=device, endpoint=endpoint, batch_dispatch=True)
    recognizer = loaded.recognizer
    decoders = DecoderCache()
    decoders.put(settings, recognizer.beam_decoder, loaded.warnings[0] if loaded.warnings else None)
    return Engine(recognizer, settings, decoders, device=describe_device(recognizer.device),
                  model_name=Path(str(model or DEFAULT_MODEL)).name, lm_name=Path(str(lm_path or DEFAULT_LM)).name,
                  admission=Admission(min(slots or 1, MAX_SLOTS)))


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


@dataclass
class FinishedLine:
    """One finished utterance as the history shows it."""

    greedy: str
    beam: str | None
    start_seconds: float
    end_seconds: float
    source: str
    decoder: DecoderChoice | None  # what its beam search ran with
    plain_beam: str | None = None  # the comparison beam search without the LM, where it ran
    record: UtteranceRecord | None = None  # word timings, confidences and n-best, for display and export
    number: int = 0  # the session's count of finished lines: what the page names it by when it is clicked
    audio: tuple[int, np.ndarray] | None = None  # (sample rate, int16 samples) for playback; dropped when old


class AudioRetainer:
    """The recent audio of the open stream at 16 kHz, so a finished utterance can be cut out of it for playback."""

    def __init__(self):
        self.rate = PLAYBACK_RATE
        self._resampler: StreamingResampler | None = None  # from the stream's input rate, carried across chunks
        self.chunks: deque[np.ndarray] = deque()  # int16 at self.rate
        self.start_seconds = 0.0  # stream time of the first kept sample
        self.kept = 0  # samples in chunks

    def add(self, samples: np.ndarray, rate: int) -> None:
        if self._resampler is None or self._resampler.input_rate != rate:
            self._resampler = StreamingResampler(rate, self.rate)  # a rate change midway (rare) starts afresh
        mono = np.nan_to_num(np.asarray(samples, dtype=np.float32))
        resampled = self._resampler.accept(torch.from_numpy(np.ascontiguousarray(mono))).numpy()
        chunk = (np.clip(resampled, -1.0, 1.0) * 32767).astype(np.int16)
        self.chunks.append(chunk)
        self.kept += len(chunk)
        while self.chunks and self.kept - len(self.chunks[0]) >= RETAINED_AUDIO_SECONDS * self.rate:
            self.start_seconds += len(self.chunks[0]) / self.rate
            self.kept -= len(self.chunks.popleft())

    def cut(self, start_seconds: float, end_seconds: float) -> tuple[int, np.ndarray] | None:
        """The audio between two stream times (padded a little), or None where it is no longer kept."""
        if self.rate is None or not self.chunks:
            return None
        first = int(max(0.0, start_seconds - PLAYBACK_PADDING_SECONDS - self.start_seconds) * self.rate)
        last = int(max(0.0, end_seconds + PLAYBACK_PADDING_SECONDS - self.start_seconds) * self.rate)
        samples = np.concatenate(self.chunks)[first:last]
        return (self.rate, samples.copy()) if len(samples) else None


_session_ids = itertools.count(1)


class Session:
    """One browser tab: its Stream, queued audio, history and figures; never shared between tabs."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.id = next(_session_ids)
        self.lock = threading.RLock()  # guards every field; never held while the model runs
        self._idle = threading.Condition(self.lock)
        self.stream: Stream | None = None
        self.source = ""  # "microphone" or "upload: <file name>"
        self.stream_number = 0  # bumps whenever a stream starts or is dropped; queued audio carries it
        self.current: DecoderChoice | None = None  # the beam decoder of the utterance being decoded
        self.upcoming: DecoderChoice | None = None  # the one the next utterance will start with
        self.history: deque[FinishedLine] = deque(maxlen=HISTORY_LIMIT)
        self.lines_finished = 0
        self.partial: tuple[str, str | None] = ("", None)
        self.partial_plain: str | None = None  # the comparison search's text for the utterance under way
        self.live_n_best: list[ScoredHypothesis] = []
        self._n_best_listed_at = 0.0
        self.compare_without_lm: DecoderChoice | None = None  # the no-LM search shown beside the main one, when on
        self._audio = AudioRetainer()
        self._export_folder: str | None = None
        self.exports_made = 0
        self.last_audio_at = time.monotonic()
        engine.sessions.add(self)
        self.selected_line: int | None = None  # the finished line the tab clicked (its n-best is shown, its audio played)
        self.figures: dict = {}
        self.picture: np.ndarray | None = None
        self.picture_version = 0  # bumps with every new picture, so a view sends it only once
        self.picture_shown = -1  # the version the tab has

        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.info = ""
        self.closed = False
        self.microphone_stopped_at: float | None = None  # when Stop was last pressed (time.monotonic)
        self.admitted = False  # the open stream holds a decoding slot (engine.admission)
        self.finish_when_done = False  # Stop came while audio was still queued: the worker finishes the stream
        self.audio_not_kept = 0.0  # seconds of audio refused while waiting too long for a slot
        self.capacity_shown = ""  # the busy notice the tab has, so a timer tick sends only changes
        self.record_pressed_at: float | None = None  # Record pressed, its first chunk not yet here (time.monotonic)
        self._queue: deque[tuple[int, np.ndarray, int]] = deque()  # (stream number, samples, sample rate)
        self._draining = False

    # --- settings ------------------------------------------------------------------------------

    def choose_comparison(self, choice: DecoderChoice | None) -> None:
        """Show (a no-LM beam decoder) or hide (None) the third column; it starts on the utterance under way."""
        with self.lock:
            self.compare_without_lm = choice
            if self.stream is not None:
                self.stream.plain_beam_decoder = choice.decoder if choice is not None else None
            if choice is None:
                self.partial_plain = None

    def choose_decoder(self, choice: DecoderChoice) -> None:
        """Use `choice` from the next utterance on (at once when no utterance is under way)."""
        with self.lock:
            self.warnings = [choice.warning] if choice.warning else []
            if choice == self.upcoming:
                return
            self.upcoming = choice
            if self.stream is not None:
                self.stream.beam_decoder = choice.decoder  # the Stream builds each new utterance's beam state from it
            else:
                self.current = choice

    # --- streams -------------------------------------------------------------------------------

    def start_stream(self, source: str, choice: DecoderChoice) -> int:
        """Finish whatever stream is open (dropping it if its queue is long), then open a fresh one; it decodes at once
        if a slot is free, else its audio waits (kept) until one is."""
        with self.lock:
            self.finish_stream(timeout=SUPERSEDE_TIMEOUT_SECONDS)
            self.finish_when_done, self.audio_not_kept = False, 0.0
            comparison = self.compare_without_lm
            self.stream = self.engine.recognizer.create_stream(beam_decoder=choice.decoder,
                                                               plain_beam_decoder=comparison.decoder if comparison else None)
            self._audio = AudioRetainer()
            self.admitted = self.engine.admission.request(self.id, self._on_admitted)  # keeps a slot it already holds
            self.last_audio_at = time.monotonic()
            self.source = source
            self.stream_number += 1
            self.current = self.upcoming = choice
            self.warnings = [choice.warning] if choice.warning else []
            self.partial, self.partial_plain, self.live_n_best = ("", ""), None, []
            self.figures = {"chunks": 0, "compute": 0.0}
            self.errors, self.info = [], ""
            return self.stream_number

    def enqueue(self, samples, sample_rate: int) -> None:
        """Queue audio for the open stream; a worker feeds it to the Stream in arrival order once it holds a slot."""
        with self.lock:
            if self.stream is None:
                return
            if not self.admitted and self.queued_seconds() >= MAX_WAITING_SECONDS:
                self.audio_not_kept += len(samples) / sample_rate  # bounded memory per waiting tab; the page says so
                return
            self._queue.append((self.stream_number, samples, sample_rate))
            self.last_audio_at = time.monotonic()
            self._start_draining()

    def _start_draining(self) -> None:
        if self.admitted and self._queue and not self._draining:
            self._draining = True
            self.engine.workers.submit(self._drain)

    def _on_admitted(self) -> None:
        """A slot freed up for this session (called by the admission): decode what waited."""
        with self.lock:
            if self.stream is None:  # the stream ended while it waited: pass the slot on
                self.engine.admission.release(self.id)
                return
            self.admitted = True
            self._start_draining()
            if not self._queue and self.finish_when_done:
                self._finalize_stream()

    def finish_if_silent(self, seconds: float) -> None:
        """Finish a microphone stream that has had no audio for `seconds` (its recording ended without a Stop)."""
        with self.lock:
            if self.stream is not None and self.source == "microphone" and time.monotonic() - self.last_audio_at > seconds:
                log.info("session %d: no audio for %.0f s; finishing its stream", self.id, seconds)
                self.finish_stream(wait=False)

    def waiting_position(self) -> int | None:
        with self.lock:
            return self.engine.admission.position(self.id) if self.stream is not None and not self.admitted else None

    def queued_seconds(self) -> float:
        with self.lock:
            return sum(len(samples) / rate for _, samples, rate in self._queue)

    def wait_until_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing queued will be decoded without waiting for a slot first; False on timeout."""
        with self.lock:
            return self._idle.wait_for(lambda: not self._draining and (not self._queue or not self.admitted), timeout)

    def finish_stream(self, timeout: float = FINISH_TIMEOUT_SECONDS, wait: bool = True) -> bool:
        """Decode what is queued, flush the Stream and close its last utterance; True if that drew a picture.

        A stream still waiting for a slot is finished by its worker once it has one and everything is decoded
        (`finish_when_done`); so is any with `wait` False."""
        with self.lock:
            stream = self.stream
            if stream is None:
                return False
            if not self.admitted or not wait:
                self.finish_when_done = True
                if self.admitted and not self._queue and not self._draining:
                    self._finalize_stream()
                return False
            idle = self.wait_until_idle(timeout)  # releases the lock while it waits
            if self.stream is not stream:
                return False  # another handler finished or replaced it meanwhile
            if not idle:
                log.warning("session %d: gave up waiting for queued audio; dropping the stream", self.id)
                self.drop_stream()
                return False
            return self._finalize_stream()

    def _finalize_stream(self) -> bool:
        """Flush the open Stream (its queue decoded), close its last utterance, free its slot; lock held."""
        stream = self.stream
        self.stream = None
        self.stream_number += 1
        self.finish_when_done = False
        partial = stream.finalize()
        picture = self._picture(partial.finished[-1], self.source) if partial.finished else None
        self._absorb(partial, picture)
        self.partial, self.partial_plain, self.live_n_best, self.info = ("", None), None, [], ""
        self._release_slot()
        return picture is not None

    def _release_slot(self) -> None:
        self.admitted = False
        self.engine.admission.release(self.id)  # may admit the next session (its callback takes its own lock)

    def drop_stream(self) -> None:
        """Forget the open stream and its queued audio without decoding them."""
        with self.lock:
            self.stream = None
            self.stream_number += 1
            self._queue.clear()
            self.partial, self.partial_plain, self.live_n_best = ("", None), None, []
            self.finish_when_done = False
            self._release_slot()

    def clear(self) -> None:
        with self.lock:
            self.drop_stream()
            self.source = ""
            self.history.clear()
            self._remove_exports()
            self.figures = {}
            self.set_picture(None)
            self.errors, self.info = [], ""

    def close(self) -> None:
        """The tab is gone: free the stream, queued audio, history and picture."""
        with self.lock:
            self.clear()
            self.closed = True

    # --- the worker ----------------------------------------------------------------------------

    def _drain(self) -> None:
        """Feed queued chunks to the Stream until the queue is empty; runs on an engine worker thread."""
        try:
            while True:
                with self.lock:
                    while self._queue and self._queue[0][0] != self.stream_number:
                        self._queue.popleft()  # audio of a stream since finished or dropped
                    if not self._queue or not self.admitted:
                        if self.finish_when_done and self.stream is not None and self.admitted:
                            self._finalize_stream()  # Stop came while this was catching up
                        return
                    number, samples, sample_rate = self._queue.popleft()
                    stream, source = self.stream, self.source
                try:
                    partial = stream.accept(samples, sample_rate)  # the model runs without the lock held
                except AudioError as error:
                    with self.lock:
                        self.errors = [f"{source}: {error}"]
                    continue
                now = time.monotonic()
                picture = self._picture(partial.finished[-1], source) if partial.finished else None
                n_best = None
                if partial.finished or now - self._n_best_listed_at >= N_BEST_REFRESH_SECONDS:
                    n_best, self._n_best_listed_at = stream.live_n_best(), now  # this worker alone drives the stream
                with self.lock:
                    if number == self.stream_number:
                        self._audio.add(samples, sample_rate)
                        self._absorb(partial, picture)
                        if n_best is not None:
                            self.live_n_best = n_best
        except Exception:  # a bug, not bad audio: keep the server up and say so on the page
            log.exception("session %d: decoding failed", self.id)
            with self.lock:
                self.errors = ["Decoding failed with an internal error; the stream was stopped (see the server log)."]
                self.drop_stream()
        finally:
            with self.lock:
                self._draining = False
                self._idle.notify_all()

    def _absorb(self, partial: Partial, picture: np.ndarray | None) -> None:
        for utterance in partial.finished:
            self._add_to_history(utterance)
            self.current = self.upcoming  # the utterance after it started with this decoder
        if self.info and self.current == self.upcoming:
            self.info = ""
        self.partial, self.partial_plain = (partial.greedy, partial.beam), partial.plain_beam
        self.figures.update(audio_seconds=partial.audio_seconds, rtf=partial.real_time_factor)
        if partial.chunk_seconds > 0:  # the end-of-stream flush carries no audio of its own
            self.figures["chunks"] = self.figures.get("chunks", 0) + 1
            self.figures["compute"] = self.figures.get("compute", 0.0) + partial.compute_seconds
            self.figures.update(last_chunk=partial.compute_seconds, last_chunk_audio=partial.chunk_seconds)
        if picture is not None:
            self.set_picture(picture)

    def set_picture(self, picture: np.ndarray | None) -> None:
        self.picture = picture
        self.picture_version += 1

    def _add_to_history(self, utterance: Utterance) -> None:
        if not utterance.greedy.text and not (utterance.beam and utterance.beam.text):
            return  # a pause-only stretch: nothing to list
        has_lm = self.current.has_lm if self.current is not None else False
        record = record_of(utterance, self.engine.recognizer.seconds_per_output_frame, has_lm, source=self.source)
        self.lines_finished += 1
        self.history.append(FinishedLine(utterance.greedy.text, utterance.beam.text if utterance.beam else None,
                                         utterance.start_seconds, utterance.end_seconds, self.source, self.current,
                                         plain_beam=utterance.plain_beam.text if utterance.plain_beam else None,
                                         record=record, number=self.lines_finished,
                                         audio=self._audio.cut(utterance.start_seconds, utterance.end_seconds)))
        kept = 0.0
        for line in reversed(self.history):  # newest first: the oldest lose their audio once the budget is spent
            if line.audio is not None:
                kept += len(line.audio[1]) / line.audio[0]
                if kept > PLAYBACK_SECONDS:
                    line.audio = None

    # --- what the page asks for ----------------------------------------------------------------

    def utterance_audio(self, number: int) -> tuple[int, np.ndarray] | None:
        """The audio of finished line `number`, while it is still kept."""
        with self.lock:
            line = next((line for line in self.history if line.number == number), None)
            return line.audio if line is not None else None

    def export(self, fmt: str) -> str | None:
        """The finished utterances as a TXT, SRT or JSON file (a fresh path each time); None while there are none."""
        with self.lock:
            records = [line.record for line in self.history if line.record is not None]
            if not records:
                return None
            about = {"model": self.engine.model_name, "language_model": self.engine.lm_name,
                     "decoders": sorted({line.decoder.label for line in self.history if line.decoder is not None})}
            document = render_document(records, fmt, about)
            if self._export_folder is None:
                self._export_folder = tempfile.mkdtemp(prefix=f"asr-session-{self.id}-")
            self.exports_made += 1
            path = Path(self._export_folder) / str(self.exports_made) / f"transcript.{fmt}"
            path.parent.mkdir()
            path.write_text(document, encoding="utf-8")
            return str(path)

    def _remove_exports(self) -> None:
        if self._export_folder is not None:
            shutil.rmtree(self._export_folder, ignore_errors=True)
            self._export_folder = None

    def _picture(self, utterance: Utterance, source: str) -> np.ndarray:
        recognizer = self.engine.recognizer
        title = f"utterance {utterance.index + 1} · {source} · {render.clock(utterance.start_seconds)}-{render.clock(utterance.end_seconds)}"
        return render.utterance_picture(utterance.features, utterance.log_probs, recognizer.feature_config.frame_seconds,
                                        recognizer.seconds_per_output_frame, title=title)
