"""Batch Dispatch: many concurrent streams through one dispatcher equal each stream run alone."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
import torch

from asr.device import DeviceError, resolve_device
from asr.dispatch import BatchDispatcher, batch_key
from tests.conftest import random_eval_model
from asr.model import NAMED_CONFIGS, DeepSpeech2, ModelConfig, StreamState

LSTM_CONFIG = ModelConfig(conv_channels=(8, 8), conv_time_kernels=(3, 5), conv_freq_kernels=(11, 5), conv_time_strides=(2, 2),
                          conv_freq_strides=(2, 2), rnn_type="lstm", rnn_hidden=48, rnn_layers=2, lookahead_frames=3)
POISON = 1.0e6  # a feature value the failing model refuses, standing in for any error raised inside a step




class FailingModel(DeepSpeech2):
    """Raises on a poisoned chunk, like a step that hits a bug for one stream's input."""

    def step(self, features: torch.Tensor, state: StreamState):
        if bool((features == POISON).any()):
            raise RuntimeError("poisoned chunk")
        return super().step(features, state)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine their barriers cost seconds."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


MODELS = {"tiny": random_eval_model(NAMED_CONFIGS["tiny"]), "lstm": random_eval_model(LSTM_CONFIG)}


def random_chunks(rng: random.Random, frames: int, largest: int) -> list[int]:
    sizes, used = [], 0
    while used < frames:
        sizes.append(min(rng.randint(1, largest), frames - used))
        used += sizes[-1]
    return sizes


def run_stream(step, model: DeepSpeech2, features: torch.Tensor, sizes: list[int], device: str = "cpu") -> tuple[torch.Tensor, StreamState]:
    """Feed one stream chunk by chunk through `step`; all log-probs (on the CPU) and the final state."""
    state, outputs, start = model.initial_state(1, device), [], 0
    for size in sizes:
        log_probs, state = step(features[:, start : start + size].to(device), state)
        assert log_probs.device.type == "cpu" or step == model.step
        outputs.append(log_probs.cpu())
        start += size
    return torch.cat(outputs, dim=1), state


def run_concurrently(jobs: list) -> list:
    """Run callables in threads at once; their results (or the exceptions they raised), in order."""
    results: list = [None] * len(jobs)

    def worker(index: int) -> None:
        try:
            results[index] = jobs[index]()
        except Exception as error:  # collected so the test can assert on it
            results[index] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a stream never got its result"
    return results


def assert_states_close(actual: StreamState, expected: StreamState, atol: float) -> None:
    assert actual.frames_out == expected.frames_out
    flatten = lambda s: [*s.conv_pending, s.lookahead_pending, *[h for hc in s.rnn_hidden for h in (hc if isinstance(hc, tuple) else (hc,))]]  # noqa: E731
    for got, want in zip(flatten(actual), flatten(expected)):
        assert got.shape == want.shape
        torch.testing.assert_close(got.cpu(), want.cpu(), atol=atol, rtol=0)


def concurrent_streams_case(model: DeepSpeech2, streams: int, seed: int, device: str, max_batch_size: int = 64, max_wait_ms: float = 5.0):
    """Streams of different lengths, chunkings and start times through one dispatcher, and each run alone."""
    rng = random.Random(seed)
    features = [torch.randn(1, rng.randint(1, 100), model.config.n_mels, generator=torch.Generator().manual_seed(seed * 100 + i))
                for i in range(streams)]
    chunkings = [random_chunks(rng, f.shape[1], largest=rng.choice([8, 16, 40])) for f in features]
    delays = [rng.uniform(0.0, 0.03) for _ in range(streams)]
    alone = [run_stream(model.step, model, f, sizes) for f, sizes in zip(features, chunkings)]
    with BatchDispatcher(model, device, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms) as dispatcher:
        jobs = [lambda f=f, sizes=sizes, delay=delay: (time.sleep(delay), run_stream(dispatcher.step, model, f, sizes, device))[1]
                for f, sizes, delay in zip(features, chunkings, delays)]
        together = run_concurrently(jobs)
        stats = dispatcher.stats()
    assert stats.requests == sum(len(sizes) for sizes in chunkings)
    return alone, together, stats


