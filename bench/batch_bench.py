"""Batch Dispatch under load: N real-time streams with and without the dispatcher, side by side in one run.

Each simulated stream plays a different stretch of audio (the synthetic test set when it is
there, else random log-mel-like frames) in real time: a chunk "arrives" when its last sample
would have been spoken, chunks of 160 or 400 ms alternate between streams, and starts are
staggered across one chunk period. For every N, the model runs either straight from each
stream's thread (`model.step`, what the app does without Batch Dispatch) or through one
`BatchDispatcher`. Figures: throughput as audio seconds per second of model work (wall time
while any model call ran), p50/p95 time from a chunk's arrival to its log-probs on the CPU, how
many streams stayed real time (every chunk served, p95 within the latency budget), and capacity:
the same streams sending back to back, audio seconds per wall second and per CPU second (best of
alternating trials, since other tenants of a shared machine only ever slow a trial down). Then
the whole pipeline (features, model through the dispatcher, greedy and beam search with the LM)
under the same load, with seconds of work per audio second per stage, so the next bottleneck is
named with a number.

    nice .venv/bin/python bench/batch_bench.py [--device auto|cpu|cuda] [--model small|large]
        [--streams 1,4,16,64] [--seconds 6] [--pipeline-streams 4,16] [--write-results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))
from results import write_section  # noqa: E402

from asr.device import DEVICE_CHOICES, DeviceError, resolve_device  # noqa: E402
from asr.dispatch import BatchDispatcher  # noqa: E402
from asr.features import FeatureConfig, compute_features  # noqa: E402
from asr.model import NAMED_CONFIGS, DeepSpeech2  # noqa: E402

TEST_MANIFEST = REPO_ROOT / "data" / "synth" / "test.jsonl"
SHIPPED_MODEL = REPO_ROOT / "asr" / "pretrained" / "ds2_small.pt"
SECTION = "## Batch Dispatch"
TAPE_SECONDS = 90.0  # the audio every stream reads from, each at its own offset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--model", choices=("small", "large"), default="small")
    parser.add_argument("--checkpoint", default=None, help="trained weights (default: the shipped small model if present, else random weights)")
    parser.add_argument("--streams", default="1,4,16,64", help="comma-separated numbers of concurrent streams")
    parser.add_argument("--seconds", type=float, default=6.0, help="audio seconds each stream plays")
    parser.add_argument("--chunk-ms", default="160,400", help="chunk durations, assigned to streams in turn")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--budget-ms", type=float, default=300.0, help="p95 latency within which a stream counts as real time")
    parser.add_argument("--grace-s", type=float, default=3.0, help="how long past its last chunk a stream may lag before it is cut off")
    parser.add_argument("--saturate-seconds", type=float, default=20.0, help="audio seconds in all, shared by the streams, in one back-to-back capacity trial")
    parser.add_argument("--saturate-limit-s", type=float, default=8.0, help="wall-time cap of one capacity trial")
    parser.add_argument("--capacity-trials", type=int, default=3, help="alternating capacity trials per mode; the best counts")
    parser.add_argument("--pipeline-streams", default="4,16", help="N for the whole-pipeline run (empty: skip it)")
    parser.add_argument("--time-budget-s", type=float, default=600.0, help="start no new N after this many seconds (the report says which were skipped)")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's own choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    parser.add_argument("--report", default=None, help="also write the markdown report to this file")
    parser.add_argument("--write-results", action="store_true", help=f"replace the '{SECTION}' section of bench/RESULTS.md")
    return parser.parse_args(argv)


# -- audio and model -----------------------------------------------------------------------------

@dataclass
class Tape:
    """Audio and its log-mel frames; stream i plays the stretch starting at its own offset."""

    samples: np.ndarray  # 16 kHz float32
    features: torch.Tensor  # (frames, n_mels)
    source: str

    def stretch(self, index: int, seconds: float, config: FeatureConfig) -> tuple[np.ndarray, torch.Tensor]:
        """Stream `index`'s audio and frames: `seconds` long, starting 7.3 s further on per stream, wrapping around."""
        frames_per_second = round(1 / config.frame_seconds)
        start = int(index * 7.3 * frames_per_second) % len(self.features)
        frame_count = int(seconds * frames_per_second)
        rows = torch.arange(start, start + frame_count) % len(self.features)
        first_sample, sample_count = start * config.hop_length, int(seconds * config.sample_rate)
        samples = np.take(self.samples, np.arange(first_sample, first_sample + sample_count), mode="wrap")
        return samples, self.features[rows]


