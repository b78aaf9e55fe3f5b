"""CPU cost of the beam + LM decoder in a live stream, before and after a change, side by side in one run.

Real speech (the real dev set's Ogg Opus clips, looped to `--minutes`) goes through one `Stream` per variant,
shipped model and LM, in `--chunk-ms` chunks as the demo sends them; the variants take turns chunk by chunk so
that they see the same moments of a shared machine. "before" is `asr/decoding.py` as it was at `--baseline`
(read with `git show`, imported under another name), "after" is the working tree's. Reported: CPU seconds per
second of speech of the whole pipeline (features + model + greedy + beam + LM) and of the beam + LM decoder
alone (its `extend`, `result` and `finalize` calls), and whether the two variants' transcripts are identical.

`--wer` then decodes the whole real dev set offline (as `python -m asr evaluate` does) with each setting of
`SETTINGS`, and reports WER, CER and the decoder's CPU seconds per second of speech. `--profile FILE` runs the
"after" stream alone under cProfile first and prints where its time goes.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python bench/beam_bench.py --minutes 10 --wer [--write-results]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import itertools
import os
import platform
import pstats
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))
from results import write_section  # noqa: E402

from asr import decoding, features, streaming  # noqa: E402
from asr.audio import load_audio  # noqa: E402
from asr.data.manifest import read_manifest  # noqa: E402
from asr.evaluate import compute_log_probs, score  # noqa: E402
from asr.pretrained import DEFAULT_LM, BeamSettings, load_recognizer  # noqa: E402
from asr.text import LABELS  # noqa: E402

SECTION = "## Beam search cost"
DEV_MANIFEST = REPO_ROOT / "data" / "real" / "dev.jsonl"
BASELINE_COMMIT = "1267437"  # the last commit before the beam search's hot path was reworked (issue #43, point 2)
# Settings tried on the real dev set: (name, changes to the shipped beam options).
SETTINGS = (
    ("shipped default", {}),
    ("token_min_logp -4.5", {"token_min_logp": -4.5}),
    ("token_min_logp -4", {"token_min_logp": -4.0}),
    ("token_min_logp -3", {"token_min_logp": -3.0}),
    ("beam_prune_logp -8", {"beam_prune_logp": -8.0}),
    ("beam_prune_logp -6", {"beam_prune_logp": -6.0}),
    ("beam width 24", {"beam_width": 24}),
    ("beam width 16", {"beam_width": 16}),
    ("beam width 12", {"beam_width": 12}),
    ("beam width 8", {"beam_width": 8}),
    ("width 16, token -4, prune -8", {"beam_width": 16, "token_min_logp": -4.0, "beam_prune_logp": -8.0}),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the live stream (real dev clips, looped)")
    parser.add_argument("--chunk-ms", type=int, default=400, help="audio per chunk (the demo sends 0.4 s)")
    parser.add_argument("--manifest", default=str(DEV_MANIFEST))
    parser.add_argument("--baseline", default=BASELINE_COMMIT, help="git commit whose asr/decoding.py is 'before'")
    parser.add_argument("--wer", action="store_true", help="also decode the whole manifest offline with each setting")
    parser.add_argument("--profile", default=None, help="cProfile the 'after' stream first and save the stats here")
    parser.add_argument("--write-results", action="store_true", help=f"replace the '{SECTION}' section of bench/RESULTS.md")
    return parser.parse_args()


def baseline_module(commit: str):
    """asr/decoding.py as it was at `commit`, imported as its own module beside today's."""
    source = subprocess.run(["git", "show", f"{commit}:asr/decoding.py"], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True).stdout
    name = "asr_decoding_at_" + commit
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    sys.modules[name] = module  # dataclasses look their module up by name
    exec(compile(source, f"{commit}:asr/decoding.py", "exec"), module.__dict__)
    return module


