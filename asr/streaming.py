"""A Recognizer (read-only: weights, settings, decoders) serves many Streams (one per speaker).

Stream.accept(samples, sample_rate) takes any chunk: features -> model.step -> greedy and beam
decoders, each consuming only the new frames. Endpointing closes an utterance after a pause so
that hour-long sessions keep bounded decoder state and a bounded history for pictures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Protocol

import numpy as np
import torch

from asr.decoding import DecodeResult, GreedyDecoder, ScoredHypothesis
from asr.features import FeatureConfig, StreamingFeaturizer, compute_features
from asr.model import DeepSpeech2, StreamState, fold_batchnorms
from asr.text import BLANK_INDEX, SPACE_INDEX


class DecoderStream(Protocol):
    def extend(self, log_probs: np.ndarray) -> None: ...
    def result(self) -> DecodeResult: ...
    def finalize(self) -> DecodeResult: ...


class Decoder(Protocol):
    def new_stream(self) -> DecoderStream: ...


N_BEST = 5  # hypotheses an utterance keeps of its beam search, scores split (for display and export)


# (features (1, T, n_mels), state) -> (log_probs (1, T_out, labels), new state); Batch Dispatch supplies its own.
StepFunction = Callable[[torch.Tensor, StreamState], tuple[torch.Tensor, StreamState]]


@dataclass(frozen=True)
class EndpointConfig:
    enabled: bool = True
    pause_seconds: float = 0.8  # this much blank after a word closes the utterance
    max_utterance_seconds: float = 30.0  # forced close so decoder state and pictures stay bounded
    blank_threshold: float = 0.9


@dataclass
class Utterance:
    """A finished utterance: both transcripts, and what the app needs for its picture."""

    index: int
    start_seconds: float
    end_seconds: float
    greedy: DecodeResult
    beam: DecodeResult | None
    features: np.ndarray  # (frames, n_mels) log-mel
    log_probs: np.ndarray  # (frames / subsampling, labels)
    plain_beam: DecodeResult | None = None  # the comparison beam search without an LM, where one ran
    n_best: tuple[ScoredHypothesis, ...] = ()  # the beam search's best final hypotheses


@dataclass
class Partial:
    greedy: str  # the current utterance so far
    beam: str | None
    new_log_probs: np.ndarray
    finished: list[Utterance]  # utterances this chunk closed
    audio_seconds: float  # total audio accepted by the stream
    chunk_seconds: float  # audio in this chunk
    compute_seconds: float  # wall time spent on this chunk
    real_time_factor: float  # total compute / total audio (below 1 is faster than real time)
    plain_beam: str | None = None  # the comparison beam search (no LM) on the current utterance, where one runs


class Recognizer:
    """Weights and settings shared read-only by every stream."""

    def __init__(self, model: DeepSpeech2, feature_config: FeatureConfig, beam_decoder: Decoder | None = None,
                 endpoint: EndpointConfig = EndpointConfig(), device: str | torch.device = "cpu", step_function: StepFunction | None = None):
        self.model = fold_batchnorms(model.to(device).eval())  # idempotent: a folded model is used as it is
        self.feature_config = feature_config
        self.greedy_decoder = GreedyDecoder()
        self.beam_decoder = beam_decoder
        self.endpoint = endpoint
        self.device = torch.device(device)
        self.step_function = step_function or self.model.step

    @property
    def seconds_per_output_frame(self) -> float:
        return self.feature_config.frame_seconds * self.model.config.time_subsampling

    def create_stream(self, endpoint: EndpointConfig | None = None, beam_decoder: Decoder | None = None,
                      plain_beam_decoder: Decoder | None = None) -> "Stream":
        return Stream(self, endpoint or self.endpoint, beam_decoder if beam_decoder is not None else self.beam_decoder,
                      plain_beam_decoder)

    def transcribe(self, samples, sample_rate: int) -> tuple[DecodeResult, DecodeResult | None, np.ndarray]:
        """Offline: the whole signal at once through `forward`; returns greedy, beam and log-probs."""
        features = compute_features(samples, sample_rate, self.feature_config)
        if len(features) == 0:  # shorter than one analysis window: nothing to hear, as the streaming path finds
            log_probs = np.zeros((0, self.model.config.num_labels), dtype=np.float32)
        else:
            with torch.no_grad():
                log_probs, _ = self.model(features[None].to(self.device), torch.tensor([len(features)], device=self.device))
            log_probs = log_probs[0].float().cpu().numpy()
        beam = self.beam_decoder.new_stream() if self.beam_decoder else None
        if beam is not None:
            beam.extend(log_probs)
        return self.greedy_decoder.decode(log_probs), beam.finalize() if beam else None, log_probs


class Stream:
    """One speaker's state: featurizer remainder, model state, decoder hypotheses, current utterance."""

    def __init__(self, recognizer: Recognizer, endpoint: EndpointConfig, beam_decoder: Decoder | None,
                 plain_beam_decoder: Decoder | None = None):
        self.recognizer = recognizer
        self.endpoint = endpoint
        self.beam_decoder = beam_decoder
        # A second beam search beside the first (the demo's "without the LM" column). Assigning it (from any thread)
        # takes effect at the next chunk: the current utterance's frames so far are decoded once to catch up.
        self.plain_beam_decoder = plain_beam_decoder
        self.plain_beam = None
        self.featurizer = StreamingFeaturizer(recognizer.feature_config)
        self.model_state = recognizer.model.initial_state(1, recognizer.device)
        self._held_frames = torch.zeros(0, recognizer.feature_config.n_mels)
        self.audio_seconds = 0.0
        self.compute_seconds = 0.0
        self.utterances_done = 0
        self.finished = False
        self._start_utterance(start_seconds=0.0)

    def accept(self, samples, sample_rate: int) -> Partial:
        """Feed a chunk; raises asr.features.AudioError on unusable audio (the stream stays usable)."""
        if self.finished:
            raise RuntimeError("stream already finalized")
        started = time.perf_counter()
        frames = self.featurizer.accept(samples, sample_rate)
        chunk_seconds = len(np.asarray(samples)) / sample_rate
        return self._process(frames, chunk_seconds, started, end_of_stream=False)

    def finalize(self) -> Partial:
        """End of audio: flush features and the model's lookahead, close the last utterance."""
        started = time.perf_counter()
        partial = self._process(self.featurizer.finalize(), 0.0, started, end_of_stream=True)
        self.finished = True
        return partial

    def _process(self, frames: torch.Tensor, chunk_seconds: float, started: float, end_of_stream: bool) -> Partial:
        self._follow_plain_beam_decoder()
        log_probs = self._run_model(frames, flush=end_of_stream)
        if end_of_stream:
            tail, self.model_state = self.recognizer.model.finish(self.model_state)
            log_probs = np.concatenate([log_probs, tail[0].float().cpu().numpy()])
        self._features.append(frames.numpy())
        finished = self._decode(log_probs, end_of_stream)
        self.audio_seconds += chunk_seconds
        elapsed = time.perf_counter() - started
        self.compute_seconds += elapsed
        return Partial(
            greedy=self.greedy.result().text, beam=self.beam.result().text if self.beam else None,
            new_log_probs=log_probs, finished=finished, audio_seconds=self.audio_seconds, chunk_seconds=chunk_seconds,
            compute_seconds=elapsed, real_time_factor=self.compute_seconds / max(self.audio_seconds, 1e-9),
            plain_beam=self.plain_beam.result().text if self.plain_beam else None,
        )

    def live_n_best(self, count: int = N_BEST) -> list[ScoredHypothesis]:
        """The beam search's best hypotheses for the utterance so far (call between chunks, from the feeding thread)."""
        listing = getattr(self.beam, "n_best", None)
        return listing(count) if listing is not None else []

    def _follow_plain_beam_decoder(self) -> None:
        """Start (catching up on this utterance's frames) or stop the comparison search when its decoder changed."""
        wanted = self.plain_beam_decoder
        if wanted is None:
            self.plain_beam, self._plain_from = None, None
        elif wanted is not getattr(self, "_plain_from", None):
            self.plain_beam, self._plain_from = wanted.new_stream(), wanted
            if self._log_probs:
                self.plain_beam.extend(np.concatenate(self._log_probs))

    def _run_model(self, frames: torch.Tensor, flush: bool = False) -> np.ndarray:
        """Step the model on whole multiples of the time subsampling (the rest, under one output frame, waits), so
        streams send uniformly shaped chunks and Batch Dispatch can stack them; exact for any split."""
        frames = torch.cat([self._held_frames, frames])
        usable = len(frames) if flush else len(frames) - len(frames) % self.recognizer.model.config.time_subsampling
        frames, self._held_frames = frames[:usable], frames[usable:]
        if usable == 0:
            return np.zeros((0, self.recognizer.model.config.num_labels), dtype=np.float32)
        log_probs, self.model_state = self.recognizer.step_function(frames[None].to(self.recognizer.device), self.model_state)
        return log_probs[0].float().cpu().numpy()

    def _decode(self, log_probs: np.ndarray, end_of_stream: bool) -> list[Utterance]:
        """Feed frames to the decoders, splitting at endpoints; returns the utterances that closed."""
        finished = []
        is_blank = np.exp(log_probs[:, BLANK_INDEX]) >= self.endpoint.blank_threshold
        is_letter = log_probs.argmax(axis=1) > SPACE_INDEX  # a letter or apostrophe is the best label
        start = 0
        while start < len(log_probs):
            cut = self._endpoint_within(is_blank[start:], is_letter[start:])
            end = len(log_probs) if cut is None else start + cut
            self._extend_decoders(log_probs[start:end], is_blank[start:end], is_letter[start:end])
            start = end
            if cut is not None:
                finished.append(self._close_utterance())
        if end_of_stream and (self._utterance_frames or self.greedy.result().text):
            finished.append(self._close_utterance())
        elif finished:
            self._reset_recurrent_state()
        return finished

    def _reset_recurrent_state(self) -> None:
        """After an endpoint the GRUs start afresh. They were trained on utterances of seconds; a hidden state
        carried through many minutes drifts (bench/long_stream.py: pauses stopped being found after ~15 min)."""
        fresh = self.recognizer.model.initial_state(1, self.recognizer.device)
        self.model_state = replace(self.model_state, rnn_hidden=fresh.rnn_hidden)

    def _endpoint_within(self, is_blank: np.ndarray, is_letter: np.ndarray) -> int | None:
        """Frame count after which the current utterance should close (a pause after speech, or the length cap), or None."""
        if not self.endpoint.enabled:
            return None
        seconds_per_frame = self.recognizer.seconds_per_output_frame
        pause_frames = max(1, round(self.endpoint.pause_seconds / seconds_per_frame))
        max_frames = round(self.endpoint.max_utterance_seconds / seconds_per_frame)
        run, speech = self._blank_run, self._speech_seen
        for index, (blank, letter) in enumerate(zip(is_blank, is_letter)):
            run = run + 1 if blank else 0
            speech = speech or letter
            if (run >= pause_frames and speech) or self._utterance_frames + index + 1 >= max_frames:
                return index + 1
        return None

    def _extend_decoders(self, log_probs: np.ndarray, blank: np.ndarray, is_letter: np.ndarray) -> None:
        self.greedy.extend(log_probs)
        if self.beam:
            self.beam.extend(log_probs)
        if self.plain_beam:
            self.plain_beam.extend(log_probs)
        self._speech_seen = self._speech_seen or bool(is_letter.any())
        trailing = len(blank) - (np.flatnonzero(~blank)[-1] + 1) if (~blank).any() else len(blank)
        self._blank_run = trailing if trailing < len(blank) else self._blank_run + len(blank)
        self._utterance_frames += len(log_probs)
        self._log_probs.append(log_probs)

    def _close_utterance(self) -> Utterance:
        seconds_per_frame = self.recognizer.seconds_per_output_frame
        end = self._start_seconds + self._utterance_frames * seconds_per_frame
        features = np.concatenate(self._features) if self._features else np.zeros((0, self.recognizer.feature_config.n_mels), np.float32)
        feature_frames = round(self._utterance_frames * self.recognizer.model.config.time_subsampling)
        utterance = Utterance(
            index=self.utterances_done, start_seconds=self._start_seconds, end_seconds=end,
            greedy=self.greedy.finalize(), beam=self.beam.finalize() if self.beam else None,
            features=features[:feature_frames],
            log_probs=np.concatenate(self._log_probs) if self._log_probs else np.zeros((0, self.recognizer.model.config.num_labels), np.float32),
            plain_beam=self.plain_beam.finalize() if self.plain_beam else None,
            n_best=tuple(self.beam.final_n_best(N_BEST)) if hasattr(self.beam, "final_n_best") else (),
        )
        self.utterances_done += 1
        leftover = features[feature_frames:]
        self._start_utterance(end)
        if len(leftover):
            self._features.append(leftover)
        return utterance

    def _start_utterance(self, start_seconds: float) -> None:
        self.greedy = self.recognizer.greedy_decoder.new_stream()
        self.beam = self.beam_decoder.new_stream() if self.beam_decoder else None
        self._plain_from = self.plain_beam_decoder
        self.plain_beam = self.plain_beam_decoder.new_stream() if self.plain_beam_decoder else None
        self._start_seconds = start_seconds
        self._utterance_frames = 0
        self._blank_run = 0
        self._speech_seen = False  # a letter was the best label somewhere in this utterance
        self._features: list[np.ndarray] = []
        self._log_probs: list[np.ndarray] = []