def build_tape(config: FeatureConfig, seed: int) -> Tape:
    """Real speech from the synthetic test set when present and readable, else noise with log-mel-like frames."""
    if not TEST_MANIFEST.exists():
        return random_tape(config, seed)
    try:
        from asr.audio import load_audio
    except ImportError as error:  # e.g. no soundfile on a bare GPU machine: timing does not need real speech
        print(f"note: random frames, since audio cannot be read here ({error})", file=sys.stderr)
        return random_tape(config, seed)
    pieces, total = [], 0.0
    for line in TEST_MANIFEST.read_text().splitlines():
        samples, rate = load_audio(TEST_MANIFEST.parent / json.loads(line)["audio_filepath"])
        if rate == config.sample_rate and samples.ndim == 1:
            pieces.append(samples)
            total += len(samples) / rate
        if total >= TAPE_SECONDS:
            break
    if not pieces:
        return random_tape(config, seed)
    samples = np.concatenate(pieces).astype(np.float32)
    return Tape(samples, compute_features(samples, config.sample_rate, config), f"{TEST_MANIFEST.relative_to(REPO_ROOT)} ({total:.0f} s)")


def random_tape(config: FeatureConfig, seed: int) -> Tape:
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(int(TAPE_SECONDS * config.sample_rate)) * 0.05).astype(np.float32)
    frames = torch.from_numpy(rng.normal(-6.0, 2.5, (int(TAPE_SECONDS / config.frame_seconds), config.n_mels)).astype(np.float32))
    return Tape(samples, frames, "random noise and random log-mel-like frames")


def build_model(args: argparse.Namespace, device: torch.device) -> tuple[DeepSpeech2, FeatureConfig, str]:
    """Trained weights when given (or shipped, for small); else random ones, which cost the same to run."""
    checkpoint = args.checkpoint or (str(SHIPPED_MODEL) if args.model == "small" and SHIPPED_MODEL.exists() else None)
    if checkpoint:
        from asr.checkpoint import load_checkpoint

        loaded = load_checkpoint(checkpoint, device=device)
        return loaded.model, loaded.feature_config, f"trained weights from {checkpoint}"
    torch.manual_seed(args.seed)
    return DeepSpeech2(NAMED_CONFIGS[args.model]).to(device).eval(), FeatureConfig(), f"random weights, config '{args.model}'"


# -- measuring -----------------------------------------------------------------------------------

class BusyClock:
    """Wall time during which at least one model call is running (the union of their intervals)."""

    def __init__(self) -> None:
        self._lock, self._active, self._since, self.seconds = threading.Lock(), 0, 0.0, 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0:
                self._since = time.perf_counter()
            self._active += 1

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self.seconds += time.perf_counter() - self._since


@dataclass
class StreamRecord:
    """One stream's chunk latencies; `censored` counts chunks still unserved when the stream was cut off."""

    latencies: list[float] = field(default_factory=list)
    audio_seconds: float = 0.0
    censored: int = 0

    def real_time(self, budget_s: float) -> bool:
        return self.censored == 0 and bool(self.latencies) and float(np.percentile(self.latencies, 95)) <= budget_s


@dataclass
class StreamPlan:
    """What a simulated stream plays: its chunks (features, and audio for the pipeline) and when it starts."""

    frames: list[torch.Tensor]
    samples: list[np.ndarray]
    chunk_seconds: float
    offset_seconds: float