def shipped_options(module, **changes):
    """The module's BeamSearchOptions with the shipped settings (asr.pretrained.BeamSettings) and `changes`."""
    settings = BeamSettings()
    return module.BeamSearchOptions(**{"beam_width": settings.beam_width, "alpha": settings.alpha, "beta": settings.beta,
                                       **changes})


class TimedDecoder:
    """Wraps a beam decoder so that the CPU time of its streams' calls is added up."""

    def __init__(self, decoder):
        self.decoder, self.cpu_seconds = decoder, 0.0

    def new_stream(self) -> "TimedStream":
        return TimedStream(self.decoder.new_stream(), self)


class TimedStream:
    def __init__(self, inner, owner: TimedDecoder):
        self.inner, self.owner = inner, owner

    def _timed(self, call, *args):
        started = time.process_time()
        try:
            return call(*args)
        finally:
            self.owner.cpu_seconds += time.process_time() - started

    def extend(self, log_probs):
        return self._timed(self.inner.extend, log_probs)

    def result(self):
        return self._timed(self.inner.result)

    def finalize(self):
        return self._timed(self.inner.finalize)


@dataclass
class LiveCost:
    pipeline_cpu_s: float = 0.0
    beam_cpu_s: float = 0.0
    transcript: str = ""


def speech_chunks(manifest: str, minutes: float, chunk_ms: int) -> tuple[list[tuple[np.ndarray, int]], float]:
    """(samples, rate) chunks of the manifest's clips, back to back and looped, up to `minutes` of speech."""
    clips = [load_audio(entry.audio_filepath) for entry in read_manifest(manifest)]
    chunks, seconds = [], 0.0
    for samples, rate in itertools.cycle(clips):
        step = rate * chunk_ms // 1000
        for start in range(0, len(samples), step):
            chunks.append((samples[start : start + step], rate))
        seconds += len(samples) / rate
        if seconds >= 60 * minutes:
            return chunks, seconds


def run_live(recognizer, decoders: dict[str, TimedDecoder], chunks) -> dict[str, LiveCost]:
    """One stream per decoder, fed the same chunks in turn; CPU time of each `accept` is its pipeline cost."""
    streams = {name: recognizer.create_stream(beam_decoder=decoder) for name, decoder in decoders.items()}
    costs, texts = {name: LiveCost() for name in streams}, {name: [] for name in streams}
    for samples, rate in chunks:
        for name, stream in streams.items():
            started = time.process_time()
            partial = stream.accept(samples, rate)
            costs[name].pipeline_cpu_s += time.process_time() - started
            texts[name] += [utterance.beam.text for utterance in partial.finished]
    for name, stream in streams.items():
        started = time.process_time()
        partial = stream.finalize()
        costs[name].pipeline_cpu_s += time.process_time() - started
        texts[name] += [utterance.beam.text for utterance in partial.finished]
        costs[name].beam_cpu_s = decoders[name].cpu_seconds
        costs[name].transcript = "\n".join(texts[name])
    return costs


def profiled_parts() -> list[tuple[str, list]]:
    """The pipeline's stages and the beam search's steps, as the functions whose cumulative time measures them."""
    beam = decoding.BeamSearchStream
    return [("whole pipeline (Stream.accept, Stream.finalize)", [streaming.Stream.accept, streaming.Stream.finalize]),
            ("features (StreamingFeaturizer.accept)", [features.StreamingFeaturizer.accept]),
            ("model step (Stream._run_model)", [streaming.Stream._run_model]),
            ("greedy (GreedyStream.extend)", [decoding.GreedyStream.extend]),
            ("beam + LM (BeamSearchStream.extend, result, finalize)", [beam.extend, beam.result, beam.finalize]),
            ("- expansion (_expand)", [beam._expand]),
            ("- scoring and pruning (_prune)", [beam._prune]),
            ("- blank frames' shortcut (_pass_blank_frames)", [beam._pass_blank_frames]),
            ("- normalize and frame_candidates", [decoding.BeamSearchDecoder.normalize, decoding.BeamSearchDecoder.frame_candidates])]


