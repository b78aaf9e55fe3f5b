"""demo/chunk_gate.py against the real Gradio: a streaming handler that stalls loses no chunk behind the gate.

A tiny Gradio app (the demo's pinned Gradio, the demo's middleware) streams a fake microphone (seeded noise) from
headless Chromium into a handler that sleeps 1.3 s on two of its calls, three stream_every periods each, and keeps
every chunk it gets. Each chunk is found in the clip to the sample, so a lost chunk is a gap between two that follow
each other. Without the gate Gradio replaces the chunks that arrive during a stall (this test shows it, so a Gradio
that stops doing so is noticed and the gate can go); with it no sample goes missing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio

from tests.conftest import REPO_ROOT
from tests.test_demo_e2e import CHROMIUM, RAW_MICROPHONE, fake_microphone_arguments, serving

from demo.chunk_gate import ChunkGate

try:
    from playwright import sync_api
except ImportError:
    sync_api = None
needs_browser = pytest.mark.skipif(sync_api is None or not CHROMIUM.exists(),
                                   reason="playwright or Debian chromium is missing (bash demo/setup.sh --tests)")

STREAM_EVERY_S = 0.4
RECORD_S = 9.0
CLIP_S = RECORD_S + 4  # the recording ends inside the clip: every chunk is a slice of it
CLIP_RATE = 48_000
TOLERANCE_SAMPLES = 2  # the page may get another rate (44.1 kHz seen); the clip, resampled to it, locates chunks to this
STALLED_CALLS = (4, 10)
STALL_S = 1.3

APP = """
import sys, time
import numpy as np
import gradio as gr
from demo.chunk_gate import gate_middleware
chunk_folder, stream_every, gated = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "gated"
calls = []
def chunk(audio):
    if audio is None:  # Gradio may call a stream handler before any audio has come
        return
    rate, samples = audio
    calls.append(1)
    np.save(f"{chunk_folder}/{len(calls):04d}-{rate}.npy", samples)
    if len(calls) in (%s):
        time.sleep(%s)
with gr.Blocks() as demo:
    microphone = gr.Audio(sources=["microphone"], streaming=True, elem_id="microphone")
    microphone.stream(chunk, [microphone], None, stream_every=stream_every, time_limit=60)
demo.queue()
demo.launch(ssr_mode=False, app_kwargs={"middleware": [gate_middleware(demo)]} if gated else None)
""" % (", ".join(map(str, STALLED_CALLS)), STALL_S)


def noise_clip(path: Path, seconds: float) -> np.ndarray:
    """Seeded noise: every stretch of it is unlike every other, so a chunk can be found in it to the sample."""
    samples = (np.random.default_rng(0).uniform(-0.3, 0.3, int(seconds * CLIP_RATE)) * 32767).astype(np.int16)
    soundfile.write(path, samples, CLIP_RATE, subtype="PCM_16")
    return samples.astype(np.float64)


def first_channel(samples: np.ndarray) -> np.ndarray:
    return samples if samples.ndim == 1 else samples[:, 0]


def offsets_in(clip: np.ndarray, chunks: list[np.ndarray]) -> list[int]:
    """Where in the clip each chunk starts: the peak of the cross-correlation of its first 4096 samples."""
    size = 1 << int(np.ceil(np.log2(len(clip) + 4096)))
    clip_spectrum = np.fft.rfft(clip, size)
    offsets = []
    for samples in chunks:
        probe = samples[:4096].astype(np.float64)
        correlation = np.fft.irfft(clip_spectrum * np.conj(np.fft.rfft(probe, size)), size)
        offsets.append(int(np.argmax(correlation[: len(clip)])))
    return offsets


def missing_between_chunks(tmp_path: Path, gated: bool) -> tuple[list[int], int]:
    """The clip's samples missing between consecutive chunks the handler got (about 0 each: nothing lost), and the
    rate the page captured at."""
    clip = noise_clip(tmp_path / "clip.wav", CLIP_S)
    chunk_folder, app_path = tmp_path / "chunks", tmp_path / "app.py"
    chunk_folder.mkdir()
    app_path.write_text(APP)
    with serving([str(app_path), str(chunk_folder), str(STREAM_EVERY_S), "gated" if gated else "plain"],
                 tmp_path / "server.log", tmp_path / "gradio", timeout=120) as url:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=fake_microphone_arguments(tmp_path / "clip.wav"),
                                                 timeout=60_000)
            page = browser.new_page()
            page.add_init_script(RAW_MICROPHONE)  # the samples as the file has them, so each chunk can be found
            page.goto(url)
            page.locator("#microphone").get_by_role("button", name="Record").click()
            page.locator("#microphone").get_by_role("button", name="Stop").wait_for(timeout=60_000)
            time.sleep(RECORD_S)
            page.locator("#microphone").get_by_role("button", name="Stop").click()
            time.sleep(2 * STALL_S + 2)  # chunks held at the gate are still delivered after Stop
            browser.close()
    files = sorted(chunk_folder.glob("*.npy"))
    assert len(files) > max(STALLED_CALLS), f"only {len(files)} chunks came:\n{(tmp_path / 'server.log').read_text()[-3000:]}"
    rates = {int(file.stem.split("-")[1]) for file in files}
    assert len(rates) == 1, [file.name for file in files]
    rate = rates.pop()
    if rate != CLIP_RATE:
        clip = torchaudio.functional.resample(torch.from_numpy(clip), CLIP_RATE, rate).numpy()
    chunks = [first_channel(np.load(file)) for file in files]
    offsets = offsets_in(clip, chunks)
    return [later - (earlier + len(chunk)) for earlier, later, chunk in zip(offsets, offsets[1:], chunks)], rate


@needs_browser
def test_a_stalled_handler_loses_no_chunk_behind_the_gate(tmp_path):
    gaps, rate = missing_between_chunks(tmp_path, gated=True)
    print(f"gated: {len(gaps) + 1} chunks at {rate} Hz, samples missing between them: {gaps}")
    # Before the stream event starts, Gradio's page records but does not send (the chunk after the first, seen every
    # time): out of the server's reach. From then on nothing may be missing.
    chunk = STREAM_EVERY_S * rate
    assert abs(gaps[0] - chunk * round(gaps[0] / chunk)) <= TOLERANCE_SAMPLES, gaps[0]
    assert all(abs(gap) <= TOLERANCE_SAMPLES for gap in gaps[1:]), "audio went missing between chunks (or came out of order)"


@needs_browser
def test_without_the_gate_gradio_drops_chunks_a_stalled_handler_missed(tmp_path):
    """Gradio's behaviour the gate exists for: if this fails, Gradio keeps every chunk by itself and the gate can go."""
    gaps, rate = missing_between_chunks(tmp_path, gated=False)
    print(f"plain: {len(gaps) + 1} chunks at {rate} Hz, samples missing between them: {gaps}")
    assert sum(gap >= STREAM_EVERY_S * rate - TOLERANCE_SAMPLES for gap in gaps[1:]) >= len(STALLED_CALLS), "no stall lost a chunk"


