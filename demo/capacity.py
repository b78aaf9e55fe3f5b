"""How many streams the demo decodes at once, and who waits in line for the next free slot.

A stream (a recording or a file) decodes only while it holds a slot. The others keep their audio
(bounded) and wait in arrival order; when a slot frees, the first in line takes it and catches up
faster than real time. Slots follow from what a stream costs on this machine (measured at start:
a shipped example clip through a session as the browser sends it, handlers, views and pictures
included, plus Gradio's own work per chunk) and the cores the process may use, so a bigger Space
admits more without an edit, up to what one Python process can do: everything but the model's
tensor work holds the interpreter lock, so that part of all streams shares one core however many
there are.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Shares of the budget (the cores, and the one core's worth of interpreter lock): decoding streams take DECODING_SHARE,
# recordings waiting in line with their audio kept WAITING_SHARE (each costs Gradio's transport: its chunks still come
# in), the rest is headroom. bench/load.py (bench/RESULTS.md "Load", 2 cores shared with the bench's own clients): at
# 0.65 + 0.1 (9 decoding + 2 waiting) 16 clients kept every chunk; at 0.7 + 0.15 (9 + 3) they lost 93 of 918, with
# 7 waiting beside 9 decoding 240.
DECODING_SHARE = 0.65
WAITING_SHARE = 0.1
TYPICAL_RECORDING_SECONDS = 20.0  # the wait estimate's prior, until recordings have been seen
RECENT_WEIGHT = 0.2  # how fast the typical recording length follows the recordings finished
CALIBRATION_CLIP = Path(__file__).resolve().parent / "examples" / "example-5-espeak-en-us_grandpa.wav"
# Gradio's own CPU per second of a recording (receiving each 0.4 s chunk, decoding its WAV, sending the page update):
# what bench/load.py's server CPU at one client exceeded the calibration by (bench/RESULTS.md "Load").
TRANSPORT_CPU_SECONDS_PER_SECOND = 0.05


@dataclass(frozen=True)
class StreamCost:
    cpu_seconds_per_second: float  # CPU time one stream takes in the demo's process per second of audio, measured
    cores: float
    transport: float = TRANSPORT_CPU_SECONDS_PER_SECOND
    model_seconds_per_second: float = 0.0  # of cpu_seconds_per_second, the model's steps (torch, without the lock)

    @property
    def total(self) -> float:
        return self.cpu_seconds_per_second + self.transport

    @property
    def locked(self) -> float:
        """The part that holds Python's interpreter lock: one core's worth for all streams together."""
        return max(self.total - self.model_seconds_per_second, 1e-3)

    @property
    def slots(self) -> int:
        """Streams that may decode at once."""
        by_cores = self.cores / max(self.total, 1e-3)
        by_lock = 1.0 / self.locked
        return max(1, math.floor(DECODING_SHARE * min(by_cores, by_lock) + 1e-9))

    @property
    def waiting(self) -> int:
        """Recordings that may wait in line with their audio kept: each costs only Gradio's transport."""
        return max(1, math.floor(WAITING_SHARE / max(self.transport, 1e-3) + 1e-9))


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float:
    """The cores' worth of CPU time this process may use: its CPU affinity, capped by a container's CPU quota where
    there is one (a hosted container often sees all of the host's cores but may use only its quota of them)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup_root)
    return min(float(cores), quota) if quota is not None else float(cores)


def _cgroup_cpu_quota(root: Path) -> float | None:
    """CPUs' worth of time the cgroup may use: cgroup v2's cpu.max ("200000 100000"), or v1's cfs quota / period."""
    try:
        if (root / "cpu.max").is_file():
            quota, period = (root / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota_file, period_file = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if quota_file.is_file() and period_file.is_file():
            quota, period = int(quota_file.read_text()), int(period_file.read_text())
            return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None
    return None


def measure_cost(run: Callable[[], float], model_run: Callable[[], float], repeats: int = 3) -> StreamCost:
    """The CPU cost of `run` (which processes some audio and returns its seconds) per audio second, on process time:
    every thread counts (Batch Dispatch steps the model on its own; pictures are drawn on the decode workers); and of
    `model_run`, the model's share of it. The median of `repeats` runs: a neighbour's burst moves one run, not it."""

    def per_second(function: Callable[[], float]) -> float:
        started = time.process_time()
        seconds = function()
        return (time.process_time() - started) / max(seconds, 1e-9)

    total = sorted(per_second(run) for _ in range(repeats))[repeats // 2]
    model = sorted(per_second(model_run) for _ in range(repeats))[repeats // 2]
    return StreamCost(total, usable_cores(), model_seconds_per_second=min(model, total))


class Admission:
    """Slots for decoding streams, and the line of streams waiting for one; shared by every session."""

    def __init__(self, slots: int):
        self.slots = max(1, slots)  # may be raised or lowered once the stream cost is measured (resize)
        self._lock = threading.Lock()
        self._holders: dict[int, float] = {}  # session id -> when it got its slot (time.monotonic)
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()  # (session id, call when admitted)
        self.typical_seconds = TYPICAL_RECORDING_SECONDS

    def resize(self, slots: int) -> None:
        with self._lock:
            self.slots = max(1, slots)

    def request(self, session_id: int, on_admitted: Callable[[], None]) -> bool:
        """True if the session holds a slot now; otherwise it joins the line and `on_admitted` runs when it gets one."""
        with self._lock:
            if session_id in self._holders:
                return True
            if len(self._holders) < self.slots and not self._waiting:
                self._holders[session_id] = time.monotonic()
                return True
            if all(waiting != session_id for waiting, _ in self._waiting):
                self._waiting.append((session_id, on_admitted))
            return False

    def release(self, session_id: int) -> None:
        """The session's stream is done (or gone): free its slot or its place in line, and admit who is next."""
        admitted = []
        with self._lock:
            held_since = self._holders.pop(session_id, None)
            if held_since is not None:
                held = time.monotonic() - held_since
                self.typical_seconds += RECENT_WEIGHT * (held - self.typical_seconds)
            self._waiting = deque(entry for entry in self._waiting if entry[0] != session_id)
            while self._waiting and len(self._holders) < self.slots:
                next_id, on_admitted = self._waiting.popleft()
                self._holders[next_id] = time.monotonic()
                admitted.append(on_admitted)
        for on_admitted in admitted:  # on a thread of its own: the caller may hold its session's lock, the callee takes its own
            threading.Thread(target=on_admitted, name="admitted", daemon=True).start()

    def holds(self, session_id: int) -> bool:
        with self._lock:
            return session_id in self._holders

    def position(self, session_id: int) -> int | None:
        """1 for the first in line; None if the session is not waiting."""
        with self._lock:
            return next((index for index, (waiting, _) in enumerate(self._waiting, start=1) if waiting == session_id), None)

    def busy(self) -> tuple[int, int]:
        """(slots in use, streams waiting)."""
        with self._lock:
            return len(self._holders), len(self._waiting)

    def estimated_wait(self, position: int) -> float:
        """Seconds until the stream at `position` in line (1 = next) gets a slot: each holder is expected to last a
        typical recording (at least a few seconds more), and each round of the line takes another."""
        with self._lock:
            now, typical = time.monotonic(), self.typical_seconds
            remaining = sorted(max(typical - (now - since), 3.0) for since in self._holders.values())
        if not remaining or len(remaining) < self.slots:
            return 0.0
        rounds, index = divmod(position - 1, self.slots)
        return remaining[index] + rounds * typical
