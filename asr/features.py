"""Waveform -> log-mel frames, offline and streaming, with exact agreement between the two.

Every derived number comes from the constants below. Frames are computed without centre
padding (frame t covers samples [t * HOP_LENGTH, t * HOP_LENGTH + N_FFT)), so a frame depends only
on samples that have already arrived and the streaming featurizer can emit it the moment its
last sample is in. Resampling uses torchaudio's windowed-sinc kernel, applied block by block
with the history it needs kept in the state, so chunked resampling equals whole-signal resampling.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torchaudio

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms analysis window
HOP_LENGTH = 160  # 10 ms between frames
N_MELS = 80
LOG_FLOOR = 1e-6
MIN_INPUT_RATE = 8_000
MAX_INPUT_RATE = 96_000


class AudioError(ValueError):
    """Input audio the recogniser cannot use; the message is meant for the user."""


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop_length: int = HOP_LENGTH
    n_mels: int = N_MELS
    log_floor: float = LOG_FLOOR

    @property
    def frame_seconds(self) -> float:
        return self.hop_length / self.sample_rate

    def to_dict(self) -> dict:
        return asdict(self)


_INTEGER_SCALES = {np.dtype(np.int8): 128.0, np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}


def to_mono_float32(samples, sample_rate: int) -> np.ndarray:
    """Validate and convert one chunk to mono float32 in [-1, 1].

    Accepts 1-D arrays or 2-D (samples, channels) arrays of int8/uint8/int16/int32/float32/float64;
    channels are averaged. Raises AudioError with a user-facing reason for anything else.
    """
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool):
        raise AudioError(f"sample rate must be an integer number of Hz, got {sample_rate!r}")
    if not MIN_INPUT_RATE <= sample_rate <= MAX_INPUT_RATE:
        raise AudioError(f"sample rate {sample_rate} Hz is outside the supported {MIN_INPUT_RATE}-{MAX_INPUT_RATE} Hz")
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples.astype(np.float64).mean(axis=1) if samples.dtype.kind == "f" else _downmix_integers(samples)
    elif samples.ndim != 1:
        raise AudioError(f"audio must be 1-D (mono) or 2-D (samples, channels), got shape {samples.shape}")
    if samples.dtype == np.uint8:
        return ((samples.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if samples.dtype in _INTEGER_SCALES:
        return (samples.astype(np.float64) / _INTEGER_SCALES[samples.dtype]).astype(np.float32)
    if samples.dtype.kind != "f":
        raise AudioError(f"unsupported sample type {samples.dtype}; use int16, int32 or float samples")
    if not np.isfinite(samples).all():
        raise AudioError("audio contains NaN or infinite samples")
    return np.clip(samples, -1.0, 1.0).astype(np.float32)


def _downmix_integers(samples: np.ndarray) -> np.ndarray:
    """Average integer channels without overflow, keeping the integer dtype so scaling stays right."""
    if samples.dtype not in _INTEGER_SCALES and samples.dtype != np.uint8:
        raise AudioError(f"unsupported sample type {samples.dtype}; use int16, int32 or float samples")
    return np.round(samples.astype(np.float64).mean(axis=1)).astype(samples.dtype)


class StreamingResampler:
    """Chunked windowed-sinc resampling whose output equals torchaudio.functional.resample on the whole signal."""

    def __init__(self, input_rate: int, output_rate: int = SAMPLE_RATE):
        self.input_rate, self.output_rate = input_rate, output_rate
        self.passthrough = input_rate == output_rate
        if self.passthrough:
            return
        resample = torchaudio.transforms.Resample(input_rate, output_rate)
        gcd = math.gcd(input_rate, output_rate)
        self.input_block, self.output_block = input_rate // gcd, output_rate // gcd
        self.kernel, self.width = resample.kernel, resample.width  # kernel: (output_block, 1, 2 * width + input_block)
        self.pending = torch.zeros(self.width)  # the left zero padding torchaudio applies
        self.samples_in = 0
        self.samples_out = 0

    def accept(self, samples: torch.Tensor) -> torch.Tensor:
        if self.passthrough:
            return samples
        self.samples_in += samples.numel()
        self.pending = torch.cat([self.pending, samples])
        return self._emit_complete_blocks()

    def finalize(self) -> torch.Tensor:
        if self.passthrough:
            return torch.zeros(0)
        self.pending = torch.cat([self.pending, torch.zeros(self.width + self.input_block)])
        tail = self._emit_complete_blocks()
        target_total = math.ceil(self.output_block * self.samples_in / self.input_block)
        keep = max(0, target_total - (self.samples_out - tail.numel()))
        self.samples_out = target_total
        return tail[:keep]

    def _emit_complete_blocks(self) -> torch.Tensor:
        kernel_size = self.kernel.shape[-1]
        if self.pending.numel() < kernel_size:
            return torch.zeros(0)
        blocks = (self.pending.numel() - kernel_size) // self.input_block + 1
        used = (blocks - 1) * self.input_block + kernel_size
        out = torch.nn.functional.conv1d(self.pending[None, None, :used], self.kernel, stride=self.input_block)
        self.pending = self.pending[blocks * self.input_block :]
        resampled = out[0].transpose(0, 1).reshape(-1)
        self.samples_out += resampled.numel()
        return resampled


class LogMel:
    """Log-mel frames of 16 kHz audio, no centre padding (shared by the offline and streaming paths).

    torchaudio's functional spectrogram and HTK mel filterbank, the same numbers as
    `torchaudio.transforms.MelSpectrogram(center=False)` (tested to 1e-5), called directly: a streaming chunk has only
    ~16 frames, where the module wrappers cost more than the FFT itself.
    """

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        self.config = config
        self.window = torch.hann_window(config.n_fft)
        self.filterbank = torchaudio.functional.melscale_fbanks(  # (n_fft // 2 + 1, n_mels)
            config.n_fft // 2 + 1, 0.0, config.sample_rate / 2, config.n_mels, config.sample_rate)

    def frames_for(self, num_samples: int) -> int:
        return 0 if num_samples < self.config.n_fft else (num_samples - self.config.n_fft) // self.config.hop_length + 1

    @torch.no_grad()
    def __call__(self, waveform: torch.Tensor, filterbank: torch.Tensor | None = None) -> torch.Tensor:
        """(samples,) float32 at 16 kHz -> (frames, n_mels); `filterbank` replaces the mel one (training's VTLP)."""
        if self.frames_for(waveform.numel()) == 0:
            return torch.zeros(0, self.config.n_mels)
        power = torchaudio.functional.spectrogram(
            waveform, pad=0, window=self.window, n_fft=self.config.n_fft, hop_length=self.config.hop_length,
            win_length=self.config.n_fft, power=2.0, normalized=False, center=False)
        filterbank = self.filterbank if filterbank is None else filterbank
        return torch.log(torch.matmul(power.transpose(0, 1), filterbank) + self.config.log_floor)


class StreamingFeaturizer:
    """Turns chunks of any size and rate into log-mel frames, keeping only the samples still needed."""

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        self.config = config
        self.log_mel = LogMel(config)
        self.resampler: StreamingResampler | None = None
        self.pending = torch.zeros(0)
        self.frames_out = 0

    def accept(self, samples, sample_rate: int) -> torch.Tensor:
        """Validate a chunk and return the frames it completes, shape (frames, n_mels)."""
        mono = to_mono_float32(samples, sample_rate)
        if self.resampler is None:
            self.resampler = StreamingResampler(int(sample_rate), self.config.sample_rate)
        elif self.resampler.input_rate != sample_rate:
            raise AudioError(f"sample rate changed from {self.resampler.input_rate} to {sample_rate} Hz within one stream")
        return self._frames_from(self.resampler.accept(torch.from_numpy(mono)))

    def finalize(self) -> torch.Tensor:
        """Flush the resampler's tail; returns the last frames. A partial final frame is dropped, as offline."""
        if self.resampler is None:
            return torch.zeros(0, self.config.n_mels)
        return self._frames_from(self.resampler.finalize())

    def _frames_from(self, samples: torch.Tensor) -> torch.Tensor:
        self.pending = torch.cat([self.pending, samples])
        count = self.log_mel.frames_for(self.pending.numel())
        if count == 0:
            return torch.zeros(0, self.config.n_mels)
        used = (count - 1) * self.config.hop_length + self.config.n_fft
        frames = self.log_mel(self.pending[:used])
        self.pending = self.pending[count * self.config.hop_length :]
        self.frames_out += count
        return frames


def compute_features(samples, sample_rate: int, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """Offline log-mel frames of a whole signal: resample in one go, then frame it."""
    mono = torch.from_numpy(to_mono_float32(samples, sample_rate))
    if sample_rate != config.sample_rate and mono.numel():  # torchaudio cannot resample nothing
        mono = torchaudio.functional.resample(mono, int(sample_rate), config.sample_rate)
    return LogMel(config)(mono)
