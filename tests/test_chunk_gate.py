"""demo/chunk_gate.py against the real Gradio: a streaming handler that stalls loses no chunk behind the gate.

A tiny Gradio app (the demo's pinned Gradio, the demo's middleware) streams a fake microphone from headless Chromium
into a handler that sleeps 1.3 s on two of its calls, three stream_every periods each. Without the gate Gradio
replaces the chunks that arrive meanwhile (this test shows it, so a Gradio that stops doing so is noticed and the gate
can go); with it every chunk of the clip arrives, in order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.conftest import REPO_ROOT
from tests.test_demo_e2e import CHROMIUM, free_port

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (bash demo/setup.sh --tests)")

STREAM_EVERY_S = 0.4
RECORD_S = 9.0
CLIP_S = RECORD_S + 3  # the recording ends inside the clip: every chunk is the clip's
STALLED_CALLS = (4, 10)
STALL_S = 1.3

APP = """
import json, sys, time
import gradio as gr
from demo.app import chunk_gate_middleware
log_path, stream_every, gated = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "gated"
calls = []
def chunk(audio):
    rate, samples = audio
    calls.append(1)
    with open(log_path, "a") as log:
        log.write(json.dumps({"rate": rate, "samples": len(samples)}) + "\\n")
    if len(calls) in (%s):
        time.sleep(%s)
with gr.Blocks() as demo:
    microphone = gr.Audio(sources=["microphone"], streaming=True, elem_id="microphone")
    microphone.stream(chunk, [microphone], None, stream_every=stream_every, time_limit=60)
demo.queue()
demo.launch(ssr_mode=False, app_kwargs={"middleware": [chunk_gate_middleware(demo)]} if gated else None)
""" % (", ".join(map(str, STALLED_CALLS)), STALL_S)


def counting_clip(path: Path, seconds: float, rate: int = 48_000) -> Path:
    """A loud stepped tone: not silence, which a browser's capture may treat differently."""
    time_axis = np.arange(int(seconds * rate)) / rate
    frequency = 200 + 40 * (np.floor(time_axis / 0.01) % 50)
    soundfile.write(path, (0.5 * np.sin(2 * np.pi * frequency * time_axis)).astype(np.float32), rate, subtype="PCM_16")
    return path


def chunks_received(tmp_path: Path, gated: bool) -> tuple[list[dict], float]:
    """The chunks the handler got, and how long the recording lasted (Record to Stop, as the page clicked them)."""
    clip = counting_clip(tmp_path / "clip.wav", CLIP_S)
    log_path, app_path = tmp_path / "chunks.jsonl", tmp_path / "app.py"
    app_path.write_text(APP)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "HF_HUB_OFFLINE": "1"}
    server_log = tmp_path / "server.log"
    with open(server_log, "w") as out:
        server = subprocess.Popen([sys.executable, str(app_path), str(log_path), str(STREAM_EVERY_S), "gated" if gated else "plain"],
                                  cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 120
        while True:
            assert server.poll() is None, server_log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, server_log.read_text()[-3000:]
                time.sleep(0.5)
        args = ["--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={clip}%noloop", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-gpu"]
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args, timeout=60_000)
            page = browser.new_page()
            page.goto(url)
            page.locator("#microphone").get_by_role("button", name="Record").click()
            started = time.monotonic()
            time.sleep(RECORD_S)
            page.locator("#microphone").get_by_role("button", name="Stop").click()
            recorded = time.monotonic() - started
            time.sleep(2 * STALL_S + 2)  # chunks held at the gate are still delivered after Stop
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=15)
    chunks = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    return chunks, recorded


def test_a_stalled_handler_loses_no_chunk_behind_the_gate(tmp_path):
    chunks, recorded = chunks_received(tmp_path, gated=True)
    assert len(chunks) > max(STALLED_CALLS), f"only {len(chunks)} chunks came"
    seconds = sum(chunk["samples"] / chunk["rate"] for chunk in chunks)
    # all but what the recorder's start and Stop cut (under a chunk each; 0.74 s seen), with a margin
    print(f"gated: {seconds:.2f} s of a {recorded:.2f} s recording in {len(chunks)} chunks")
    assert seconds > recorded - 3 * STREAM_EVERY_S, f"{seconds:.2f} s of a {recorded:.2f} s recording arrived"


def test_without_the_gate_gradio_drops_chunks_a_stalled_handler_missed(tmp_path):
    """Gradio's behaviour the gate exists for: if this fails, Gradio keeps every chunk by itself and the gate can go."""
    chunks, recorded = chunks_received(tmp_path, gated=False)
    seconds = sum(chunk["samples"] / chunk["rate"] for chunk in chunks)
    print(f"plain: {seconds:.2f} s of a {recorded:.2f} s recording in {len(chunks)} chunks")
    # each stall spans three chunk periods: two chunks or more are replaced in each
    assert seconds < recorded - 4 * STREAM_EVERY_S, f"{seconds:.2f} s of a {recorded:.2f} s recording arrived: nothing was dropped"