def plan_streams(count: int, tape: Tape, args: argparse.Namespace, config: FeatureConfig) -> list[StreamPlan]:
    chunk_choices = [float(ms) / 1000 for ms in args.chunk_ms.split(",")]
    plans = []
    for index in range(count):
        chunk_s = chunk_choices[index % len(chunk_choices)]
        samples, frames = tape.stretch(index, args.seconds, config)
        frames_per_chunk, samples_per_chunk = round(chunk_s / config.frame_seconds), round(chunk_s * config.sample_rate)
        plans.append(StreamPlan(
            frames=[frames[i : i + frames_per_chunk] for i in range(0, len(frames) - frames_per_chunk + 1, frames_per_chunk)],
            samples=[samples[i : i + samples_per_chunk] for i in range(0, len(samples) - samples_per_chunk + 1, samples_per_chunk)],
            chunk_seconds=chunk_s, offset_seconds=chunk_s * index / count))
    return plans


def play(plans: list[StreamPlan], serve_chunk, grace_s: float, use_audio: bool) -> tuple[list[StreamRecord], float]:
    """Play every stream in real time in its own thread; `serve_chunk(stream_index, chunk)` does the work."""
    records = [StreamRecord() for _ in plans]
    start = time.perf_counter() + 0.05
    longest = max(p.offset_seconds + p.chunk_seconds * len(p.frames) for p in plans)
    cutoff = start + longest + grace_s

    def run(index: int) -> None:
        plan, record = plans[index], records[index]
        chunks = plan.samples if use_audio else plan.frames
        for number, chunk in enumerate(chunks):
            arrival = start + plan.offset_seconds + (number + 1) * plan.chunk_seconds
            time.sleep(max(0.0, arrival - time.perf_counter()))
            if time.perf_counter() > cutoff:  # hopelessly behind: what is left counts as late, not as served
                record.censored = len(chunks) - number
                record.latencies += [cutoff - (start + plan.offset_seconds + (k + 1) * plan.chunk_seconds) for k in range(number, len(chunks))]
                return
            serve_chunk(index, chunk)
            record.latencies.append(time.perf_counter() - arrival)
            record.audio_seconds += plan.chunk_seconds

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(plans))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records, time.perf_counter() - start


@dataclass
class ModelRow:
    streams: int
    mode: str
    real_time_streams: int
    p50_ms: float
    p95_ms: float
    throughput: float  # audio seconds per second of model work
    wall_throughput: float  # audio seconds served per second of wall time
    mean_batch: float
    model_calls: int
    censored_chunks: int
    capacity: float = 0.0  # audio seconds per wall second with every stream sending back to back
    capacity_per_cpu: float = 0.0  # the same, per CPU second this process got: work done, whatever the other tenants took
    cores_used: float = 0.0  # this process's CPU seconds per wall second in the paced run: what a shared machine left us


def summarize(streams: int, mode: str, records: list[StreamRecord], busy_s: float, wall_s: float, budget_s: float,
              mean_batch: float, calls: int) -> ModelRow:
    latencies = [x for r in records for x in r.latencies]
    audio = sum(r.audio_seconds for r in records)
    return ModelRow(streams, mode, sum(r.real_time(budget_s) for r in records), 1000 * float(np.percentile(latencies, 50)),
                    1000 * float(np.percentile(latencies, 95)), audio / max(busy_s, 1e-9), audio / wall_s, mean_batch, calls,
                    sum(r.censored for r in records))


# -- the two model-level modes -------------------------------------------------------------------

class UnbatchedServer:
    """Every stream calls model.step from its own thread, as the app would without Batch Dispatch."""

    mode = "unbatched"

    def __init__(self, model: DeepSpeech2, device: torch.device, count: int, args: argparse.Namespace):
        self.model, self.device = model, device
        self.states = [model.initial_state(1, device) for _ in range(count)]
        self.clock, self.calls = BusyClock(), 0

    def serve(self, index: int, frames: torch.Tensor) -> None:
        with self.clock:
            log_probs, self.states[index] = self.model.step(frames[None].to(self.device), self.states[index])
            log_probs.cpu()  # the decoders read the CPU copy; on a GPU this is where the step's time shows
            self.calls += 1

    def figures(self) -> tuple[float, float, int]:
        """(model busy seconds, mean batch size, model calls)."""
        return self.clock.seconds, 1.0, self.calls

    def close(self) -> None:
        pass


