import numpy as np
import pytest
import torch

from asr.features import AudioError, FeatureConfig, LogMel, StreamingFeaturizer, compute_features, to_mono_float32


def speech_like(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Noise shaped by a slow envelope plus a chirp: broadband, never silent, so log-mel is well conditioned."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.3 + 0.2 * np.sin(2 * np.pi * 3 * t)
    return (envelope * (0.3 * rng.standard_normal(t.size) + np.sin(2 * np.pi * (200 + 800 * t) * t))).astype(np.float32) * 0.3


def stream_in_chunks(signal: np.ndarray, rate: int, sizes) -> torch.Tensor:
    featurizer, frames, start = StreamingFeaturizer(), [], 0
    for size in sizes:
        if start >= len(signal):
            break
        frames.append(featurizer.accept(signal[start : start + size], rate))
        start += size
    if start < len(signal):
        frames.append(featurizer.accept(signal[start:], rate))
    frames.append(featurizer.finalize())
    return torch.cat(frames)


@pytest.mark.parametrize("rate", [16_000, 8_000, 44_100, 48_000, 96_000])
@pytest.mark.parametrize("chunking", ["one_sample", "unaligned", "two_seconds", "random"])
def test_streaming_frames_equal_offline_frames(rate, chunking):
    seconds = 0.06 if chunking == "one_sample" else 3.3
    signal = speech_like(seconds, rate)
    sizes = {
        "one_sample": [1] * len(signal),
        "unaligned": [157] * len(signal),
        "two_seconds": [2 * rate] * 3,
        "random": list(np.random.default_rng(1).integers(1, rate // 3, size=len(signal))),
    }[chunking]
    offline = compute_features(signal, rate)
    streamed = stream_in_chunks(signal, rate, sizes)
    assert streamed.shape == offline.shape
    assert len(offline) == (round(seconds * 16000) - 400) // 160 + 1 or rate != 16000
    torch.testing.assert_close(streamed, offline, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype,scale", [(np.int16, 32767), (np.int32, 2**31 - 1), (np.float64, 1.0), (np.float32, 1.0), (np.int8, 127), (np.uint8, None)])
def test_sample_types_convert_to_unit_range(dtype, scale):
    if dtype == np.uint8:
        samples = np.array([128, 255, 0], dtype=np.uint8)
        np.testing.assert_allclose(to_mono_float32(samples, 16000), [0.0, 127 / 128, -1.0])
        return
    samples = (np.array([0.0, 0.5, -0.5]) * scale).astype(dtype)
    np.testing.assert_allclose(to_mono_float32(samples, 16000), [0.0, 0.5, -0.5], atol=1e-2)


def test_multichannel_is_downmixed():
    left = speech_like(0.5, 16000)
    stereo = np.stack([left, left], axis=1)
    six = np.repeat(left[:, None], 6, axis=1)
    torch.testing.assert_close(compute_features(stereo, 16000), compute_features(left, 16000))
    torch.testing.assert_close(compute_features(six, 16000), compute_features(left, 16000))
    int_stereo = (stereo * 32767).astype(np.int16)
    assert to_mono_float32(int_stereo, 16000).dtype == np.float32


@pytest.mark.parametrize("samples,rate,message", [
    (np.array([0.0, np.nan]), 16000, "NaN"),
    (np.array([np.inf, 0.0]), 16000, "NaN or infinite"),
    (np.zeros(10), 4000, "outside the supported"),
    (np.zeros(10), 192000, "outside the supported"),
    (np.zeros((2, 2, 2)), 16000, "1-D"),
    (np.array(["a", "b"]), 16000, "unsupported sample type"),
])
def test_bad_audio_gets_a_clear_error(samples, rate, message):
    with pytest.raises(AudioError, match=message):
        to_mono_float32(samples, rate)


def test_short_and_empty_input_give_no_frames():
    assert compute_features(np.zeros(0, np.float32), 16000).shape == (0, FeatureConfig().n_mels)
    assert compute_features(np.zeros(399, np.float32), 16000).shape == (0, FeatureConfig().n_mels)
    featurizer = StreamingFeaturizer()
    assert featurizer.accept(np.zeros(0, np.float32), 16000).shape[0] == 0
    assert featurizer.finalize().shape[0] == 0


def test_rate_change_within_a_stream_is_refused():
    featurizer = StreamingFeaturizer()
    featurizer.accept(np.zeros(100, np.float32), 16000)
    with pytest.raises(AudioError, match="sample rate changed"):
        featurizer.accept(np.zeros(100, np.float32), 48000)


def test_log_mel_equals_torchaudio_mel_spectrogram_module():
    import torchaudio

    config = FeatureConfig()
    module = torchaudio.transforms.MelSpectrogram(sample_rate=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
                                                  n_mels=config.n_mels, center=False, power=2.0)
    waveform = torch.from_numpy(np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1)
    expected = torch.log(module(waveform) + config.log_floor).transpose(0, 1)
    assert torch.allclose(LogMel(config)(waveform), expected, atol=1e-5)