def profile_live(recognizer, decoder, chunks, path: str) -> tuple[str, list[str]]:
    """The 'after' stream alone under cProfile: the top functions by own time, and a table of where the time goes."""
    profiler = cProfile.Profile()
    profiler.runcall(run_live, recognizer, {"after": TimedDecoder(decoder)}, chunks)
    profiler.dump_stats(path)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(15)
    cumulative = {key[:3]: value[3] for key, value in stats.stats.items()}
    rows = []
    for name, functions in profiled_parts():
        keys = [(f.__code__.co_filename, f.__code__.co_firstlineno, f.__code__.co_name) for f in functions]
        rows.append((name, sum(cumulative.get(key, 0.0) for key in keys)))
    table = ["| part | seconds under cProfile | share of the pipeline |", "| --- | ---: | ---: |"]
    table += [f"| {name} | {seconds:.2f} | {100 * seconds / rows[0][1]:.1f} % |" for name, seconds in rows]
    return out.getvalue(), table


def dev_wer(manifest: str, before_module) -> list[dict]:
    """Each setting of SETTINGS on the whole manifest, offline, today's decoder; the default also with 'before'."""
    acoustic = compute_log_probs(None, read_manifest(manifest), "cpu")
    rows, default_texts, default_errors = [], None, None
    variants = [("before: " + name, before_module, changes) for name, changes in SETTINGS[:1]]
    variants += [(name, decoding, changes) for name, changes in SETTINGS]
    for name, module, changes in variants:
        decoder = module.BeamSearchDecoder(LABELS, shipped_options(module, **changes), lm_path=DEFAULT_LM)
        started, hypotheses = time.process_time(), []
        for log_probs in acoustic.log_probs:
            stream = decoder.new_stream()
            stream.extend(log_probs)
            hypotheses.append(stream.finalize().text)
        cpu = time.process_time() - started
        errors = clip_errors(acoustic.references, hypotheses)
        default_texts, default_errors = default_texts or hypotheses, errors if default_errors is None else default_errors
        changed = sum(a != b for a, b in zip(hypotheses, default_texts))
        rows.append({"setting": name, **score(acoustic.references, hypotheses), "beam_cpu_per_s": cpu / acoustic.audio_seconds,
                     "changed": changed, "wer_change_95": change_interval(errors[:, :2], default_errors[:, :2]),
                     "cer_change_95": change_interval(errors[:, 2:], default_errors[:, 2:]),
                     "utterances": len(hypotheses), "audio_s": acoustic.audio_seconds})
    return rows


def clip_errors(references: list[str], hypotheses: list[str]) -> np.ndarray:
    """(word errors, reference words, char errors, reference chars) of each clip: what a paired bootstrap resamples."""
    counts = []
    for reference, hypothesis in zip(references, hypotheses):
        row = []
        for units in (jiwer.process_words(reference, hypothesis), jiwer.process_characters(reference, hypothesis)):
            row += [units.substitutions + units.deletions + units.insertions, units.hits + units.substitutions + units.deletions]
        counts.append(row)
    return np.array(counts)