class BatchedServer:
    """Every stream calls dispatcher.step; one worker thread runs the batched steps."""

    mode = "batched"

    def __init__(self, model: DeepSpeech2, device: torch.device, count: int, args: argparse.Namespace):
        self.device = device
        self.states = [model.initial_state(1, device) for _ in range(count)]
        self.dispatcher = BatchDispatcher(model, device, args.max_batch_size, args.max_wait_ms)

    def serve(self, index: int, frames: torch.Tensor) -> None:
        _, self.states[index] = self.dispatcher.step(frames[None].to(self.device), self.states[index])

    def figures(self) -> tuple[float, float, int]:
        stats = self.dispatcher.stats()
        return stats.busy_seconds, stats.mean_batch_size, stats.model_calls

    def close(self) -> None:
        self.dispatcher.close()


def saturate(plans: list[StreamPlan], serve_chunk, total_seconds: float, limit_s: float) -> tuple[float, float]:
    """The streams send `total_seconds` of audio between them back to back: (audio s per wall s, audio s per CPU s)."""
    served = [0.0] * len(plans)
    start, cpu_start = time.perf_counter(), time.process_time()

    def run(index: int) -> None:
        plan = plans[index]
        chunk_count = max(1, round(total_seconds / len(plans) / plan.chunk_seconds))
        for number in range(chunk_count):  # content does not matter for timing: wrap around the stream's chunks
            if time.perf_counter() - start > limit_s:
                return
            serve_chunk(index, plan.frames[number % len(plan.frames)])
            served[index] += plan.chunk_seconds

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(plans))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(served) / (time.perf_counter() - start), sum(served) / max(time.process_time() - cpu_start, 1e-9)


def paced(server_class, model: DeepSpeech2, plans: list[StreamPlan], device: torch.device, args: argparse.Namespace) -> ModelRow:
    """The real-time run: latencies, real-time streams, throughput per second of model work."""
    server, cpu_before = server_class(model, device, len(plans), args), time.process_time()
    try:
        records, wall = play(plans, server.serve, args.grace_s, use_audio=False)
        busy, mean_batch, calls = server.figures()
    finally:
        server.close()
    row = summarize(len(plans), server_class.mode, records, busy, wall, args.budget_ms / 1000, mean_batch, calls)
    row.cores_used = (time.process_time() - cpu_before) / wall
    return row


def measure_both(model: DeepSpeech2, plans: list[StreamPlan], device: torch.device, args: argparse.Namespace) -> list[ModelRow]:
    """Paced rows for both modes, then capacity trials alternating between them; the best trial of each counts.

    On a machine shared with other work, interference only ever slows a trial down, so the best of a
    few alternating trials is the fairest figure for both modes.
    """
    rows = [paced(server_class, model, plans, device, args) for server_class in SERVERS]
    for _ in range(args.capacity_trials):
        for row, server_class in zip(rows, SERVERS):
            server = server_class(model, device, len(plans), args)
            try:
                per_wall, per_cpu = saturate(plans, server.serve, args.saturate_seconds, args.saturate_limit_s)
            finally:
                server.close()
            row.capacity, row.capacity_per_cpu = max(row.capacity, per_wall), max(row.capacity_per_cpu, per_cpu)
    return rows


SERVERS = (UnbatchedServer, BatchedServer)


def warm_up(model: DeepSpeech2, device: torch.device, n_mels: int) -> None:
    """First calls pay for allocator and kernel setup; keep that out of the figures."""
    with BatchDispatcher(model, device) as dispatcher:
        for batch in (1, 4, 16):
            state = model.initial_state(batch, device)
            for _ in range(3):
                _, state = model.step(torch.randn(batch, 16, n_mels, device=device), state)
        dispatcher.step(torch.randn(1, 16, n_mels), model.initial_state(1, device))


# -- the whole pipeline --------------------------------------------------------------------------

