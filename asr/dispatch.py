"""Batch Dispatch (Deep Speech 2, section 7): many live streams share one batched `model.step`.

Each stream calls `dispatcher.step(features, state)` exactly as it would call `model.step` for
itself (batch of one) and blocks until its result is ready. A background thread gathers the
chunks that are waiting (at most `max_wait_ms` after the oldest arrived, at most `max_batch_size`
a batch), stacks the states of compatible requests, runs one `model.step` per group on the
dispatcher's device and hands every caller its own log-probs (on the CPU, for the decoders) and
its own new state (on the device, for its next chunk).

Exactness by grouping, not padding. `model.step` consumes every frame it is given: a padded
frame would go through the convolutions into the recurrent state and change every later output
of that stream. So requests are batched only with requests of the same shape: the same chunk
length and the same pending lengths (conv inputs waiting for their stride, recurrent outputs
waiting for their lookahead). Within such a group every operation of the model (causal conv,
BatchNorm with fixed statistics, GRU/LSTM, row convolution, head) treats batch rows
independently, so row i of the batched step is stream i's own step, up to float rounding
(batched matrix products may sum in another order). Streams that send chunks of the same frame
count, a multiple of the model's time subsampling, settle into a few shared groups quickly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace

import torch

from asr.model import DeepSpeech2, StreamState, fold_batchnorms

WORKER_POLL_SECONDS = 0.5  # how often a waiting caller checks that the worker thread is still alive


@dataclass
class DispatchStats:
    """Counters for tests and benches: how often the model ran and on how many streams at once."""

    model_calls: int = 0
    requests: int = 0
    batch_sizes: Counter = field(default_factory=Counter)  # batch size -> number of model calls of that size
    busy_seconds: float = 0.0  # wall time inside model calls (stacking and copying to the CPU included)
    isolated_retries: int = 0  # failed batches re-run one request at a time so only the culprit fails
    failed_requests: int = 0

    @property
    def mean_batch_size(self) -> float:
        return sum(size * calls for size, calls in self.batch_sizes.items()) / max(self.model_calls, 1)

    def copy(self) -> "DispatchStats":
        return replace(self, batch_sizes=Counter(self.batch_sizes))


@dataclass
class _Request:
    """One caller's chunk waiting for the worker; `done` is set once result or error is filled in."""

    features: torch.Tensor
    state: StreamState
    key: tuple
    arrived: float
    done: threading.Event = field(default_factory=threading.Event)
    log_probs: torch.Tensor | None = None
    new_state: StreamState | None = None
    error: BaseException | None = None


def batch_key(features: torch.Tensor, state: StreamState) -> tuple:
    """Requests with equal keys stack into one exact batched step: every shape but the batch, and every dtype."""
    hidden = [h for hc in state.rnn_hidden for h in (hc if isinstance(hc, tuple) else (hc,))]
    described = [(tuple(t.shape[1:]), t.dtype) for t in [features, *state.conv_pending, state.lookahead_pending]]
    return tuple(described + [(tuple(h.shape[2:]), h.dtype) for h in hidden])  # hidden is (layers, batch, size)


def stack_states(states: list[StreamState]) -> StreamState:
    """One batched state from single-stream states of the same shape (frames_out is kept per stream by the caller)."""
    conv_pending = [torch.cat(layer) for layer in zip(*(s.conv_pending for s in states))]
    hidden = []
    for layer in zip(*(s.rnn_hidden for s in states)):
        hidden.append(tuple(torch.cat(parts, dim=1) for parts in zip(*layer)) if isinstance(layer[0], tuple) else torch.cat(layer, dim=1))
    return StreamState(conv_pending, hidden, torch.cat([s.lookahead_pending for s in states]), frames_out=0)


def state_to(state: StreamState, device: torch.device) -> StreamState:
    """The same state with every tensor on `device` (a no-op when it is already there)."""
    hidden = [tuple(h.to(device) for h in hc) if isinstance(hc, tuple) else hc.to(device) for hc in state.rnn_hidden]
    return StreamState([p.to(device) for p in state.conv_pending], hidden, state.lookahead_pending.to(device), state.frames_out)


