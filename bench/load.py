"""Load: N browser-like microphone streams at once against the demo, started on loopback.

The demo runs as a subprocess on a free port (ASR_MODEL / ASR_LM pick its model and LM, as for
the app itself; default: the shipped ones). Each client is one gradio_client session that does
what a browser tab does: the page-load event, Record, then the microphone stream on the same
streaming connection the browser uses (the first chunk joins the queue, later chunks are posted
to /gradio_api/stream/<event id>, answers come back on the session's SSE stream), then Stop.
Every client speaks a different stretch of a manifest's clips (--manifest; default the synthetic test set,
data/synth/test.jsonl; clips made with espeak-ng without it), as 48 kHz int16 WAV chunks of 0.4 s sent
in real time.

Per N it prints, over all chunks of all clients:
  answer: from the moment a chunk was complete (its last sample spoken) to the page update it
          caused (upload, post, handler, SSE);
  shown:  from that moment to the first page update whose "Audio processed" covers the chunk,
          i.e. when its words can be on screen (updates come with chunks, so at least one chunk
          period later, except for the last chunk, which Stop shows);
  stop:   from pressing Stop to the final transcript.
Then it checks every client got its own transcript: the final greedy and beam texts must be
within --max-cer (greedy) and --max-beam-cer (beam) of what the demo's pipeline says for that
client's audio when nothing else runs (one endpointing Stream in this process, fed the same
chunks), nearer to it than to any other client's, every chunk answered, with no error on the
page and no failed event. A client beyond the app's open recordings (decoding slots plus the line)
waits in Gradio's queue (Record joins with a silent chunk; it speaks once its stream starts); one the
full queue refuses is counted as refused; one that waited in the line with its audio kept and stopped
before its turn asks for the view until its stream is finished. --without-limit runs the largest N
again with every recording decoding at once; --baseline REV runs each N against the demo at git
revision REV too, side by side; --third-column switches on the beam search without the LM.

    nice -n 10 .venv/bin/python bench/load.py [--clients 1,4,16] [--seconds 8] [--manifest M] [--baseline REV]
                                              [--third-column] [--without-limit] [--write-results]
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile
from gradio_client.utils import QueueError

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))
from results import write_section  # noqa: E402

from asr.pretrained import BeamSettings, load_recognizer  # noqa: E402
from asr.transcribe import transcribe_blocks  # noqa: E402

TEST_MANIFEST = REPO_ROOT / "data" / "synth" / "test.jsonl"
RESULTS = REPO_ROOT / "bench" / "RESULTS.md"
SECTION = "## Load"
BROWSER_RATE = 48_000
CHUNK_SECONDS = 0.4  # demo/app.py STREAM_EVERY_SECONDS
GAP_SECONDS = 0.5  # silence between the clips one client says
POLL_SECONDS = 0.01  # how often a client looks at its SSE messages (times are this coarse; finer polling costs the shared CPU)
ESPEAK_SENTENCES = [
    "the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
    "a stitch in time saves nine", "all that glitters is not gold", "the early bird catches the worm",
    "time flies like an arrow", "every cloud has a silver lining", "actions speak louder than words",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4,16", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--seconds", type=float, default=8.0, help="audio each client speaks (clips joined until this long)")
    parser.add_argument("--manifest", type=Path, default=TEST_MANIFEST,
                        help="clips the clients say (default: the synthetic test set; e.g. data/real/dev-commonvoice.jsonl)")
    parser.add_argument("--max-cer", type=float, default=0.02, help="largest greedy CER between a client's final text and its reference")
    parser.add_argument("--max-beam-cer", type=float, default=0.02, help="largest beam CER between a client's final text and its reference")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds to wait for the demo to come up")
    parser.add_argument("--without-limit", action="store_true", help="also run the largest N with no recording limit, for comparison")
    parser.add_argument("--baseline", metavar="REV", default=None,
                        help="also run each N against the demo as it was at git revision REV (a worktree), side by side")
    parser.add_argument("--third-column", action="store_true",
                        help="every client switches on the beam search without the LM (the demo's middle column)")
    parser.add_argument("--write-results", action="store_true", help=f"replace the '{SECTION}' section of bench/RESULTS.md")
    return parser.parse_args(argv)


# --- audio ------------------------------------------------------------------------------------

@dataclass
class Speech:
    """One client's audio: 48 kHz int16 mono, its chunk files, and where it came from."""

    name: str
    pcm: np.ndarray
    chunks: list[Path]
    sources: list[str]