# --- the gate alone, against a stand-in for Gradio's event and stream route (fast, no browser) ---

EVENT_ID = "0123456789abcdef0123456789abcdef"


class FakeEvent:
    """What the gate reads of Gradio's Event: the slot's signal, the run time, closed."""

    def __init__(self):
        self.signal, self.run_time, self.closed, self.data = asyncio.Event(), 0.0, False, None


class FakeGradio:
    """The stream route as Gradio has it (a post overwrites the slot and sets the signal) and a loop taking chunks."""

    def __init__(self):
        self.event, self.taken, self.posted = FakeEvent(), [], []

    async def __call__(self, scope, receive, send):
        body = (await receive())["body"].decode()
        self.posted.append(body)
        if scope["path"].endswith("/close"):
            self.event.closed = True
        else:
            self.event.data = body
        self.event.signal.set()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def take(self, handler_seconds: float = 0.0):
        """One turn of Gradio's loop: wait for the signal, clear it, take the slot, run the handler."""
        await self.event.signal.wait()
        self.event.signal.clear()
        await asyncio.sleep(0)  # the few loop iterations between the wake-up and reading the slot
        self.taken.append(self.event.data)
        await asyncio.sleep(handler_seconds)
        self.event.run_time += handler_seconds or 0.001


async def post(app, path: str, body: str):
    scope = {"type": "http", "method": "POST", "path": path}
    sent = []

    async def receive():
        return {"type": "http.request", "body": body.encode(), "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent


def run_gate(scenario):
    gradio = FakeGradio()
    gate = ChunkGate(gradio, find_event=lambda event_id: gradio.event if event_id == EVENT_ID else None)
    try:
        asyncio.run(asyncio.wait_for(scenario(gradio, gate), timeout=10))
    except TimeoutError:
        pytest.fail(f"stuck: Gradio's loop took {gradio.taken} of {gradio.posted}")
    return gradio, gate


def test_gate_passes_chunks_one_at_a_time_in_order_while_the_handler_is_slow():
    async def scenario(gradio, gate):
        gradio.event.run_time = 0.5  # the first call (the chunk the event was queued with) has run
        posts = []
        for index in range(4):  # posted 10 ms apart, each while the handler is busy for 100 ms
            posts.append(asyncio.create_task(post(gate, f"/gradio_api/stream/{EVENT_ID}", f"chunk {index}")))
            await asyncio.sleep(0.01)
        for _ in range(4):
            await gradio.take(handler_seconds=0.1)
        await asyncio.gather(*posts)

    gradio, gate = run_gate(scenario)
    assert gradio.taken == ["chunk 0", "chunk 1", "chunk 2", "chunk 3"]  # without the gate: chunk 0 and then chunk 3
    assert gate.held_seconds > 0.2


def test_gate_holds_chunks_until_the_events_first_call_has_run():
    async def scenario(gradio, gate):
        first = asyncio.create_task(post(gate, f"/gradio_api/stream/{EVENT_ID}", "chunk 1"))
        await asyncio.sleep(0.05)
        assert gradio.posted == []  # the event's first call has not run: its own chunk still sits in the slot
        gradio.event.run_time = 0.1
        await first
        assert gradio.posted == ["chunk 1"]

    run_gate(scenario)


def test_close_waits_for_the_last_chunk_to_be_taken():
    async def scenario(gradio, gate):
        gradio.event.run_time = 0.5
        chunk = asyncio.create_task(post(gate, f"/gradio_api/stream/{EVENT_ID}", "last chunk"))
        await asyncio.sleep(0.01)
        close = asyncio.create_task(post(gate, f"/gradio_api/stream/{EVENT_ID}/close", ""))
        await asyncio.sleep(0.05)
        assert gradio.event.closed is False  # the close waits behind the chunk not yet taken
        await gradio.take()
        await asyncio.gather(chunk, close)
        assert gradio.event.closed and gradio.taken == ["last chunk"]

    gradio, gate = run_gate(scenario)
    assert gate._doors == {}  # a closed event leaves nothing behind


def test_other_requests_and_unknown_events_pass_straight_through():
    async def scenario(gradio, gate):
        await asyncio.wait_for(post(gate, "/gradio_api/queue/join", "join"), 1)
        await asyncio.wait_for(post(gate, "/gradio_api/stream/ffffffffffffffffffffffffffffffff", "gone"), 1)
        assert gradio.posted == ["join", "gone"]  # Gradio answers an unknown event itself (404)

    run_gate(scenario)