@pytest.mark.parametrize("name", ["tiny", "lstm"])
@pytest.mark.parametrize("streams,seed", [(1, 1), (2, 2), (5, 3), (16, 4)])
def test_concurrent_streams_equal_each_stream_alone(name, streams, seed):
    model = MODELS[name]
    alone, together, _ = concurrent_streams_case(model, streams, seed, "cpu")
    for (expected, expected_state), result in zip(alone, together):
        assert not isinstance(result, Exception), result
        log_probs, state = result
        assert log_probs.shape == expected.shape
        torch.testing.assert_close(log_probs, expected, atol=1e-4, rtol=0)
        assert_states_close(state, expected_state, atol=1e-4)


def synchronized_streams(dispatcher: BatchDispatcher, model: DeepSpeech2, features: list[torch.Tensor], chunk: int) -> list:
    """Streams that send each chunk together (a barrier per chunk), so their requests meet in the queue.

    A stream whose step raises keeps its old state and goes on, as a Stream does after a bad chunk;
    it reports its first error instead of log-probs.
    """
    barrier = threading.Barrier(len(features))

    def stream(f: torch.Tensor):
        state, outputs, first_error = model.initial_state(), [], None
        for start in range(0, f.shape[1], chunk):
            barrier.wait(timeout=30)
            try:
                log_probs, state = dispatcher.step(f[:, start : start + chunk], state)
                outputs.append(log_probs)
            except Exception as error:
                first_error = first_error or error
        return first_error or torch.cat(outputs, dim=1)

    return run_concurrently([lambda f=f: stream(f) for f in features])


def test_batches_larger_than_one_happen_and_respect_the_bound():
    model = MODELS["tiny"]
    features = [torch.randn(1, 64, model.config.n_mels) for _ in range(8)]
    with BatchDispatcher(model, "cpu", max_batch_size=3, max_wait_ms=300) as dispatcher:
        results = synchronized_streams(dispatcher, model, features, chunk=16)
        stats = dispatcher.stats()
    assert stats.requests == 8 * 4
    assert max(stats.batch_sizes) == 3, stats.batch_sizes  # eight waiting requests are served three at a time
    assert stats.model_calls < stats.requests
    for f, result in zip(features, results):
        torch.testing.assert_close(result, run_stream(model.step, model, f, [16] * 4)[0], atol=1e-4, rtol=0)


def test_a_lone_request_waits_at_most_max_wait():
    model = MODELS["tiny"]
    with BatchDispatcher(model, "cpu", max_batch_size=64, max_wait_ms=50) as dispatcher:
        started = time.perf_counter()
        dispatcher.step(torch.randn(1, 16, model.config.n_mels), model.initial_state())
        elapsed = time.perf_counter() - started
    assert elapsed < 5.0  # would block forever if the dispatcher waited for a full batch


def test_streams_of_different_ages_get_different_keys():
    model = MODELS["tiny"]
    young = model.initial_state()
    _, older = model.step(torch.randn(1, 7, model.config.n_mels), young)
    chunk = torch.randn(1, 8, model.config.n_mels)
    assert batch_key(chunk, young) != batch_key(chunk, older)  # pending lengths differ: never stacked together
    assert batch_key(chunk, young) == batch_key(chunk.clone(), model.initial_state())


def test_an_exception_reaches_only_the_stream_that_caused_it():
    model = random_eval_model(NAMED_CONFIGS["tiny"], model_class=FailingModel)
    features = [torch.randn(1, 48, model.config.n_mels) for _ in range(6)]
    features[2][0, 20, 5] = POISON  # inside the second chunk of stream 2
    with BatchDispatcher(model, "cpu", max_batch_size=6, max_wait_ms=300) as dispatcher:
        results = synchronized_streams(dispatcher, model, features, chunk=16)
        stats = dispatcher.stats()
    assert isinstance(results[2], RuntimeError) and "poisoned" in str(results[2])
    assert stats.isolated_retries >= 1 and stats.failed_requests == 1
    for index, (f, result) in enumerate(zip(features, results)):
        if index != 2:
            torch.testing.assert_close(result, run_stream(model.step, model, f, [16] * 3)[0], atol=1e-4, rtol=0)


