"""Bad input, made here: every case through the CLI (a subprocess) and through the demo's handlers.

Each case gets a one-line message naming the problem, or the transcript that audio should get
(the offline decoding of the same samples), never a traceback; and afterwards the same process
(CLI) or the same session (demo) still transcribes a good input correctly. Also the safety of what
the browser can reach: the controls never choose a model or LM file, uploads are capped, every
torch.load is weights_only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torchaudio

from asr.pretrained import BeamSettings, load_recognizer
from asr.streaming import EndpointConfig
from demo import handlers
from tests.conftest import REPO_ROOT

RATE = 16_000
CONTROLS = handlers.Controls(use_lm=False, beam_width=4)
CLI_BEAM = BeamSettings(use_lm=False, beam_width=4)  # what `transcribe --no-lm --beam-width 4` decodes with
# One torch thread: on a shared 2-core machine two threads that wait for each other make these runs 3x slower.
CLI_ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}


def speech_like(seconds: float = 1.6, seed: int = 0) -> np.ndarray:
    """Voiced stretches (harmonics of a wandering pitch) between pauses, with a little noise: float32 within +-0.5."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(120 + 40 * np.sin(2 * np.pi * 0.7 * t)) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6)) * (np.sin(2 * np.pi * 1.5 * t) > -0.3)
    return (0.2 * voiced + 0.01 * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    return torchaudio.functional.resample(torch.from_numpy(samples), RATE, rate).numpy()


# --- the corpus ---------------------------------------------------------------------------------

@dataclass
class FileCase:
    path: Path
    error: str | None  # the message a refusal must contain; None: a transcript is due
    same_as: str | None = None  # a case whose transcript this one must equal (same audio, other encoding)


def write_corpus(folder: Path) -> tuple[dict[str, FileCase], list[str]]:
    """Every kind of bad or odd file, written here; returns the cases and why any were left out."""
    folder.mkdir(parents=True, exist_ok=True)
    clip = speech_like()
    pcm16 = np.round(clip * 32767).astype(np.int16)
    cases: dict[str, FileCase] = {}
    left_out: list[str] = []

    def write(name: str, samples, rate: int = RATE, error: str | None = None, same_as: str | None = None, **options) -> Path:
        path = folder / name
        soundfile.write(str(path), samples, rate, **options)
        cases[name] = FileCase(path, error, same_as)
        return path

    def raw(name: str, data: bytes, error: str) -> None:
        (folder / name).write_bytes(data)
        cases[name] = FileCase(folder / name, error)

    write("mono.wav", pcm16)
    write("no-samples.wav", np.zeros(0, np.int16), error="contains no audio samples")
    write("one-sample.wav", pcm16[:1])
    write("silence.wav", np.zeros(RATE, np.int16))
    write("dc-offset.wav", clip * 0.5 + 0.45, subtype="FLOAT")
    noise = np.random.default_rng(1).standard_normal(RATE)
    write("clipped-noise.wav", np.where(noise > 0, 32767, -32768).astype(np.int16))
    with_nan, with_inf = clip.copy(), clip.astype(np.float64)
    with_nan[100], with_inf[RATE // 2] = np.nan, -np.inf
    write("nan.wav", with_nan, subtype="FLOAT", error="contains NaN or infinite samples")
    write("inf.wav", with_inf, subtype="DOUBLE", error="contains NaN or infinite samples")
    write("int8.aiff", pcm16, subtype="PCM_S8")  # WAV has no signed 8-bit samples
    write("uint8.wav", pcm16, subtype="PCM_U8")
    write("int32.wav", clip, subtype="PCM_32")
    write("float64.wav", pcm16.astype(np.float64) / 32768, subtype="DOUBLE", same_as="mono.wav")
    write("stereo.wav", np.stack([pcm16, pcm16], axis=1), same_as="mono.wav")
    write("6-channels.wav", np.repeat(pcm16[:, None], 6, axis=1), same_as="mono.wav")
    write("8khz.wav", resample(clip, 8_000), 8_000)
    write("96khz.wav", resample(clip, 96_000), 96_000)
    write("4khz.wav", resample(clip, 4_000), 4_000, error="sample rate 4000 Hz is outside the supported 8000-96000 Hz")
    write("192khz.wav", np.zeros(19_200, np.int16), 192_000, error="sample rate 192000 Hz is outside the supported 8000-96000 Hz")
    raw("zero-bytes.wav", b"", "file is empty (0 bytes)")
    whole_wav = (folder / "mono.wav").read_bytes()
    (folder / "truncated.wav").write_bytes(whole_wav[: len(whole_wav) // 2])  # header promises more: the half there is decoded
    cases["truncated.wav"] = FileCase(folder / "truncated.wav", None)
    raw("truncated-header.wav", whole_wav[:30], "not a readable audio file")
    flac = folder / "whole.flac"
    soundfile.write(str(flac), pcm16, RATE)
    raw("truncated.flac", flac.read_bytes()[: flac.stat().st_size // 2], "not a readable audio file")
    flac.unlink()
    raw("notes.wav", b"These are my meeting notes, not audio.\n" * 20, "not a readable audio file")
    (folder / "folder.wav").mkdir()
    cases["folder.wav"] = FileCase(folder / "folder.wav", "not a regular file")
    cases["missing.wav"] = FileCase(folder / "missing.wav", "file not found")
    for name, container, subtype in (("clip.ogg", "OGG", "VORBIS"), ("clip.mp3", "MP3", "MPEG_LAYER_III")):
        if container not in soundfile.available_formats() or subtype not in soundfile.available_subtypes(container):
            left_out.append(f"{name}: this libsndfile ({soundfile.__libsndfile_version__}) has no {container}/{subtype}")
            continue
        try:
            write(name, clip, format=container, subtype=subtype)
        except (soundfile.LibsndfileError, RuntimeError) as error:
            left_out.append(f"{name}: libsndfile cannot write it ({error})")
    return cases, left_out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("bad-input"))


@pytest.fixture(scope="module")
def good_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.wav"
    soundfile.write(str(path), speech_like(2.0, seed=7), RATE)
    return path


@pytest.fixture(scope="module")
def cli_recognizer(tiny_checkpoint):
    """Decodes like `python -m asr transcribe --no-lm --model tiny`, in this process: the expected transcripts."""
    return load_recognizer(str(tiny_checkpoint), CLI_BEAM, device="cpu").recognizer


def offline_texts(recognizer, path: Path) -> tuple[str, str]:
    samples, rate = soundfile.read(str(path), dtype="float32")
    greedy, beam, _ = recognizer.transcribe(samples, rate)
    return greedy.text, beam.text


# --- the CLI ------------------------------------------------------------------------------------

def run_cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = CLI_ENV
    return subprocess.run([sys.executable, "-m", "asr", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT, env=env)


def check_cli_run(result: subprocess.CompletedProcess, cases: dict[str, FileCase], good_wav: Path, recognizer) -> None:
    """Every refusal is one line naming its file and reason; every other file has the offline transcript."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stderr  # some files were refused, the others transcribed
    errors: dict[str, str] = {}
    for line in result.stderr.splitlines():
        assert line.startswith("error: "), f"not one of our one-line messages: {line!r}"
        path = next((str(c.path) for c in cases.values() if line.startswith(f"error: {c.path}: ")), None)
        assert path is not None, f"a message that does not start with the file it is about: {line!r}"
        assert path not in errors, f"two messages for {path}"
        errors[path] = line
    records = [json.loads(line) for line in result.stdout.splitlines()]
    by_file = {record["file"]: record for record in records}
    assert records[-1]["file"] == str(good_wav), "the good file after all the bad ones was not transcribed"
    assert (records[-1]["greedy"], records[-1]["beam"]) == offline_texts(recognizer, good_wav)
    for name, case in cases.items():
        if case.error:
            assert str(case.path) in errors, f"{name}: no message"
            assert case.error in errors[str(case.path)], f"{name}: {errors[str(case.path)]}"
            assert str(case.path) not in by_file
            continue
        assert str(case.path) not in errors, f"{name} was refused: {errors.get(str(case.path))}"
        record = by_file[str(case.path)]
        assert record["duration_s"] == pytest.approx(soundfile.info(str(case.path)).duration, abs=1e-3), name
        assert (record["greedy"], record["beam"]) == offline_texts(recognizer, case.path), name
        if case.same_as:
            same = by_file[str(cases[case.same_as].path)]
            assert (record["greedy"], record["beam"]) == (same["greedy"], same["beam"]), f"{name} differs from {case.same_as}"
    assert by_file[str(cases["one-sample.wav"].path)]["greedy"] == ""  # shorter than one analysis window: nothing heard


def test_cli_on_the_corpus(corpus, good_wav, tiny_checkpoint, cli_recognizer):
    cases, _ = corpus
    result = run_cli("transcribe", "--json", "--no-lm", "--beam-width", 4, "--model", tiny_checkpoint, *[c.path for c in cases.values()], good_wav)
    check_cli_run(result, cases, good_wav, cli_recognizer)


def test_cli_streaming_path_on_the_corpus(corpus, good_wav, tiny_checkpoint, cli_recognizer):
    """--chunk-ms reads files block by block through a Stream (as it does for long files): same messages, same texts."""
    cases, _ = corpus
    result = run_cli("transcribe", "--json", "--no-lm", "--beam-width", 4, "--chunk-ms", 400, "--model", tiny_checkpoint,
                     *[c.path for c in cases.values()], good_wav)
    check_cli_run(result, cases, good_wav, cli_recognizer)


def test_mp3_and_ogg_are_read(corpus, tiny_checkpoint, cli_recognizer):
    cases, left_out = corpus
    if left_out:
        pytest.skip("; ".join(left_out))
    result = run_cli("transcribe", "--json", "--no-lm", "--beam-width", 4, "--model", tiny_checkpoint, cases["clip.ogg"].path, cases["clip.mp3"].path)
    assert result.returncode == 0 and not result.stderr, result.stderr
    for record in map(json.loads, result.stdout.splitlines()):
        assert record["duration_s"] == pytest.approx(1.6, abs=0.05)
        assert (record["greedy"], record["beam"]) == offline_texts(cli_recognizer, Path(record["file"]))


# --- the demo's handlers ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    """No endpointing: a recording or file is one utterance, comparable with the offline decoding of the same audio."""
    return handlers.load_engine(str(tiny_checkpoint), device="cpu", endpoint=EndpointConfig(enabled=False), slots=64)  # every test's streams at once


def expected_lines(engine, samples, rate) -> list[tuple[str, str]]:
    """The history line(s) that audio must leave: its offline greedy and beam texts (none when both are empty)."""
    greedy, _, log_probs = engine.recognizer.transcribe(samples, rate)
    beam = engine.decoders.get(handlers.settings_for(engine, CONTROLS))[0].decode(log_probs)
    return [(greedy.text, beam.text)] if greedy.text or beam.text else []


def notice_errors(notice: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", e) for e in re.findall(r'<div class="error">(.*?)</div>', notice)]


def array_cases() -> dict[str, tuple[int, np.ndarray, str | None]]:
    """(sample rate, samples, message a refusal must contain or None) as a stream handler could receive them."""
    clip = speech_like()
    pcm16 = np.round(clip * 32767).astype(np.int16)
    with_nan, with_inf = clip.copy(), clip.astype(np.float64)
    with_nan[100], with_inf[RATE // 2] = np.nan, np.inf
    noise = np.random.default_rng(2).standard_normal(RATE).astype(np.float32)
    return {
        "empty": (RATE, np.zeros(0, np.int16), None),
        "empty stereo": (48_000, np.zeros((0, 2), np.int16), None),
        "one sample": (RATE, pcm16[:1], None),
        "silence": (RATE, np.zeros(RATE, np.int16), None),
        "DC offset": (RATE, clip * 0.5 + 0.45, None),
        "clipped full-scale noise": (RATE, noise * 8, None),  # far past +-1: clipped, not refused
        "NaN": (RATE, with_nan, "NaN or infinite"),
        "inf": (RATE, with_inf, "NaN or infinite"),
        "int8": (RATE, (pcm16 // 256).astype(np.int8), None),
        "uint8": (RATE, (pcm16 // 256 + 128).astype(np.uint8), None),
        "int32": (RATE, pcm16.astype(np.int32) * 65536, None),
        "float64": (RATE, pcm16.astype(np.float64) / 32768, None),
        "stereo": (RATE, np.stack([pcm16, pcm16], axis=1), None),
        "6 channels": (RATE, np.repeat(pcm16[:, None], 6, axis=1), None),
        "8 kHz": (8_000, resample(clip, 8_000), None),
        "96 kHz": (96_000, resample(clip, 96_000), None),
        "4 kHz": (4_000, resample(clip, 4_000), "outside the supported 8000-96000 Hz"),
        "no sample rate": (0, pcm16, "outside the supported 8000-96000 Hz"),
        "3-D": (RATE, np.zeros((100, 2, 2), np.int16), "1-D (mono) or 2-D"),
        "complex": (RATE, clip.astype(np.complex64), "unsupported sample type"),
        "text": (RATE, np.array(list("not audio")), "unsupported sample type"),
    }


def record(engine, session, rate, samples):
    """Record, the samples in browser-sized chunks, Stop; returns the session, the notices seen and the new history."""
    session, _ = handlers.on_record_start(engine, session)
    before = list(session.history)
    step = int(0.4 * rate) if rate > 0 else len(samples)
    chunks = [samples[i : i + step] for i in range(0, len(samples), max(step, 1))] or [samples]
    notices = []
    for chunk in chunks:
        session, view = handlers.on_microphone_chunk(engine, session, (rate, chunk), CONTROLS)
        notices.append(view.notice)
    assert session.wait_until_idle(60)
    notices.append(handlers.view_of(session).notice)
    session, view = handlers.on_record_stop(engine, session)
    notices.append(view.notice)
    return session, notices, [(line.greedy, line.beam) for line in session.history][len(before):]


def test_stream_handler_on_bad_and_odd_chunks(engine):
    """One tab: every case in turn, then good speech, which must come out as it would in a fresh tab."""
    session, failures = None, []
    cases = array_cases()
    for name, (rate, samples, error) in cases.items():
        session, notices, lines = record(engine, session, rate, samples)
        errors = sorted({e for notice in notices for e in notice_errors(notice)})
        assert not any("internal error" in e for e in errors), f"{name}: {errors}"  # the generic message for a bug
        if error:
            if not (len(errors) == 1 and error in errors[0] and "\n" not in errors[0]):
                failures.append(f"{name}: expected one message with {error!r}, got {errors}")
            continue
        if errors:
            failures.append(f"{name}: refused: {errors}")
        elif lines != expected_lines(engine, samples, rate):
            failures.append(f"{name}: {lines} is not the offline decoding {expected_lines(engine, samples, rate)}")
    assert not failures, "\n".join(failures)
    pcm16 = cases["stereo"][1][:, 0]
    assert expected_lines(engine, cases["stereo"][1], RATE) == expected_lines(engine, pcm16, RATE)  # channels are averaged
    assert expected_lines(engine, cases["6 channels"][1], RATE) == expected_lines(engine, pcm16, RATE)
    assert expected_lines(engine, cases["float64"][1], RATE) == expected_lines(engine, pcm16, RATE)
    speech = speech_like(2.0, seed=7)
    session, notices, lines = record(engine, session, 48_000, np.round(resample(speech, 48_000) * 32767).astype(np.int16))
    _, _, fresh = record(engine, None, 48_000, np.round(resample(speech, 48_000) * 32767).astype(np.int16))
    assert lines == fresh and lines, "after the bad chunks the tab no longer transcribes like a fresh one"
    assert not any(notice_errors(n) for n in notices)


def test_upload_handler_on_the_corpus(engine, corpus, good_wav):
    """One tab uploads every file in turn: a one-line message naming the file (not the server's folders) or the transcript."""
    cases, _ = corpus
    session, failures = None, []
    for name, case in cases.items():
        before = len(session.history) if session else 0
        for session, view in handlers.on_file(engine, session, str(case.path), CONTROLS):
            pass
        errors = notice_errors(view.notice)
        lines = [(line.greedy, line.beam) for line in session.history][before:]
        if case.error:
            if not (len(errors) == 1 and errors[0].startswith(f"{name}: ") and case.error in errors[0]):
                failures.append(f"{name}: expected '{name}: ...{case.error}...', got {errors}")
            if str(case.path.parent) in view.notice:
                failures.append(f"{name}: the message shows the server's folder: {errors}")
            continue
        samples, rate = soundfile.read(str(case.path), dtype="float32")
        if errors:
            failures.append(f"{name}: refused: {errors}")
        elif lines != expected_lines(engine, samples, rate):
            failures.append(f"{name}: {lines} is not the offline decoding {expected_lines(engine, samples, rate)}")
    assert not failures, "\n".join(failures)
    before = len(session.history)
    for session, view in handlers.on_file(engine, session, str(good_wav), CONTROLS):
        pass
    samples, rate = soundfile.read(str(good_wav), dtype="float32")
    assert [(line.greedy, line.beam) for line in session.history][before:] == expected_lines(engine, samples, rate)
    assert not notice_errors(view.notice)


# --- long files ---------------------------------------------------------------------------------

def write_low_noise(path: Path, seconds: float, rate: int = 8_000) -> Path:
    """Low noise as 16-bit PCM, written a minute at a time (a 2-hour file costs about a second and 115 MB)."""
    rng = np.random.default_rng(3)
    with soundfile.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        for start in range(0, int(seconds * rate), 60 * rate):
            count = min(60 * rate, int(seconds * rate) - start)
            out.write((rng.standard_normal(count) * 100).astype(np.int16))
    return path


@pytest.fixture(scope="module")
def two_hour_wav(tmp_path_factory) -> Path:
    return write_low_noise(tmp_path_factory.mktemp("long") / "two-hours.wav", 2 * 3600)


def test_upload_handler_refuses_long_files_at_once(engine, two_hour_wav, tmp_path):
    """The demo's caps: over 50 MB, or (under it) over 10 minutes, refused before anything is decoded."""
    _, view = list(handlers.on_file(engine, None, str(two_hour_wav), CONTROLS))[-1]
    assert notice_errors(view.notice) == ["two-hours.wav: file is 110 MB, over the 50 MB limit"]
    eleven_minutes = write_low_noise(tmp_path / "eleven-minutes.wav", 660)  # 10 MB
    session, view = list(handlers.on_file(engine, None, str(eleven_minutes), CONTROLS))[-1]
    assert notice_errors(view.notice) == ["eleven-minutes.wav: 11.0 min of audio is over the 10.0 min limit"]
    assert session.stream is None and not session.history


@pytest.mark.slow
def test_cli_transcribes_two_hours_with_bounded_memory(two_hour_wav, tiny_checkpoint, tmp_path):
    """Past 15 minutes the CLI streams the file from disk with endpointing: its peak memory is that of a short file."""
    def peak_rss_mb(*files) -> tuple[subprocess.CompletedProcess, float]:
        wrapper = ("import resource, runpy, sys\ntry:\n    runpy.run_module('asr', run_name='__main__')\nfinally:\n"
                   "    print(f'peak_rss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)")
        result = subprocess.run([sys.executable, "-c", wrapper, "transcribe", "--json", "--no-lm", "--beam-width", "4",
                                 "--model", str(tiny_checkpoint), *map(str, files)], capture_output=True, text=True,
                                cwd=REPO_ROOT, env=CLI_ENV, timeout=3000)
        return result, int(re.search(r"peak_rss_kb=(\d+)", result.stderr)[1]) / 1024

    short = write_low_noise(tmp_path / "short.wav", 60)
    baseline, baseline_mb = peak_rss_mb(short)
    result, peak_mb = peak_rss_mb(two_hour_wav)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    record = json.loads(result.stdout)
    assert record["duration_s"] == 7200.0 and record["rtf"] < 1.0
    # Reading the file whole would add 230 MB (the samples as float32) before any resampling.
    assert peak_mb - baseline_mb < 100, f"peak {peak_mb:.0f} MB against {baseline_mb:.0f} MB for one minute"


# --- safety -------------------------------------------------------------------------------------

def test_every_torch_load_is_weights_only():
    """Unpickling runs code: every torch.load in the project must refuse anything but tensors and plain data."""
    calls = []
    for path in REPO_ROOT.rglob("*.py"):
        if ".venv" in path.parts or "site-packages" in path.parts:
            continue
        source = path.read_text()
        for match in re.finditer(r"torch\.load\(", source):
            depth, end = 1, match.end()
            while depth and end < len(source):
                depth += {"(": 1, ")": -1}.get(source[end], 0)
                end += 1
            calls.append((path.relative_to(REPO_ROOT), source[match.start() : end]))
    assert any(str(path) == "asr/checkpoint.py" for path, _ in calls)  # the scan sees the loader itself
    unsafe = [f"{path}: {call}" for path, call in calls if "weights_only=True" not in call]
    assert not unsafe, "\n".join(unsafe)


def test_browser_controls_never_choose_a_model_or_lm_file(tiny_checkpoint, tmp_path):
    """Only ASR_MODEL / ASR_LM (the engine) pick files; whatever the page sends, the LM path stays the configured one."""
    configured_lm = tmp_path / "configured.arpa"
    configured_lm.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\t<unk>\t0\n-99\t<s>\t0\n-1.0\t</s>\t0\n\n\\end\\\n")
    engine = handlers.load_engine(str(tiny_checkpoint), lm_path=str(configured_lm), device="cpu")
    hostile = handlers.Controls(use_lm=True, beam_width=10**9, alpha=1.0, beta=0.0,
                                hotwords=f"{tiny_checkpoint}, ../../etc/passwd, /dev/zero")
    settings = handlers.settings_for(engine, hostile)
    assert settings.lm_path == str(configured_lm) and settings.beam_width == handlers.MAX_BEAM_WIDTH
    assert {field for field in handlers.Controls.__dataclass_fields__} == {"use_lm", "beam_width", "alpha", "beta", "hotwords", "compare_without_lm"}
    session, view = handlers.on_controls_change(engine, None, hostile)
    assert session.upcoming.settings.lm_path == str(configured_lm)
    assert not notice_errors(view.notice)


def test_stream_handler_needs_no_files(engine, tmp_path):
    """A microphone chunk is samples, never a path: a string where audio belongs is refused as audio, not opened."""
    secret = tmp_path / "secret.wav"
    soundfile.write(str(secret), speech_like(), RATE)
    session, view = handlers.on_microphone_chunk(engine, None, (RATE, str(secret)), CONTROLS)
    assert notice_errors(view.notice) == ["microphone: audio must be 1-D (mono) or 2-D (samples, channels), got shape ()"]
    assert session.stream is None


# --- the app over HTTP: overload limits, upload cap, paths ---------------------------------------

@pytest.fixture()
def small_app(tiny_checkpoint, tmp_path):
    """demo/app.py on loopback decoding one recording, with one more waiting for its slot and one waiting event in
    Gradio's queue; stopped by its own pid."""
    import socket

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "demo.log"
    env = {**CLI_ENV, "ASR_MODEL": str(tiny_checkpoint), "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "ASR_MAX_RECORDINGS": "1", "ASR_WAITING_RECORDINGS": "1", "ASR_QUEUE_SIZE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / "demo" / "app.py")], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(url + "config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=30)


def join_stream(client, audio_path: Path):
    """Record in a tab: the microphone stream's first chunk joins the queue as the browser's does; returns its messages."""
    import httpx

    stream = next(d for d in client.config["dependencies"] if d.get("api_name") == "microphone_chunk")
    with open(audio_path, "rb") as handle:
        uploaded = httpx.post(client.upload_url, files=[("files", (audio_path.name, handle))]).json()[0]
    body = {"data": [None, {"path": uploaded, "meta": {"_type": "gradio.FileData"}}, False, 4, 0.5, 1.0, "", False],
            "event_data": None, "fn_index": stream["id"], "trigger_id": stream["targets"][0][0]}
    event_id = client.send_data(body, {"fn_index": stream["id"], "session_hash": client.session_hash}, client.protocol, None)
    return event_id, client.pending_messages_per_event[event_id]


def wait_for(messages, kind: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        while messages:
            message = messages.popleft()
            if message is not None and message.get("msg") == kind:
                return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_app_queues_then_refuses_recordings_caps_uploads_and_opens_no_foreign_paths(small_app, good_wav, tmp_path):
    import httpx
    from gradio_client import Client, handle_file

    url, log = small_app
    chunk = tmp_path / "chunk.wav"
    soundfile.write(str(chunk), np.zeros(19_200, np.int16), 48_000)
    first, second, third, fourth = (Client(url, verbose=False) for _ in range(4))
    first_id, first_messages = join_stream(first, chunk)
    assert wait_for(first_messages, "process_starts", 30)
    second_id, second_messages = join_stream(second, chunk)  # its audio is taken and kept while it waits for a slot
    assert wait_for(second_messages, "process_starts", 30)
    third_id, third_messages = join_stream(third, chunk)  # no room to wait with its audio kept: Gradio's queue
    assert not wait_for(third_messages, "process_starts", 2)
    with pytest.raises(Exception, match="Queue is full"):  # nor room in the queue: refused, with Gradio's message
        join_stream(fourth, chunk)
    httpx.post(f"{first.src_prefixed}stream/{first_id}/close")
    first.predict(api_name="/record_stop")  # as the browser does: the slot goes to the recording waiting for it
    assert wait_for(third_messages, "process_starts", 30), "the queued recording did not start when a place freed"
    for client, event_id in ((second, second_id), (third, third_id)):
        httpx.post(f"{client.src_prefixed}stream/{event_id}/close")
        client.predict(api_name="/record_stop")

    big = tmp_path / "big.wav"
    big.write_bytes(bytes(51 * 2**20))
    with open(big, "rb") as handle:
        response = httpx.post(first.upload_url, files=[("files", ("big.wav", handle))], timeout=120)
    assert response.status_code == 413 and "maximum allowed size" in response.text

    # A path on the server that nobody uploaded, sent as the upload's value: Gradio refuses it before the handler.
    upload = next(d for d in third.config["dependencies"] if d.get("api_name") == "file_chosen")
    body = {"data": [None, {"path": str(REPO_ROOT / "asr" / "checkpoint.py"), "meta": {"_type": "gradio.FileData"}}, False, 4, 0.5, 1.0, "", False],
            "event_data": None, "fn_index": upload["id"], "trigger_id": upload["targets"][0][0]}
    event_id = third.send_data(body, {"fn_index": upload["id"], "session_hash": third.session_hash}, third.protocol, None)
    messages, completed = third.pending_messages_per_event[event_id], None
    deadline = time.monotonic() + 30
    while completed is None and time.monotonic() < deadline:
        while messages and completed is None:
            message = messages.popleft()
            completed = message if message and message.get("msg") == "process_completed" else None
        time.sleep(0.05)
    assert completed is not None and completed["success"] is False
    assert "was not uploaded by a user" in log.read_text()
    transcripts, _, notice, *_ = third.predict(handle_file(str(good_wav)), False, 4, 0.5, 1.0, "", False, api_name="/file_chosen")
    assert 'class="utterance"' in transcripts and 'class="error"' not in notice  # and the app goes on serving
    ours = [block for block in log.read_text().split("Traceback")[1:]
            if f'File "{REPO_ROOT}/demo/' in block or f'File "{REPO_ROOT}/asr/' in block]  # Gradio's own refusals log theirs
    assert not ours, ours[0]
