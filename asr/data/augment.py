"""Waveform and spectrogram augmentation, so a model trained on clean synthetic speech hears real microphones.

TTS audio is dry, noiseless, level-normalised and spoken at a few fixed rates; a browser
microphone adds room reverberation, background noise, an unknown frequency response and an
unknown level. Each step below imitates one of those differences, drawn at random per
utterance. Everything is cheap (a few resamples, biquads and one FFT convolution) so that
augmentation stays a small fraction of a data-loader worker's time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torchaudio.functional as F
import torchaudio.transforms as T
from torch.utils.data import get_worker_info

from asr.features import SAMPLE_RATE

# Power spectrum ~ 1 / f**exponent.
NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
NOISE_KINDS = (*NOISE_EXPONENTS, "babble")
# Below this the colouring stays flat, so brown noise spends its energy where the mel bands can hear it.
NOISE_FLOOR_HZ = 20.0
BABBLE_TALKERS = 3
# Speed factors come in steps of 1 %: the resampling ratio then reduces to at most 100 phases, a small kernel.
SPEED_STEP = 0.01
RT60_DECAY = math.log(1000.0)  # amplitude factor 1e-3 = energy down 60 dB
MAX_RIR_SECONDS = 0.5  # a longer tail sits far below the noise floor and only costs convolution time
PEAKING_BANDS = 2
MIN_AUGMENT_SAMPLES = SAMPLE_RATE // 100  # too short to filter meaningfully: left alone


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities (per utterance) and ranges of each waveform augmentation."""

    speed_prob: float = 0.5
    speed_range: tuple[float, float] = (0.9, 1.1)
    eq_prob: float = 0.5
    highpass_hz: tuple[float, float] = (50.0, 400.0)  # small laptop and phone microphones lose the bass
    lowpass_hz: tuple[float, float] = (3400.0, 7600.0)  # from telephone band to nearly full band
    peaking_gain_db: tuple[float, float] = (-10.0, 10.0)
    peaking_center_hz: tuple[float, float] = (150.0, 6000.0)
    reverb_prob: float = 0.4
    rt60_range: tuple[float, float] = (0.15, 0.7)  # small office to living room
    direct_to_reverb_db: tuple[float, float] = (0.0, 15.0)
    noise_prob: float = 0.6
    snr_db_range: tuple[float, float] = (5.0, 35.0)
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    gain_prob: float = 0.8
    gain_db_range: tuple[float, float] = (-18.0, 6.0)  # quiet, distant speakers are common; loud ones clip

    def scaled(self, factor: float) -> "AugmentConfig":
        """The microphone and room steps (EQ, reverberation, noise, gain) drawn `factor` times as often (clamped to
        [0, 1]), ranges unchanged. Speed perturbation varies the talker, not the room, and keeps its own probability."""
        probabilities = {name: min(1.0, max(0.0, getattr(self, name) * factor))
                         for name in self.__dataclass_fields__ if name.endswith("_prob") and name != "speed_prob"}
        return replace(self, **probabilities)

    def __post_init__(self) -> None:
        unknown = set(self.noise_kinds) - set(NOISE_KINDS)
        if unknown or not self.noise_kinds:
            raise ValueError(f"noise_kinds must be a non-empty subset of {NOISE_KINDS}, got {self.noise_kinds}")