class StageTimes:
    """CPU seconds per pipeline stage, summed over every stream's thread (thread_time: waiting is not counted)."""

    def __init__(self) -> None:
        self._lock, self.seconds = threading.Lock(), defaultdict(float)

    def wrap(self, stage: str, function):
        def timed(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[stage] += time.thread_time() - started
        return timed


class TimedDecoderStream:
    """A decoder stream whose extend/result/finalize calls are timed; everything else passes through."""

    def __init__(self, inner, stage: str, times: StageTimes):
        self._inner = inner
        self.extend, self.result, self.finalize = (times.wrap(stage, getattr(inner, name)) for name in ("extend", "result", "finalize"))

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


class TimedDecoder:
    def __init__(self, inner, stage: str, times: StageTimes):
        self._inner, self._stage, self._times = inner, stage, times

    def new_stream(self):
        return TimedDecoderStream(self._inner.new_stream(), self._stage, self._times)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


def beam_decoder_or_reason():
    """The product's beam decoder (with the shipped LM when it is there), or why there is none."""
    try:
        from asr.pretrained import BeamSettings, build_beam_decoder

        decoder, warning = build_beam_decoder(BeamSettings())
        return decoder, warning or "beam search with the shipped LM"
    except Exception as error:  # the decoder module is someone else's work in progress: report, don't fail
        return None, f"beam decoder not ready: {type(error).__name__}: {error}"


def run_pipeline(model: DeepSpeech2, config: FeatureConfig, plans: list[StreamPlan], device: torch.device, args: argparse.Namespace) -> dict:
    """Stream.accept for every chunk, model steps through the dispatcher; latency and CPU per stage."""
    from asr.streaming import Recognizer

    times = StageTimes()
    beam, beam_note = beam_decoder_or_reason()
    with BatchDispatcher(model, device, args.max_batch_size, args.max_wait_ms) as dispatcher:
        recognizer = Recognizer(model, config, TimedDecoder(beam, "beam", times) if beam else None, device=device, step_function=dispatcher.step)
        recognizer.greedy_decoder = TimedDecoder(recognizer.greedy_decoder, "greedy", times)
        streams = [recognizer.create_stream() for _ in plans]
        for stream in streams:
            stream.featurizer.accept = times.wrap("features", stream.featurizer.accept)
        cpu_before = time.process_time()
        records, wall = play(plans, lambda index, samples: streams[index].accept(samples, config.sample_rate), args.grace_s, use_audio=True)
        stats = dispatcher.stats()
    audio = sum(r.audio_seconds for r in records)
    row = summarize(len(plans), "pipeline", records, stats.busy_seconds, wall, args.budget_ms / 1000, stats.mean_batch_size, stats.model_calls)
    row.cores_used = (time.process_time() - cpu_before) / wall
    per_audio = {stage: seconds / max(audio, 1e-9) for stage, seconds in times.seconds.items()}
    per_audio["model"] = stats.busy_seconds / max(audio, 1e-9)
    return {"row": row, "cpu_per_audio_second": per_audio, "beam": beam_note, "greedy_text": streams[0].greedy.result().text}


# -- report --------------------------------------------------------------------------------------

def model_table(rows: list[ModelRow]) -> str:
    lines = ["| N | mode | streams real-time | p50 ms | p95 ms | paced: audio s / model s | ratio | "
             "capacity: audio s / s | ratio | capacity: audio s / CPU s | ratio | mean batch | model calls | cores used |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    unbatched = {r.streams: r for r in rows if r.mode == "unbatched"}
    for r in rows:
        base = unbatched.get(r.streams) if r.mode == "batched" else None
        ratio = (lambda name: f"{getattr(r, name) / max(getattr(base, name), 1e-9):.2f}x") if base else (lambda name: "")
        late = f" ({r.censored_chunks} chunks unserved)" if r.censored_chunks else ""
        lines.append(f"| {r.streams} | {r.mode} | {r.real_time_streams}/{r.streams}{late} | {r.p50_ms:.0f} | {r.p95_ms:.0f} | "
                     f"{r.throughput:.1f} | {ratio('throughput')} | {r.capacity:.1f} | {ratio('capacity')} | "
                     f"{r.capacity_per_cpu:.1f} | {ratio('capacity_per_cpu')} | {r.mean_batch:.1f} | {r.model_calls} | {r.cores_used:.2f} |")
    return "\n".join(lines)


def pipeline_table(results: list[dict]) -> str:
    stages = ["features", "model", "greedy", "beam"]
    lines = ["| N | streams real-time | p50 ms | p95 ms | mean batch | " + " | ".join(f"{s} s / audio s" for s in stages) + " | largest stage (share of the work) | cores used |",
             "| ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in stages) + " | --- | ---: |"]
    for result in results:
        r, cpu = result["row"], result["cpu_per_audio_second"]
        worst = max(cpu, key=cpu.get)
        lines.append(f"| {r.streams} | {r.real_time_streams}/{r.streams} | {r.p50_ms:.0f} | {r.p95_ms:.0f} | {r.mean_batch:.1f} | "
                     + " | ".join(f"{cpu[s]:.4f}" if s in cpu else "n/a" for s in stages) + f" | {worst} ({cpu[worst] / sum(cpu.values()):.0%}) | {r.cores_used:.2f} |")
    return "\n".join(lines)


def machine_line(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"device {device} ({name}); {os.cpu_count()} CPU cores, load average at start {load}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op threads")


def write_results(report: str) -> None:
    write_section(SECTION, report)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    model, config, weights = build_model(args, device)
    tape = build_tape(config, args.seed)
    header = (f"{machine_line(device)}\nmodel: {weights}; audio: {tape.source}; chunks {args.chunk_ms} ms; "
              f"max batch {args.max_batch_size}, max wait {args.max_wait_ms} ms; budget p95 <= {args.budget_ms:.0f} ms")
    print(header, flush=True)
    warm_up(model, device, config.n_mels)
    deadline, skipped = time.perf_counter() + args.time_budget_s, []
    rows, pipelines = [], []
    for count in [int(n) for n in args.streams.split(",") if n.strip()]:
        if time.perf_counter() > deadline:
            skipped.append(f"N={count}")
            continue
        plans = plan_streams(count, tape, args, config)
        rows += measure_both(model, plans, device, args)
        print("\n".join(model_table(rows[-2:]).splitlines()[-2:]), flush=True)
    for count in [int(n) for n in args.pipeline_streams.split(",") if n.strip()]:
        if time.perf_counter() > deadline:
            skipped.append(f"pipeline N={count}")
            continue
        pipelines.append(run_pipeline(model, config, plan_streams(count, tape, args, config), device, args))
        print(f"pipeline N={count}: {pipelines[-1]['beam']}", flush=True)
    if skipped:
        header += f"\nskipped for the time budget of {args.time_budget_s:.0f} s: {', '.join(skipped)}"
    save(args, argv, header, rows, pipelines)
    return 0


def save(args: argparse.Namespace, argv: list[str] | None, header: str, rows: list[ModelRow], pipelines: list[dict]) -> None:
    """Print the report; write it (and the raw figures) where the flags ask."""
    arguments = sys.argv[1:] if argv is None else argv
    command = f".venv/bin/python bench/{Path(__file__).name}" + (" " + shlex.join(arguments) if arguments else "")
    report = report_text(command, header, rows, pipelines)
    print("\n" + report)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "rows": [r.__dict__ for r in rows],
                                               "pipelines": [{**p, "row": p["row"].__dict__} for p in pipelines]}, indent=1))
    if args.report:
        Path(args.report).write_text(report + "\n")
    if args.write_results:
        write_results(report)


def report_text(command: str, header: str, rows: list[ModelRow], pipelines: list[dict]) -> str:
    parts = [f"`{command}`", "", header, "",
             "Model only. Paced: every stream plays in real time; throughput is audio seconds served per second during which "
             "the model ran. Capacity: the same streams send their chunks back to back; audio seconds served per wall second "
             "and per CPU second of this process (best of alternating trials). Ratios: batched / unbatched. "
             "A stream is real time when every chunk was served and its p95 is within the budget. Cores used: this process's CPU "
             "seconds per wall second during the paced run (on a shared machine, what the other tenants left).", "", model_table(rows)]
    if pipelines:
        parts += ["", "Whole pipeline through Batch Dispatch (Stream.accept: features, model, greedy, beam search: " + pipelines[0]["beam"]
                  + "). Stage figures are seconds of work per audio second: CPU time of the streams' threads for features and "
                  "decoders, the dispatcher's busy wall time for the model."
                  + (" Random weights give flat posteriors, so the beam search here does more work than it would on a trained model."
                     if "random weights" in header else ""), "", pipeline_table(pipelines)]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