def clip_pool(manifest: Path = TEST_MANIFEST) -> list[tuple[str, np.ndarray]]:
    """(name, float32 at 16 kHz) clips: the manifest's, else espeak-ng sentences."""
    entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()] if manifest.is_file() else []
    if entries:  # an empty manifest (a corpus build cut short) falls back to espeak-ng like a missing one
        entries.sort(key=lambda e: e["audio_filepath"])
        clips = []
        for entry in entries:
            samples, rate = soundfile.read(str(manifest.parent / entry["audio_filepath"]), dtype="float32")
            clips.append((entry["audio_filepath"], _resample(samples, rate, 16000)))
        return clips
    if shutil.which("espeak-ng") is None:
        sys.exit(f"error: no clips in {manifest} and no espeak-ng to make clips with")
    clips = []
    with tempfile.TemporaryDirectory() as folder:
        for index, (text, voice) in enumerate((t, v) for v in ("en-us", "en-gb", "en-us+f3", "en-gb+m3") for t in ESPEAK_SENTENCES):
            path = Path(folder) / f"{index}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
            samples, rate = soundfile.read(str(path), dtype="float32")
            clips.append((f"espeak {voice}: {text}", _resample(samples, rate, 16000)))
    return clips


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if rate == target:
        return samples.astype(np.float32)
    import torch
    import torchaudio

    return torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(samples)), rate, target).numpy()


def make_speech(clients: int, seconds: float, pool: list[tuple[str, np.ndarray]], folder: Path) -> list[Speech]:
    """Client i says clips i, i + clients, i + 2 * clients, ... (no clip twice) until `seconds` of audio."""
    gap = np.zeros(int(GAP_SECONDS * 16000), np.float32)
    speeches = []
    for client in range(clients):
        pieces, sources, position = [np.zeros(int(CHUNK_SECONDS * 16000), np.float32)], [], client  # Record's first chunk: silence
        while sum(len(p) for p in pieces) < (seconds + CHUNK_SECONDS) * 16000 and position < len(pool):
            name, samples = pool[position]
            pieces += [samples, gap]
            sources.append(name)
            position += clients
        if not sources:
            sys.exit(f"error: {len(pool)} clips are not enough for {clients} clients")
        audio = _resample(np.concatenate(pieces), 16000, BROWSER_RATE)
        pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
        step = int(CHUNK_SECONDS * BROWSER_RATE)
        chunks = []
        for index, start in enumerate(range(0, len(pcm), step)):
            path = folder / f"client-{client:02d}-chunk-{index:03d}.wav"
            soundfile.write(str(path), pcm[start : start + step], BROWSER_RATE)
            chunks.append(path)
        speeches.append(Speech(f"client {client}", pcm, chunks, sources))
    return speeches


def stream_transcripts(speeches: dict[int, list[Speech]], model: str | None, lm: str | None) -> dict[int, list[dict]]:
    """What the demo's own pipeline says for each client's audio alone: one Stream with the demo's endpointing fed the
    same 0.4 s chunks the client sends. A pause closes an utterance, which starts the LM and the recurrent state
    afresh, so the CLI's offline decode of the whole file is not the reference: with the shipped stage-31 model it
    differed from this by greedy CER 0.06-0.08 on client 0's recordings."""
    recognizer = load_recognizer(model, BeamSettings(lm_path=lm), device="cpu").recognizer

    def reference(speech: Speech) -> dict:
        chunks = [soundfile.read(str(path), dtype="float32")[0] for path in speech.chunks]
        greedy, beam, _ = transcribe_blocks(recognizer, chunks, BROWSER_RATE, endpointing=True)
        return {"greedy": greedy, "beam": beam or ""}

    return {count: [reference(speech) for speech in group] for count, group in speeches.items()}