def test_malformed_input_is_rejected_in_its_own_thread_only():
    model = MODELS["tiny"]
    good = [torch.randn(1, 48, model.config.n_mels) for _ in range(3)]
    with BatchDispatcher(model, "cpu", max_wait_ms=20) as dispatcher:
        jobs = [lambda f=f: run_stream(dispatcher.step, model, f, [16] * 3)[0] for f in good]
        jobs.append(lambda: dispatcher.step(torch.randn(1, 16, model.config.n_mels + 1), model.initial_state()))
        jobs.append(lambda: dispatcher.step(torch.randn(2, 16, model.config.n_mels), model.initial_state(2)))
        jobs.append(lambda: dispatcher.step(torch.randn(1, 16, model.config.n_mels), MODELS["lstm"].initial_state()))
        results = run_concurrently(jobs)
    assert all(isinstance(error, ValueError) for error in results[3:]), results[3:]
    for f, result in zip(good, results[:3]):
        torch.testing.assert_close(result, run_stream(model.step, model, f, [16] * 3)[0], atol=1e-4, rtol=0)


def test_nan_features_in_one_row_do_not_leak_into_the_others():
    model = MODELS["tiny"]
    features = [torch.randn(1, 32, model.config.n_mels) for _ in range(4)]
    features[1][0, 3] = float("nan")
    with BatchDispatcher(model, "cpu", max_batch_size=4, max_wait_ms=300) as dispatcher:
        results = synchronized_streams(dispatcher, model, features, chunk=16)
        assert max(dispatcher.stats().batch_sizes) > 1
    assert torch.isnan(results[1]).any()
    for index in (0, 2, 3):
        torch.testing.assert_close(results[index], run_stream(model.step, model, features[index], [16, 16])[0], atol=1e-4, rtol=0)


def test_close_runs_what_is_queued_then_refuses_new_work():
    model = MODELS["tiny"]
    dispatcher = BatchDispatcher(model, "cpu", max_wait_ms=2000)
    chunk = torch.randn(1, 16, model.config.n_mels)
    results = []
    caller = threading.Thread(target=lambda: results.append(dispatcher.step(chunk, model.initial_state())))
    caller.start()
    while not dispatcher._queue and caller.is_alive():  # wait until the request is queued
        time.sleep(0.001)
    started = time.perf_counter()
    dispatcher.close()
    caller.join(timeout=10)
    assert len(results) == 1 and time.perf_counter() - started < 1.5  # closing cut the 2 s wait short and ran it
    torch.testing.assert_close(results[0][0], model.step(chunk, model.initial_state())[0], atol=1e-4, rtol=0)
    with pytest.raises(RuntimeError, match="closed"):
        dispatcher.step(chunk, model.initial_state())


def test_load_recognizer_with_batch_dispatch_matches_plain_streams(tiny_checkpoint):
    from asr.pretrained import load_recognizer

    audio = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1
    plain = load_recognizer(str(tiny_checkpoint), beam=None, device="cpu").recognizer.create_stream()
    loaded = load_recognizer(str(tiny_checkpoint), beam=None, device="cpu", batch_dispatch=True)
    try:
        dispatched = loaded.recognizer.create_stream()
        for start in range(0, len(audio), 5000):
            expected = plain.accept(audio[start : start + 5000], 16000)
            got = dispatched.accept(audio[start : start + 5000], 16000)
            np.testing.assert_allclose(got.new_log_probs, expected.new_log_probs, atol=1e-4, rtol=0)
            assert got.greedy == expected.greedy
        assert loaded.dispatcher.stats().requests > 0
    finally:
        loaded.dispatcher.close()


def test_cuda_request_without_cuda_is_a_one_line_device_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError) as error:
        resolve_device("cuda")
    assert "CUDA is not available" in str(error.value) and "\n" not in str(error.value)
    from asr.pretrained import load_recognizer

    with pytest.raises(DeviceError):
        load_recognizer(beam=None, device="cuda", batch_dispatch=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["tiny", "lstm", "small"])
def test_cuda_dispatch_equals_cpu_streams(name):
    model = MODELS[name] if name in MODELS else random_eval_model(NAMED_CONFIGS[name])
    alone, together, stats = concurrent_streams_case(model, streams=16, seed=7, device="cuda")
    model.cpu()  # the dispatcher moved the shared model; the CPU reference below needs it back
    for (expected, expected_state), result in zip(alone, together):
        assert not isinstance(result, Exception), result
        log_probs, state = result
        assert log_probs.device.type == "cpu" and state.rnn_hidden[0][0].device.type == "cuda"
        torch.testing.assert_close(log_probs, expected, atol=1e-3, rtol=0)
        assert_states_close(state, expected_state, atol=1e-3)