class BatchDispatcher:
    """Runs the waiting chunks of all live streams as batched model steps on one device, from one thread."""

    def __init__(self, model: DeepSpeech2, device: str | torch.device = "cpu", max_batch_size: int = 64, max_wait_ms: float = 5.0):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {max_wait_ms}")
        self.device = torch.device(device)
        self.model = fold_batchnorms(model.to(self.device).eval())
        self.max_batch_size = max_batch_size
        self.max_wait_seconds = max_wait_ms / 1000.0
        self._template = model.initial_state(1, "cpu")  # the shapes a caller's state must have
        self._queue: list[_Request] = []
        self._condition = threading.Condition()
        self._closed = False
        self._stats = DispatchStats()
        self._stats_lock = threading.Lock()
        self._worker = threading.Thread(target=self._serve, name="batch-dispatch", daemon=True)  # daemon: a forgotten close() never blocks exit
        self._worker.start()

    # -- the caller's side ------------------------------------------------------------------

    def step(self, features: torch.Tensor, state: StreamState) -> tuple[torch.Tensor, StreamState]:
        """Drop-in for `model.step` with a batch of one: blocks until this chunk's batch has run."""
        self._check_request(features, state)
        request = _Request(features.to(self.device), state_to(state, self.device), batch_key(features, state), time.perf_counter())
        with self._condition:
            if self._closed:
                raise RuntimeError("the batch dispatcher is closed")
            self._queue.append(request)
            self._condition.notify_all()
        self._wait(request)
        if request.error is not None:
            raise request.error
        return request.log_probs, request.new_state

    def stats(self) -> DispatchStats:
        """A snapshot of the counters, safe to read while streams run."""
        with self._stats_lock:
            return self._stats.copy()

    def reset_stats(self) -> None:
        with self._stats_lock:
            self._stats = DispatchStats()

    def close(self) -> None:
        """Run what is already queued, then stop the worker; later calls to `step` raise."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        if self._worker is not threading.current_thread():
            self._worker.join()

    def __enter__(self) -> "BatchDispatcher":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _check_request(self, features: torch.Tensor, state: StreamState) -> None:
        """Reject a malformed request in its caller's thread, before it can reach a shared batch."""
        n_mels = self.model.config.n_mels
        if not isinstance(features, torch.Tensor) or features.dim() != 3 or features.shape[0] != 1 or features.shape[2] != n_mels:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must be a (1, frames, {n_mels}) tensor, got {shape}")
        if not features.is_floating_point():
            raise ValueError(f"features must be floating point, got {features.dtype}")
        self._check_state(state)

    def _check_state(self, state: StreamState) -> None:
        """The state must have the shape of `model.initial_state(1)`, apart from the pending lengths."""
        template = self._template
        if len(state.conv_pending) != len(template.conv_pending) or len(state.rnn_hidden) != len(template.rnn_hidden):
            raise ValueError("state does not belong to this model (wrong number of conv or recurrent layers)")
        for pending, expected in zip(state.conv_pending, template.conv_pending):
            if pending.dim() != 4 or pending.shape[0] != 1 or pending.shape[1] != expected.shape[1] or pending.shape[3] != expected.shape[3]:
                raise ValueError(f"conv state must be (1, {expected.shape[1]}, frames, {expected.shape[3]}), got {tuple(pending.shape)}")
        for hidden, expected in zip(state.rnn_hidden, template.rnn_hidden):
            got = hidden if isinstance(hidden, tuple) else (hidden,)
            want = expected if isinstance(expected, tuple) else (expected,)
            if isinstance(hidden, tuple) != isinstance(expected, tuple) or [h.shape for h in got] != [h.shape for h in want]:
                raise ValueError("recurrent state does not match this model's recurrent layers (one stream expected)")
        lookahead = state.lookahead_pending
        if lookahead.dim() != 3 or lookahead.shape[0] != 1 or lookahead.shape[2] != template.lookahead_pending.shape[2]:
            raise ValueError(f"lookahead state must be (1, frames, {template.lookahead_pending.shape[2]}), got {tuple(lookahead.shape)}")

    def _wait(self, request: _Request) -> None:
        while not request.done.wait(WORKER_POLL_SECONDS):
            if not self._worker.is_alive() and not request.done.is_set():
                raise RuntimeError("the batch dispatcher's worker thread has stopped")

    # -- the worker's side ------------------------------------------------------------------

    def _serve(self) -> None:
        """Worker loop: gather a round of requests, run each compatible group, repeat until closed and drained."""
        round_requests: list[_Request] = []
        try:
            while (round_requests := self._next_round()) is not None:
                for group in self._groups(round_requests):
                    self._run_group(group)
        except BaseException as error:  # a bug here must not leave callers waiting forever
            self._fail_everything(round_requests or [], error)
            raise

    def _next_round(self) -> list[_Request] | None:
        """Wait for work, then up to max_wait after the oldest request (or until a full batch); None when closed and empty."""
        with self._condition:
            while not self._queue and not self._closed:
                self._condition.wait()
            if not self._queue:
                return None
            deadline = self._queue[0].arrived + self.max_wait_seconds
            while len(self._queue) < self.max_batch_size and not self._closed:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            round_requests, self._queue = self._queue, []
            return round_requests

    def _groups(self, requests: list[_Request]) -> list[list[_Request]]:
        """Compatible requests together, oldest group first, each cut to at most max_batch_size."""
        by_key: dict[tuple, list[_Request]] = {}
        for request in requests:
            by_key.setdefault(request.key, []).append(request)
        return [members[i : i + self.max_batch_size] for members in by_key.values() for i in range(0, len(members), self.max_batch_size)]

    def _run_group(self, group: list[_Request]) -> None:
        """One batched step; if it fails, each request runs alone so only the one that caused it sees the error."""
        started = time.perf_counter()
        try:
            results = self._step_batch(group)
        except Exception as error:
            self._record(len(group), time.perf_counter() - started, retried=len(group) > 1, failed=0 if len(group) > 1 else 1)
            if len(group) == 1:
                self._deliver(group[0], error=error)
            else:
                for request in group:
                    self._run_group([request])
            return
        self._record(len(group), time.perf_counter() - started, retried=False, failed=0)
        for request, (log_probs, new_state) in zip(group, results):
            self._deliver(request, log_probs=log_probs, new_state=new_state)

    def _step_batch(self, group: list[_Request]) -> list[tuple[torch.Tensor, StreamState]]:
        """Stack, step once, split: row i of the result belongs to group[i]."""
        if len(group) == 1:  # nothing to stack: the stream's own step, exactly
            log_probs, new_state = self.model.step(group[0].features, group[0].state)
            return [(log_probs.cpu(), new_state)]
        features = torch.cat([request.features for request in group])
        log_probs, batched_state = self.model.step(features, stack_states([request.state for request in group]))
        log_probs = log_probs.cpu()  # one device-to-host copy for the whole batch
        emitted = batched_state.frames_out  # the same for every row: equal shapes emit equal frame counts
        return [(log_probs[row : row + 1], replace(batched_state.select(row), frames_out=request.state.frames_out + emitted))
                for row, request in enumerate(group)]

    def _deliver(self, request: _Request, log_probs: torch.Tensor | None = None, new_state: StreamState | None = None,
                 error: BaseException | None = None) -> None:
        request.log_probs, request.new_state, request.error = log_probs, new_state, error
        request.done.set()

    def _record(self, batch_size: int, seconds: float, retried: bool, failed: int) -> None:
        with self._stats_lock:
            self._stats.model_calls += 1
            self._stats.batch_sizes[batch_size] += 1
            self._stats.busy_seconds += seconds
            self._stats.requests += 0 if retried else batch_size
            self._stats.isolated_retries += int(retried)
            self._stats.failed_requests += failed

    def _fail_everything(self, current: list[_Request], error: BaseException) -> None:
        with self._condition:
            self._closed = True
            pending, self._queue = current + self._queue, []
        for request in pending:
            if not request.done.is_set():
                self._deliver(request, error=RuntimeError(f"the batch dispatcher stopped: {error!r}"))