# --- the demo server ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DemoServer:
    """demo/app.py as a subprocess on loopback; stopped by its own process id."""

    def __init__(self, timeout: float, max_recordings: int | None, root: Path = REPO_ROOT, label: str = "this tree"):
        """max_recordings None: the demo's own choice (this tree's: measured from the stream cost and the cores)."""
        self.port, self.root, self.label = free_port(), root, label
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="demo-load-", suffix=".log", delete=False)
        env = {**os.environ, "GRADIO_SERVER_PORT": str(self.port), "GRADIO_SERVER_NAME": "127.0.0.1",
               "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
               **({"ASR_MAX_RECORDINGS": str(max_recordings)} if max_recordings else {})}
        if not max_recordings:
            env.pop("ASR_MAX_RECORDINGS", None)
        self.requested = max_recordings
        self.process = subprocess.Popen([sys.executable, str(root / "demo" / "app.py")], cwd=root, env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"error: the demo exited with status {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "config", timeout=2).status_code == 200:
                    self.max_recordings = self._slots()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        sys.exit(f"error: the demo did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def _slots(self) -> str:
        """Streams decoded at once, as the demo's log says (this tree), else the revision's recording limit."""
        self.log.flush()
        found = re.search(r"([\d.]+) CPU s per s of audio here \(\+([\d.]+) for Gradio's transport; the model ([\d.]+) of it\) "
                          r"on ([\d.]+) cores: (\d+) streams decode at once[^,]*, (\d+) more may wait", Path(self.log.name).read_text())
        if found:
            return (f"{found[5]} + {found[6]} waiting (cost {float(found[1]):.3f} + {float(found[2]):.3f}, model {float(found[3]):.3f})"
                    if not self.requested else f"{found[5]} + {found[6]} waiting")
        return str(self.requested or 4)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def log_tail(self, lines: int = 30) -> str:
        self.log.flush()
        return "\n".join(Path(self.log.name).read_text().splitlines()[-lines:])

    def tracebacks(self) -> int:
        self.log.flush()
        return Path(self.log.name).read_text().count("Traceback")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- one browser-like client --------------------------------------------------------------------

@dataclass
class ClientResult:
    speech: Speech
    answer_ms: list[float] = field(default_factory=list)
    shown_ms: list[float] = field(default_factory=list)
    stop_ms: float | None = None
    chunks_sent: int = 0
    chunks_answered: int = 0
    greedy: str = ""
    beam: str = ""
    errors: list[str] = field(default_factory=list)
    greedy_cer: float | None = None
    beam_cer: float | None = None
    nearest: int | None = None
    queue_wait_s: float | None = None
    refused: bool = False  # the queue was full: Gradio said so and took nothing


FIGURE = re.compile(r'data-name="(?P<name>[^"]+)">(?P<value>[^<]*)<')


def figure(figures_html: str, name: str) -> str | None:
    for match in FIGURE.finditer(figures_html):
        if match["name"] == name:
            return match["value"]
    return None


def column_text(transcripts_html: str, column: str) -> str:
    """The finished utterances of one column of the transcript HTML, tags stripped, joined."""
    parts = transcripts_html.split(f'<div class="column {column}">', 1)
    if len(parts) < 2:
        return ""
    body = parts[1].split('<div class="column ', 1)[0]
    words = re.findall(r'<span class="words">(.*?)</span></p>', body)
    return " ".join(" ".join(html.unescape(re.sub(r"<[^>]+>", "", w)).split()) for w in words).strip()


class BrowserTab:
    """One gradio_client session doing what a browser tab does; everything it sees goes into a ClientResult.

    Record joins the queue with a silent first chunk and waits until the stream event starts (a person
    who sees "queued" waits before speaking), then the speech follows in real time on that event.
    """

    def __init__(self, url: str, speech: Speech, overrides: dict, result: ClientResult):
        from gradio_client import Client

        self.speech, self.result = speech, result
        self.client = Client(url, verbose=False)
        dependency = next(d for d in self.client.config["dependencies"] if d.get("api_name") == "microphone_chunk")
        self.stream_id, self.trigger = dependency["id"], dependency["targets"][0][0]
        elem_ids = {c["id"]: c.get("props", {}).get("elem_id") for c in self.client.config["components"]}
        # The page's own settings controls (after the session state and the microphone), at their defaults as a page
        # shows them, with `overrides` by elem_id: the same code serves any version of the page.
        props = {c["id"]: c.get("props", {}) for c in self.client.config["components"]}
        self.controls = [overrides.get(props[c].get("elem_id"), props[c].get("value")) for c in dependency["inputs"][2:]]
        self.outputs = {elem_ids.get(component): index for index, component in enumerate(dependency["outputs"])}  # elem_id -> position
        self.http = httpx.Client(timeout=60)
        self.messages = None
        self.started_at: float | None = None  # when the stream event started (left the queue)
        self.completed = self.refused = False
        chunks = len(speech.chunks)
        self.due = [0.0] * chunks  # when each chunk's last sample was spoken
        self.ends = [min((i + 1) * CHUNK_SECONDS, len(speech.pcm) / BROWSER_RATE) for i in range(chunks)]
        self.sent: list[int] = []
        self.answered = [False] * chunks
        self.shown = [False] * chunks

    def run(self, start_at: float, timeout: float) -> None:
        try:
            self._run(start_at, timeout)
        except Exception as error:  # noqa: BLE001 - every failure is a finding of the bench, reported per client
            self.result.errors.append(f"{type(error).__name__}: {str(error)[:200]}")
        finally:
            self.http.close()
            self.client.close()

    def _run(self, start_at: float, timeout: float) -> None:
        self.client.predict(*self.controls, api_name="/load")
        self.client.predict(api_name="/record_start")
        time.sleep(max(0.0, start_at - time.monotonic()))
        joined = time.monotonic()
        try:
            event_id = self.client.send_data(self._body(self.speech.chunks[0]), {"fn_index": self.stream_id, "session_hash": self.client.session_hash},
                                             self.client.protocol, None)
        except QueueError:  # "Queue is full! Please try again.": what the page would say
            self.result.refused = True
            return
        self.messages = self.client.pending_messages_per_event[event_id]
        self.sent.append(0)
        self._pump_until(lambda: self.started_at is not None or self.completed, joined + timeout)
        if self.refused or self.started_at is None:
            if not self.refused:
                self.result.errors.append("the stream event never started")
            return
        self.result.queue_wait_s = self.started_at - joined
        for index in range(1, len(self.speech.chunks)):
            self._pump_until(lambda: self.completed, self.due[index])
            if self.completed:
                self.result.errors.append("the stream event ended early")
                break
            response = self.http.post(f"{self.client.src_prefixed}stream/{event_id}",
                                      json={**self._body(self.speech.chunks[index]), "session_hash": self.client.session_hash})
            if response.status_code != 200:
                self.result.errors.append(f"chunk {index}: HTTP {response.status_code}")
                break
            self.sent.append(index)
        deadline = time.monotonic() + timeout
        self._pump_until(lambda: self.answered[self.sent[-1]] or self.completed, deadline)
        self.http.post(f"{self.client.src_prefixed}stream/{event_id}/close")
        self._pump_until(lambda: self.completed, deadline)
        self.result.chunks_sent, self.result.chunks_answered = len(self.sent), sum(self.answered)
        stop_pressed = time.monotonic()
        outputs = self.client.predict(api_name="/record_stop")  # gradio_client leaves the State out
        # A recording that waited for a slot is finished by the demo's worker once decoded: the page's timer shows it,
        # here asked for directly (the same view) until the state says finished.
        while (figure(outputs[self.outputs["figures"] - 1], "State") or "finished") != "finished" and time.monotonic() < deadline:
            time.sleep(0.5)
            outputs = self.client.predict(api_name="/refresh")
        transcripts, notice = outputs[self.outputs["transcripts"] - 1], outputs[self.outputs["notice"] - 1]
        final = time.monotonic()
        self.result.stop_ms = 1000 * (final - stop_pressed)
        self.result.shown_ms += [1000 * (final - self.due[i]) for i in self.sent if not self.shown[i]]  # what Stop decoded
        self._check_notice(notice)
        self.result.greedy, self.result.beam = column_text(transcripts, "greedy"), column_text(transcripts, "beam")

    def _body(self, path: Path) -> dict:
        with open(path, "rb") as handle:
            response = self.http.post(self.client.upload_url, files=[("files", (path.name, handle, "audio/wav"))])
        response.raise_for_status()
        audio = {"path": response.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
        return {"data": [None, audio, *self.controls], "event_data": None, "fn_index": self.stream_id, "trigger_id": self.trigger}

    def _pump_until(self, done, deadline: float) -> None:
        while not done() and time.monotonic() < deadline:
            self._pump()
            time.sleep(POLL_SECONDS)
        self._pump()

    def _pump(self) -> None:
        """Take what the session's SSE stream brought (gradio_client's reader files it under the event id)."""
        while self.messages:
            message, now = self.messages.popleft(), time.monotonic()
            if message is None:  # the reader ended: expected once the event has completed
                if not self.completed:
                    self.result.errors.append("the SSE stream closed before the stream event completed")
                self.completed = True
                return
            kind = message.get("msg")
            if kind == "process_starts":
                # Chunk i is due (its last sample spoken) i chunk periods after the stream starts; set here, before
                # this same pump can carry the first chunk's answer.
                self.started_at = now
                self.due = [now + i * CHUNK_SECONDS for i in range(len(self.due))]
            elif kind == "queue_full":
                self.refused = self.completed = True
                self.result.refused = True
            elif kind in ("process_streaming", "process_completed"):
                if not message.get("success", True):
                    self.result.errors.append(f"{kind}: {str(message.get('output'))[:200]}")
                data = (message.get("output") or {}).get("data") or []
                if kind == "process_streaming" and len(data) == len(self.outputs):
                    self._absorb(data, now)
                self.completed |= kind == "process_completed"

    def _absorb(self, data: list, now: float) -> None:
        """A page update: it answers the oldest chunk posted and not yet answered (the demo's chunk gate hands Gradio
        one chunk at a time, in order; a chunk Gradio dropped anyway leaves the last one unanswered)."""
        waiting = [i for i in self.sent if not self.answered[i]]
        if waiting:
            self.answered[waiting[0]] = True
            self.result.answer_ms.append(1000 * (now - self.due[waiting[0]]))
        self._check_notice(data[self.outputs["notice"]])
        figures_html = data[self.outputs["figures"]]
        processed = figure(figures_html if isinstance(figures_html, str) else "", "Audio processed")
        if processed:
            seconds = float(processed.split()[0])
            for index in self.sent:
                if not self.shown[index] and seconds + 0.05 >= self.ends[index]:
                    self.shown[index] = True
                    self.result.shown_ms.append(1000 * (now - self.due[index]))

    def _check_notice(self, notice) -> None:
        if isinstance(notice, str) and 'class="error"' in notice:
            error = re.sub(r"<[^>]+>", "", notice)[:200]
            if error not in self.result.errors:
                self.result.errors.append(error)


# --- measuring ----------------------------------------------------------------------------------

def cer(hypothesis: str, reference: str) -> float:
    import jiwer

    if not reference:
        return 0.0 if not hypothesis else 1.0
    return float(jiwer.cer(reference, hypothesis or " "))


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run_level(server: DemoServer, speeches: list[Speech], references: list[dict], max_cer: float, max_beam_cer: float,
              overrides: dict | None = None) -> dict:
    results = [ClientResult(speech) for speech in speeches]
    begin = time.monotonic() + 3.0  # sessions are set up first; then everybody starts within one chunk period
    cpu_before, own_cpu_before = server.cpu_seconds(), time.process_time()
    def tab(speech: Speech, start_at: float, result: ClientResult) -> None:
        try:
            browser = BrowserTab(server.url, speech, overrides or {}, result)
        except Exception as error:  # noqa: BLE001
            result.errors.append(f"could not connect: {type(error).__name__}: {str(error)[:200]}")
            return
        browser.run(start_at, timeout=180.0)

    threads = [threading.Thread(target=tab, args=(s, begin + i * CHUNK_SECONDS / len(speeches), r), daemon=True)
               for i, (s, r) in enumerate(zip(speeches, results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=len(speeches[0].chunks) * CHUNK_SECONDS + 300)
    server_cpu, clients_cpu = server.cpu_seconds() - cpu_before, time.process_time() - own_cpu_before
    for thread, result in zip(threads, results):
        if thread.is_alive():
            result.errors.append("did not finish in time")
    for index, result in enumerate(results):
        result.greedy_cer = cer(result.greedy, references[index]["greedy"])
        result.beam_cer = cer(result.beam, references[index]["beam"])
        distances = [cer(result.beam, reference["beam"]) + cer(result.greedy, reference["greedy"]) for reference in references]
        result.nearest = int(np.argmin(distances))
    served = [r for r in results if not r.refused]
    own = [r for r in served if not r.errors and r.nearest == results.index(r) and r.chunks_answered == r.chunks_sent
           and r.greedy_cer <= max_cer and r.beam_cer <= max_beam_cer and (r.greedy or r.beam)]
    audio = sum(len(r.speech.pcm) / BROWSER_RATE for r in served)
    waits = [r.queue_wait_s for r in served if r.queue_wait_s is not None]
    return {
        "clients": len(results), "results": results, "served": len(served), "refused": len(results) - len(served),
        "own_transcript": len(own), "audio_seconds": audio, "seconds_per_client": audio / max(len(served), 1),
        "answer": [x for r in served for x in r.answer_ms], "shown": [x for r in served for x in r.shown_ms],
        "stop": [r.stop_ms for r in served if r.stop_ms is not None], "queue_wait": waits,
        "sent": sum(r.chunks_sent for r in served), "answered": sum(r.chunks_answered for r in served),
        "errors": [f"{r.speech.name}: {e}" for r in results for e in r.errors],
        "server_cpu_per_audio": server_cpu / max(audio, 1e-9), "clients_cpu_per_audio": clients_cpu / max(audio, 1e-9),
        "rss_mb": server.rss_mb(), "recordings": server.max_recordings, "code": server.label,
        "worst_cer": max((max(r.greedy_cer, r.beam_cer) for r in served), default=0.0),
    }


def fmt(value: float | None, pattern: str = ".0f") -> str:
    return "–" if value is None else format(value, pattern)


def report_text(command: str, header: str, levels: list[dict], max_cers: tuple[float, float], tracebacks: int, limits: str) -> str:
    rows = ["| code | N | recordings at once | served / refused | queue wait p50 / max s | audio s / client | chunks answered "
            "| answer p50 ms | answer p95 ms | shown p50 ms | shown p95 ms | stop p50 ms | stop max ms | own transcript | worst CER "
            "| errors | CPU s / audio s: server, clients | server RSS MB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for level in levels:
        waits = level["queue_wait"]
        rows.append(
            f"| {level['code']} | {level['clients']} | {level['recordings']} | {level['served']} / {level['refused']} "
            f"| {fmt(percentile(waits, 50), '.1f')} / {fmt(max(waits, default=None), '.1f')} "
            f"| {level['seconds_per_client']:.1f} | {level['answered']}/{level['sent']} "
            f"| {fmt(percentile(level['answer'], 50))} | {fmt(percentile(level['answer'], 95))} "
            f"| {fmt(percentile(level['shown'], 50))} | {fmt(percentile(level['shown'], 95))} "
            f"| {fmt(percentile(level['stop'], 50))} | {fmt(max(level['stop'], default=None))} "
            f"| {level['own_transcript']}/{level['served']} | {level['worst_cer']:.3f} | {len(level['errors'])} "
            f"| {level['server_cpu_per_audio']:.3f}, {level['clients_cpu_per_audio']:.3f} | {level['rss_mb']:.0f} |")
    notes = [
        f"`{command}`", "", header, "", f"Limits: {limits}.", "",
        "Each client is one gradio_client session doing what a browser tab does (page load, Record, the microphone stream "
        "on the browser's streaming connection, Stop), speaking its own clips as 48 kHz int16 chunks of "
        f"{CHUNK_SECONDS * 1000:.0f} ms in real time, after a silent first chunk that joins the queue (a person told they are "
        "queued waits before speaking); starts are staggered over one chunk period. "
        "queue wait: from Record to the stream event starting (beyond about a second: waiting for a free recording slot). "
        "answer: from a chunk being complete to the page update it caused (chunks answered below chunks sent: Gradio dropped "
        "chunks that arrived while the previous one was still being handled, so that audio is lost); shown: to the first "
        "update whose 'Audio processed' covers it (updates ride on chunks, so this includes one chunk period); "
        "stop: Stop to the final transcript. "
        f"own transcript: every chunk answered, final greedy and beam texts within CER {max_cers[0]} and {max_cers[1]} of what the demo's "
        "pipeline says for that client's audio alone (one Stream with the demo's endpointing, in the bench's process, fed the "
        "same chunks) and nearer to it than to any other client's. worst CER: the larger of greedy and beam. CPU: seconds of CPU per second of audio served, of the demo process and of this bench's "
        "clients (which share the machine's cores with it).", "",
        *rows, ""]
    errors = [e for level in levels for e in level["errors"]]
    if errors:
        notes += ["Errors:", "", *[f"- {e}" for e in errors[:20]], ""]
    notes.append(f"Tracebacks in the demo's log: {tracebacks}.")
    return "\n".join(notes)


def write_results(report: str) -> None:
    write_section(SECTION, report)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    counts = sorted({int(n) for n in args.clients.split(",") if n.strip()})
    model, lm = os.environ.get("ASR_MODEL") or None, os.environ.get("ASR_LM") or None
    pool = clip_pool(args.manifest)
    folder = Path(tempfile.mkdtemp(prefix="demo-load-"))
    speeches = {}
    for count in counts:
        (folder / f"n{count}").mkdir()
        speeches[count] = make_speech(count, args.seconds, pool, folder / f"n{count}")
    print(f"reference transcripts: one endpointing Stream each on {sum(map(len, speeches.values()))} client recordings ...", flush=True)
    references = stream_transcripts(speeches, model, lm)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    header = (f"{platform.machine()}, {os.cpu_count()} CPU cores (shared; load average at start {load}); gradio "
              f"{_version('gradio')}, gradio_client {_version('gradio_client')}; model {model or 'shipped (asr/pretrained/ds2_small.pt)'}, "
              f"LM {lm or 'shipped (lm/default/lm.binary)'}, beam settings: the demo's defaults; device: the demo's default (auto)")
    print(header, flush=True)
    from demo import app

    limit = int(os.environ["ASR_MAX_RECORDINGS"]) if os.environ.get("ASR_MAX_RECORDINGS") else None
    limits = ("recordings decoded at once: " + (f"{limit} (ASR_MAX_RECORDINGS)" if limit else "the demo's own choice (this tree: "
              "from the stream cost it measures at start and the cores; the column says which and the measured cost)")
              + f"; queue max_size {os.environ.get('ASR_QUEUE_SIZE') or app.QUEUE_SIZE}, default_concurrency_limit "
              f"{app.EVENTS_AT_ONCE}, stream time_limit {app.MAX_RECORDING_SECONDS} s")
    baseline = baseline_worktree(args.baseline, folder) if args.baseline else None
    plans = [(count, limit, REPO_ROOT, "this tree") for count in counts]
    if baseline is not None:  # each N against the old code right after the new, so both see the same machine
        plans = [plan for count in counts for plan in ((count, limit, REPO_ROOT, "this tree"), (count, limit, baseline, f"at {args.baseline}"))]
        header += f"; rows 'at {args.baseline}' run the demo as it was at that revision (git worktree), same venv, same clients"
    if args.without_limit:
        plans.append((max(counts), max(counts), REPO_ROOT, "this tree, no limit"))  # the same load, every stream decoding at once
        limits += f"; the last row lifts the recording limit (ASR_MAX_RECORDINGS={max(counts)})"
    overrides = {"compare": True} if args.third_column else {}
    if args.third_column:
        header += "; every client switched on the third column (beam search without the LM) where the page has it"
    levels, tracebacks, server = [], 0, None
    try:
        for count, recordings, root, label in plans:
            if server is None or server.requested != recordings or server.root != root:
                if server is not None:
                    tracebacks += server.tracebacks()
                    server.stop()
                server = DemoServer(args.start_timeout, recordings, root, label)
            group = speeches[count]
            level = run_level(server, group, references[count], args.max_cer, args.max_beam_cer, overrides)
            levels.append(level)
            print(f"[{label}] N={count}, {server.max_recordings} recordings at once: answer p50/p95 {fmt(percentile(level['answer'], 50))}/"
                  f"{fmt(percentile(level['answer'], 95))} ms, shown p50/p95 {fmt(percentile(level['shown'], 50))}/"
                  f"{fmt(percentile(level['shown'], 95))} ms, own transcript {level['own_transcript']}/{level['served']}, "
                  f"refused {level['refused']}, errors {len(level['errors'])}", flush=True)
            for result in level["results"]:
                print(f"  {result.speech.name}: waited {fmt(result.queue_wait_s, '.1f')} s, chunks {result.chunks_answered}/{result.chunks_sent}, "
                      f"CER greedy {fmt(result.greedy_cer, '.3f')} beam {fmt(result.beam_cer, '.3f')}, nearest {result.nearest}"
                      + (f", errors {result.errors}" if result.errors else ""), flush=True)
        tracebacks += server.tracebacks()
    finally:
        if server is not None:
            server.stop()
        if baseline is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=REPO_ROOT, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    arguments = sys.argv[1:] if argv is None else argv
    command = "nice -n 10 .venv/bin/python bench/load.py" + (" " + shlex.join(arguments) if arguments else "")
    report = report_text(command, header, levels, (args.max_cer, args.max_beam_cer), tracebacks, limits)
    print("\n" + report)
    if args.write_results:
        write_results(report)
    within_limits = [level for level in levels if level["code"] == "this tree"]
    ok = tracebacks == 0 and all(level["own_transcript"] == level["served"] and not level["errors"] for level in within_limits)
    return 0 if ok else 1


def baseline_worktree(revision: str, folder: Path) -> Path:
    """A checkout of `revision` beside this one (its own demo/, asr/ and shipped files; the same venv)."""
    path = folder / "baseline"
    result = subprocess.run(["git", "worktree", "add", "--detach", str(path), revision], cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: cannot check out {revision}: {result.stderr.strip()}")
    return path


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(main())
