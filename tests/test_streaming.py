import numpy as np
import pytest
import torch

from asr.checkpoint import load_checkpoint
from asr.features import AudioError
from asr.streaming import EndpointConfig, Recognizer


@pytest.fixture(scope="module")
def recognizer(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    return Recognizer(loaded.model, loaded.feature_config, beam_decoder=None)


def feed(stream, samples, rate, chunk):
    partials = [stream.accept(samples[i : i + chunk], rate) for i in range(0, len(samples), chunk)]
    return partials + [stream.finalize()]


@pytest.mark.parametrize("rate,chunk", [(16000, 2560), (16000, 1234), (48000, 24000), (8000, 333)])
def test_stream_log_probs_and_text_equal_offline(recognizer, spoken_clip, rate, chunk):
    import soundfile
    import torchaudio

    samples, native = soundfile.read(str(spoken_clip), dtype="float32")
    samples = torchaudio.functional.resample(torch.from_numpy(samples), native, rate).numpy()
    greedy, _, offline = recognizer.transcribe(samples, rate)
    stream = recognizer.create_stream(endpoint=EndpointConfig(enabled=False))
    partials = feed(stream, samples, rate, chunk)
    streamed = np.concatenate([p.new_log_probs for p in partials])
    np.testing.assert_allclose(streamed, offline, atol=1e-4)
    utterances = [u for p in partials for u in p.finished]
    assert len(utterances) == 1 and utterances[0].greedy.text == greedy.text
    assert partials[-1].audio_seconds == pytest.approx(len(samples) / rate)


def test_partial_text_only_grows_within_an_utterance(recognizer, spoken_clip):
    import soundfile

    samples, rate = soundfile.read(str(spoken_clip), dtype="float32")
    stream = recognizer.create_stream(endpoint=EndpointConfig(enabled=False))
    texts = [p.greedy for p in feed(stream, samples, rate, 1600)[:-1]]
    for before, after in zip(texts, texts[1:]):
        assert after.replace(" ", "").startswith(before.replace(" ", ""))


def test_bad_chunk_is_refused_and_the_stream_keeps_working(recognizer):
    stream = recognizer.create_stream()
    stream.accept(np.zeros(1600, np.float32), 16000)
    with pytest.raises(AudioError, match="NaN"):
        stream.accept(np.array([np.nan] * 100, np.float32), 16000)
    partial = stream.accept(np.zeros(1600, np.float32), 16000)
    assert partial.audio_seconds == pytest.approx(0.2)


def test_endpointing_bounds_utterances_in_long_silence(recognizer):
    """Silence-only audio longer than the maximum utterance is cut into bounded utterances."""
    endpoint = EndpointConfig(max_utterance_seconds=2.0)
    stream = recognizer.create_stream(endpoint=endpoint)
    finished = []
    for _ in range(30):
        finished += stream.accept(np.zeros(8000, np.float32), 16000).finished
    assert len(finished) >= 6
    assert all(u.end_seconds - u.start_seconds <= 2.0 + 1e-6 for u in finished)
    assert all(len(u.log_probs) <= 2.0 / recognizer.seconds_per_output_frame + 1 for u in finished)


def test_two_streams_do_not_share_state(recognizer, spoken_clip):
    import soundfile

    samples, rate = soundfile.read(str(spoken_clip), dtype="float32")
    first, second = recognizer.create_stream(EndpointConfig(enabled=False)), recognizer.create_stream(EndpointConfig(enabled=False))
    alone = np.concatenate([p.new_log_probs for p in feed(recognizer.create_stream(EndpointConfig(enabled=False)), samples, rate, 4000)])
    interleaved = []
    noise = np.random.default_rng(0).standard_normal(len(samples)).astype(np.float32) * 0.1
    for start in range(0, len(samples), 4000):
        interleaved.append(first.accept(samples[start : start + 4000], rate).new_log_probs)
        second.accept(noise[start : start + 4000], rate)
    interleaved.append(first.finalize().new_log_probs)
    np.testing.assert_allclose(np.concatenate(interleaved), alone, atol=1e-5)