def change_interval(errors: np.ndarray, baseline: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % paired-bootstrap interval of the error-rate change against the baseline (clips resampled with replacement);
    each array is (errors, reference length) per clip."""
    picks = np.random.default_rng(seed).integers(0, len(errors), (draws, len(errors)))
    change = (errors[picks, 0].sum(axis=1) - baseline[picks, 0].sum(axis=1)) / baseline[picks, 1].sum(axis=1)
    low, high = np.percentile(change, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    before = baseline_module(args.baseline)
    recognizer = load_recognizer(device="cpu", beam=None).recognizer
    after_decoder = decoding.BeamSearchDecoder(LABELS, shipped_options(decoding), lm_path=DEFAULT_LM)
    before_decoder = before.BeamSearchDecoder(LABELS, shipped_options(before), lm_path=DEFAULT_LM)
    chunks, seconds = speech_chunks(args.manifest, args.minutes, args.chunk_ms)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [f"`OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python bench/{Path(__file__).name} {shlex.join(sys.argv[1:])}`, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, {os.cpu_count()} CPU cores "
             f"(shared; load average at start {load}), torch {torch.__version__} on 1 thread. Shipped model and LM, "
             f"shipped beam settings; 'before' is asr/decoding.py at {args.baseline}, 'after' the working tree's.", ""]
    if args.profile:
        top, table = profile_live(recognizer, after_decoder, chunks, args.profile)
        lines += [f"Profile: the 'after' stream alone, the same {seconds / 60:.1f} min, under cProfile (stats in {args.profile}; "
                  "the profiler inflates Python-heavy parts such as the beam search against torch's C++):", "", *table, ""]
        print(top, "\n".join(table), sep="\n", flush=True)
        after_decoder = decoding.BeamSearchDecoder(LABELS, shipped_options(decoding), lm_path=DEFAULT_LM)  # cold caches again
    costs = run_live(recognizer, {"before": TimedDecoder(before_decoder), "after": TimedDecoder(after_decoder)}, chunks)
    lines += [f"Live stream: {seconds / 60:.1f} min of real speech ({args.manifest}, looped) in {args.chunk_ms} ms chunks "
              "through one Stream per variant, taking turns chunk by chunk. CPU seconds per second of speech:", "",
              "| variant | whole pipeline | beam + LM decoder | rest (features, model, greedy) |", "| --- | ---: | ---: | ---: |"]
    for name, cost in costs.items():
        lines.append(f"| {name} | {cost.pipeline_cpu_s / seconds:.4f} | {cost.beam_cpu_s / seconds:.4f} | "
                     f"{(cost.pipeline_cpu_s - cost.beam_cpu_s) / seconds:.4f} |")
    same = costs["before"].transcript == costs["after"].transcript
    lines += ["", f"Beam + LM decoder after / before: {costs['after'].beam_cpu_s / costs['before'].beam_cpu_s:.2f}x the CPU "
              f"time; whole pipeline {costs['after'].pipeline_cpu_s / costs['before'].pipeline_cpu_s:.2f}x. "
              f"Transcripts of the two streams: {'identical' if same else 'DIFFERENT'} "
              f"({len(costs['after'].transcript.splitlines())} utterances)."]
    print("\n".join(lines), flush=True)
    if args.wer:
        rows = dev_wer(args.manifest, before)
        table = ["", f"Offline, the whole of {args.manifest} ({rows[0]['utterances']} clips, {rows[0]['audio_s'] / 60:.1f} min), "
                 "each setting on the shipped LM. 'changed': clips whose transcript differs from 'before: shipped default'; "
                 "'WER / CER change, 95 %': paired bootstrap over clips (2000 draws) of the error rate minus that of "
                 "'before: shipped default', in points; an interval that holds 0 is a change within noise.", "",
                 "| setting | WER % | CER % | WER change, 95 % | CER change, 95 % | beam + LM CPU s per s | changed |",
                 "| --- | ---: | ---: | --- | --- | ---: | ---: |"]
        table += [f"| {row['setting']} | {100 * row['wer']:.2f} | {100 * row['cer']:.2f} | "
                  f"{100 * row['wer_change_95'][0]:+.2f} to {100 * row['wer_change_95'][1]:+.2f} | "
                  f"{100 * row['cer_change_95'][0]:+.2f} to {100 * row['cer_change_95'][1]:+.2f} | {row['beam_cpu_per_s']:.4f} | "
                  f"{row['changed']} |" for row in rows]
        print("\n".join(table), flush=True)
        lines += table
    if args.write_results:
        write_section(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