class _WorkerSeededRandom:
    """Draws from its own generator, reseeded per DataLoader worker and epoch (from the worker's
    seed), so workers never repeat each other and epochs differ. Under DDP give each rank its own
    seed (e.g. seed + rank)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.worker_seed: int | None = None

    def _follow_worker_seed(self) -> None:
        """Reseed inside a DataLoader worker: forked copies would otherwise replay the same draws."""
        worker = get_worker_info()
        if worker is not None and worker.seed != self.worker_seed:
            self.worker_seed = worker.seed
            mixed = np.random.SeedSequence([self.seed, worker.seed]).generate_state(1, np.uint64)[0]
            self.generator.manual_seed(int(mixed))

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.generator))


class WaveformAugmenter(_WorkerSeededRandom):
    """Random speed, EQ, reverberation, noise and gain for one 16 kHz mono float waveform at a time."""

    def __init__(self, config: AugmentConfig = AugmentConfig(), seed: int = 0):
        super().__init__(seed)
        self.config = config
        self.steps: list[tuple[float, Callable[[torch.Tensor], torch.Tensor]]] = [
            (config.speed_prob, self.perturb_speed),
            (config.eq_prob, self.equalize),
            (config.reverb_prob, self.reverberate),
            (config.noise_prob, self.add_noise),  # after reverberation: the noise source is not in the talker's room path
            (config.gain_prob, self.apply_gain),  # last: the microphone gain scales speech and noise alike
        ]

    @torch.no_grad()
    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        """(samples,) float at 16 kHz -> augmented (samples',) float in [-1, 1]; length changes only with speed."""
        if waveform.numel() < MIN_AUGMENT_SAMPLES:
            return waveform
        self._follow_worker_seed()
        for probability, step in self.steps:
            if self._uniform(0.0, 1.0) < probability:
                waveform = step(waveform)
        return waveform.clamp(-1.0, 1.0)

    def perturb_speed(self, waveform: torch.Tensor) -> torch.Tensor:
        """Play faster or slower, pitch following (Kaldi-style speed perturbation): more speaking rates and voices."""
        factor = round(self._uniform(*self.config.speed_range) / SPEED_STEP) * SPEED_STEP
        source_rate = round(SAMPLE_RATE * factor)
        if source_rate == SAMPLE_RATE:
            return waveform
        # Read as if recorded at factor * 16 kHz, then resampled to 16 kHz: n samples become n / factor.
        return F.resample(waveform, source_rate, SAMPLE_RATE)

    def equalize(self, waveform: torch.Tensor) -> torch.Tensor:
        """A random microphone-like frequency response: band limits plus a few peaks and dips."""
        config = self.config
        waveform = F.highpass_biquad(waveform, SAMPLE_RATE, self._uniform(*config.highpass_hz))
        waveform = F.lowpass_biquad(waveform, SAMPLE_RATE, self._uniform(*config.lowpass_hz))
        for _ in range(PEAKING_BANDS):
            center = self._log_uniform(*config.peaking_center_hz)
            gain_db = self._uniform(*config.peaking_gain_db)
            waveform = F.equalizer_biquad(waveform, SAMPLE_RATE, center, gain_db, Q=self._uniform(0.5, 2.0))
        return waveform

    def reverberate(self, waveform: torch.Tensor) -> torch.Tensor:
        """Convolve with a synthetic room response; the level is kept (loudness is the gain step's business)."""
        response = self.room_response(self._uniform(*self.config.rt60_range), self._uniform(*self.config.direct_to_reverb_db))
        # Zero-padding the response to a 5-smooth FFT size changes nothing in the result but avoids
        # slow prime-sized FFTs (up to 6x slower).
        full_length = _fast_fft_length(waveform.numel() + response.numel() - 1)
        response = torch.nn.functional.pad(response, (0, full_length - waveform.numel() + 1 - response.numel()))
        wet = F.fftconvolve(waveform, response)[: waveform.numel()]  # trim the tail: labels and length stay aligned
        return wet * (_rms(waveform) / _rms(wet).clamp_min(1e-12))

    def room_response(self, rt60: float, direct_to_reverb_db: float) -> torch.Tensor:
        """Direct path at t=0 plus exponentially decaying Gaussian noise: the statistical model of a diffuse late field."""
        length = max(2, int(min(rt60, MAX_RIR_SECONDS) * SAMPLE_RATE))
        times = torch.arange(length, dtype=torch.float32) / SAMPLE_RATE
        tail = torch.randn(length, generator=self.generator) * torch.exp(-RT60_DECAY * times / rt60)
        tail[: int(self._uniform(0.001, 0.01) * SAMPLE_RATE) + 1] = 0.0  # first reflections arrive a few ms late
        tail *= torch.sqrt(10 ** (-direct_to_reverb_db / 10) / tail.pow(2).sum().clamp_min(1e-12))
        tail[0] = 1.0
        return tail

    def add_noise(self, waveform: torch.Tensor) -> torch.Tensor:
        """Add white, pink, brown or babble-like noise at a random signal-to-noise ratio."""
        kinds = self.config.noise_kinds
        kind = kinds[int(torch.randint(len(kinds), (), generator=self.generator))]
        noise = self.babble(waveform) if kind == "babble" else self.coloured_noise(waveform.numel(), NOISE_EXPONENTS[kind])
        if _rms(waveform) == 0 or _rms(noise) == 0:
            return waveform  # silence has no level to set an SNR against
        snr_db = torch.tensor(self._uniform(*self.config.snr_db_range))
        return F.add_noise(waveform, noise, snr_db)

    def coloured_noise(self, length: int, exponent: float) -> torch.Tensor:
        """Gaussian noise whose power spectrum falls as 1/f**exponent, shaped in the frequency domain."""
        if exponent == 0:
            return torch.randn(length, generator=self.generator)
        fft_length = _fast_fft_length(length)  # shaped at a fast FFT size, then cut: a crop of noise is still noise
        white = torch.randn(fft_length, generator=self.generator)
        frequencies = torch.fft.rfftfreq(fft_length, d=1.0 / SAMPLE_RATE).clamp_min(NOISE_FLOOR_HZ)
        return torch.fft.irfft(torch.fft.rfft(white) / frequencies.pow(exponent / 2), n=fft_length)[:length]

    def babble(self, waveform: torch.Tensor) -> torch.Tensor:
        """Reversed, shifted copies of the utterance: speech-shaped and speech-modulated, but no words to transcribe."""
        reversed_speech = waveform.flip(0)
        shifts = torch.randint(waveform.numel(), (BABBLE_TALKERS,), generator=self.generator).tolist()
        return torch.stack([reversed_speech.roll(shift) for shift in shifts]).sum(0)

    def apply_gain(self, waveform: torch.Tensor) -> torch.Tensor:
        """Scale by a random level; the final clamp turns the loud end into clipping, as a real ADC would."""
        return waveform * 10 ** (self._uniform(*self.config.gain_db_range) / 20)

    def _log_uniform(self, low: float, high: float) -> float:
        """Uniform on a log scale: frequency is heard in octaves."""
        return math.exp(self._uniform(math.log(low), math.log(high)))


def _rms(waveform: torch.Tensor) -> torch.Tensor:
    return waveform.pow(2).mean().sqrt()


def _fast_fft_length(length: int) -> int:
    """The smallest length >= length with no prime factor above 5, which FFTs handle fastest."""
    candidate = length
    while True:
        remainder = candidate
        for factor in (2, 3, 5):
            while remainder % factor == 0:
                remainder //= factor
        if remainder == 1:
            return candidate
        candidate += 1


class VocalTractWarp(_WorkerSeededRandom):
    """Vocal tract length perturbation (Jaitly & Hinton, 2013) as a per-utterance warped mel filterbank.

    A shorter vocal tract moves every formant up by the same factor while the pitch stays where it
    is; speed perturbation cannot do that (it moves pitch, formants and tempo together). With only a
    few natural-sounding training voices this is how the model hears talkers it was never given.
    The frequency axis is scaled by alpha up to a boundary and then bent linearly so that Nyquist
    stays at Nyquist (the paper's piecewise-linear warp); the filterbank is the original one read at
    the warped frequencies, so LogMel applies it at no extra cost. With band_spread > 0 each formant
    region (BAND_KNOTS_HZ) is scaled by its own further factor in 1 +- band_spread: talkers differ in
    where their formants sit relative to each other, not only in vocal tract length.
    """

    def __init__(self, probability: float = 0.5, alpha_range: tuple[float, float] = (0.9, 1.1),
                 boundary_hz: float = 4800.0, seed: int = 0, band_spread: float = 0.0):
        if not 0.0 <= probability <= 1.0 or not 0.0 < alpha_range[0] <= alpha_range[1]:
            raise ValueError("probability must be within [0, 1] and alpha_range positive and ordered")
        if not 0.0 <= band_spread <= MAX_BAND_SPREAD:
            raise ValueError(f"band_spread must be within [0, {MAX_BAND_SPREAD}] (beyond it the warp can fold back)")
        super().__init__(seed)
        self.probability, self.alpha_range, self.boundary_hz = probability, alpha_range, boundary_hz
        self.band_spread = band_spread

    def filterbank(self, filterbank: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """(n_freqs, n_mels) filterbank -> a randomly warped copy (or the same tensor when not drawn)."""
        self._follow_worker_seed()
        if self._uniform(0.0, 1.0) >= self.probability:
            return filterbank
        alpha = self._uniform(*self.alpha_range)
        # Drawn only when asked for, so runs without band_spread keep the random stream they always had.
        band_factors = tuple(self._uniform(1 - self.band_spread, 1 + self.band_spread) for _ in BAND_KNOTS_HZ) \
            if self.band_spread > 0 else None
        return warp_filterbank(filterbank, alpha, sample_rate, self.boundary_hz, band_factors)


# Where a per-band warp's factors are drawn (roughly the first three formants' ranges, then the knee): one talker's
# F1, F2 and F3 are not all a fixed ratio from another's, which one alpha for the whole axis cannot express.
BAND_KNOTS_HZ = (500.0, 1500.0, 2500.0)
MAX_BAND_SPREAD = 0.15  # the steepest fall, 1.15 -> 0.85 from 1500 to 2500 Hz, still rises: 0.85 - 2.5 * 0.3 > 0


def warp_frequencies(frequencies: torch.Tensor, alpha: float, nyquist: float, boundary_hz: float,
                     band_factors: tuple[float, ...] | None = None) -> torch.Tensor:
    """Where each frequency (Hz) moves: see warp_filterbank."""
    knee = boundary_hz * min(alpha, 1.0) / alpha  # below it f -> alpha * f; above it a line through (nyquist, nyquist)
    upper_slope = (nyquist - alpha * knee) / (nyquist - knee)
    scale = alpha
    if band_factors is not None:
        if len(band_factors) != len(BAND_KNOTS_HZ):
            raise ValueError(f"band_factors needs one factor per knot {BAND_KNOTS_HZ}")
        knots = [(0.0, 1.0)] + [(hz, factor) for hz, factor in zip(BAND_KNOTS_HZ, band_factors) if hz < knee] + [(knee, 1.0)]
        knot_hz, knot_factors = zip(*knots)
        scale = alpha * torch.as_tensor(np.interp(frequencies.numpy(), knot_hz, knot_factors), dtype=frequencies.dtype)
    return torch.where(frequencies <= knee, scale * frequencies, nyquist - upper_slope * (nyquist - frequencies))


def warp_filterbank(filterbank: torch.Tensor, alpha: float, sample_rate: int, boundary_hz: float,
                    band_factors: tuple[float, ...] | None = None) -> torch.Tensor:
    """The filterbank whose response to the spectrum equals the original's response to the spectrum
    with every frequency f moved to warp(f): row i becomes the original read (linearly interpolated)
    at warp(f_i). alpha > 1 moves formants up, like a shorter vocal tract. With band_factors (one per
    BAND_KNOTS_HZ) the scale below the knee is alpha times a factor interpolated between the knots
    (1 at 0 Hz and at the knee), so each formant region moves by its own amount; the warp stays
    monotone and continuous."""
    n_freqs = filterbank.shape[0]
    nyquist = sample_rate / 2
    warped = warp_frequencies(torch.linspace(0.0, nyquist, n_freqs, dtype=torch.float64), alpha, nyquist, boundary_hz,
                              band_factors)
    position = (warped / nyquist * (n_freqs - 1)).clamp(0, n_freqs - 1)
    below = position.floor().long().clamp(max=n_freqs - 2)
    weight = (position - below).to(filterbank.dtype)[:, None]
    return filterbank[below] * (1 - weight) + filterbank[below + 1] * weight


class SpecAugment:
    """Frequency and time masks on (frames, n_mels) log-mel features (Park et al., 2019).

    A masked value becomes its mel bin's mean over the utterance: the features are raw log-mel (the model
    normalises them per bin), so what stands for "no information" differs from bin to bin, as a 0 does after
    the per-bin normalisation of Park et al. One scalar for all bins (0, or the utterance's mean) would
    read as a loud low band or a quiet high one, a cue of its own. Widths are drawn from 0..freq_width bins
    and 0..time_width_fraction of the utterance's frames.
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 20, time_masks: int = 2, time_width_fraction: float = 0.05):
        if min(freq_masks, freq_width, time_masks) < 0 or not 0.0 <= time_width_fraction <= 1.0:
            raise ValueError("mask counts and widths must be >= 0 and time_width_fraction within [0, 1]")
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width_fraction = time_masks, time_width_fraction
        # torchaudio draws widths below its mask_param, hence the + 1 to allow the full width.
        self.frequency_masking = T.FrequencyMasking(freq_width + 1)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """(frames, n_mels) -> masked copy of the same shape."""
        if features.numel() == 0:
            return features
        # torchaudio draws the masks on a (freq, time) grid of ones; where it wrote 0 the bin mean goes in.
        keep = torch.ones(features.shape[1], features.shape[0])
        for _ in range(self.freq_masks):
            keep = self.frequency_masking(keep, 0.0)
        time_masking = T.TimeMasking(int(features.shape[0] * self.time_width_fraction) + 1)
        for _ in range(self.time_masks):
            keep = time_masking(keep, 0.0)
        bin_means = features.mean(dim=0, keepdim=True).expand_as(features)
        return torch.where(keep.transpose(0, 1).bool(), features, bin_means)
