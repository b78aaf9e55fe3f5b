"""Time per 0.5 s chunk of beam search at 5, 30 and 120 s into one stream, three ways side by side.

(a) ours: asr.decoding's incremental beam search (extend + partial result per chunk);
(b) naive: pyctcdecode's `decode_beams` re-run on the whole prefix at every chunk;
(c) flashlight: torchaudio's `ctc_decoder` with decode_step (+ its partial hypothesis).
Without an LM all three are lexicon-free; with the LM, flashlight needs a lexicon to use a word
KenLM (its lexicon-free mode expects a token LM), so it gets one spelled from the LM's unigrams.

Log-probs are synthetic unless --log-probs is given: held-out sentences turned into peaky
CTC-like posteriors with noise and confusions, at the output frame rate of `small` (33.3 per second). A block of
whole sentences, up to 10 s, is repeated to the stream's length, so that each checkpoint is timed on the same frames
and only the history behind it differs. Times are CPU times, the decoders taking turns chunk by chunk.

    python bench/decode_bench.py [--lm PATH] [--beam-width 32] [--log-probs FILE.npy] [--write-results]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))
from results import write_section  # noqa: E402

from asr.decoding import (  # noqa: E402
    BeamSearchDecoder,
    BeamSearchOptions,
    GreedyDecoder,
    LanguageModelError,
    open_kenlm,
    read_unigrams,
)
from asr.features import FeatureConfig  # noqa: E402
from asr.model import NAMED_CONFIGS  # noqa: E402
from asr.text import BLANK_INDEX, LABELS  # noqa: E402

# output frames per second of the shipped `small`: 10 ms features, subsampled by its conv time strides (3)
FRAME_RATE = 1.0 / (FeatureConfig().frame_seconds * math.prod(NAMED_CONFIGS["small"].conv_time_strides))
CHECKPOINTS_S = (5, 30, 120)
BLOCK_S = 10.0  # the stream repeats a block of whole sentences up to this length; each checkpoint's window spans one block
NAIVE_REPEATS = 3  # naive timings: this many consecutive chunk ends from each checkpoint on
DEFAULT_LM = REPO_ROOT / "lm" / "default" / "lm.binary"
FLASHLIGHT_TOKENS = ["-", "|"] + list(LABELS[2:])  # flashlight names blank "-" and word boundary "|"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", default=str(DEFAULT_LM), help="KenLM file with its unigram list beside it (default: the shipped LM)")
    parser.add_argument("--beam-width", type=int, default=BeamSearchOptions().beam_width)
    parser.add_argument("--chunk-seconds", type=float, default=0.5)
    parser.add_argument("--log-probs", default=None, help="(T, 29) natural-log probs .npy from a real model; repeated to length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="accepted for uniformity: beam search runs on the CPU")
    parser.add_argument("--write-results", action="store_true", help="replace the '## Decoding' section of bench/RESULTS.md")
    return parser.parse_args()


def sentences(split: str) -> list[str]:
    from asr.data.sentences import sentences_by_split

    return sentences_by_split()[split]


def synthetic_log_probs(seconds: float, texts: list[str], rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Peaky CTC-like posteriors spelling random sentences (spikes, blanks, noise, confusions), and their text."""
    targets, spoken = [BLANK_INDEX], []
    while True:  # whole sentences, as many as fit in `seconds` (at least one), so the block repeats cleanly
        sentence, text = [BLANK_INDEX] * int(rng.integers(4, 13)), texts[rng.integers(len(texts))]  # a pause first
        for char in text + " ":
            label = LABELS.index(char)
            if sentence[-1] == label:
                sentence.append(BLANK_INDEX)  # CTC can only repeat a label across a blank
            sentence += [label] * int(rng.choice([1, 1, 1, 2])) + [BLANK_INDEX] * int(rng.poisson(0.6))
        if spoken and len(targets) + len(sentence) > seconds * FRAME_RATE:
            break
        targets, spoken = targets + sentence, spoken + [text]
    targets_array = np.array(targets)
    frames = np.arange(len(targets_array))
    logits = rng.normal(0.0, 1.5, (len(frames), len(LABELS)))
    strength = rng.uniform(5.0, 13.0, len(frames))
    logits[frames, targets_array] += strength
    confused = frames[rng.random(len(frames)) < 0.15]  # another label nearly or more likely: substitutions
    logits[confused, rng.integers(1, len(LABELS), len(confused))] += strength[confused] * rng.uniform(0.7, 1.05, len(confused))
    logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return logits.astype(np.float32), " ".join(spoken)


def real_log_probs(path: str) -> np.ndarray:
    """A real model's log-probs from a .npy file."""
    log_probs = np.load(path).astype(np.float32)
    if log_probs.ndim != 2 or log_probs.shape[1] != len(LABELS):
        raise SystemExit(f"{path}: expected shape (frames, {len(LABELS)}), got {log_probs.shape}")
    return log_probs


def repeat_block(block: np.ndarray, seconds: float) -> tuple[np.ndarray, int]:
    """Whole copies of the block, at least `seconds` long: every checkpoint's window then sees the same frames,
    so differences between checkpoints come from the history behind them, not from what is being said."""
    repeats = math.ceil(seconds * FRAME_RATE / len(block))
    return np.concatenate([block] * repeats), repeats


def chunk_bounds(frames: int, chunk_seconds: float) -> list[tuple[int, int]]:
    """Chunks of chunk_seconds on average (16 and 17 frames alternate for 0.5 s at 33.3 frames/s)."""
    edges = sorted({round(k * chunk_seconds * FRAME_RATE) for k in range(int(frames / (chunk_seconds * FRAME_RATE)) + 2)})
    edges = [edge for edge in edges if edge <= frames]
    return list(zip(edges, edges[1:]))


def ours(decoder: BeamSearchDecoder):
    """Our stream as a chunk step returning (extend seconds, partial-result seconds)."""
    stream = decoder.new_stream()

    def step(chunk: np.ndarray) -> tuple[float, float]:
        began = time.process_time()
        stream.extend(chunk)
        extended = time.process_time()
        stream.result()
        return extended - began, time.process_time() - extended

    return step, stream


def flashlight_decoder(options: BeamSearchOptions, lm_path: str | None, workdir: Path):
    """torchaudio's flashlight decoder at the same beam width and pruning threshold."""
    from torchaudio.models.decoder import ctc_decoder

    settings = dict(tokens=FLASHLIGHT_TOKENS, beam_size=options.beam_width, beam_threshold=-options.beam_prune_logp,
                    blank_token="-", sil_token="|")
    if lm_path is None:
        return ctc_decoder(lexicon=None, lm=None, **settings)
    lexicon = workdir / "lexicon.txt"
    words = [w for w in read_unigrams(lm_path) if w and set(w) <= set(LABELS[2:])]
    lexicon.write_text("".join(f"{word}\t{' '.join(word)} |\n" for word in words))
    return ctc_decoder(lexicon=str(lexicon), lm=str(lm_path), lm_weight=options.alpha, word_score=options.beta, **settings)


def flashlight(decoder):
    """Flashlight as a chunk step returning (decode_step seconds, partial-hypothesis seconds)."""
    import torch

    decoder.decode_begin()

    def step(chunk: np.ndarray) -> tuple[float, float]:
        began = time.process_time()
        decoder.decode_step(torch.from_numpy(np.ascontiguousarray(chunk)))
        stepped = time.process_time()
        decoder.get_final_hypothesis()
        return stepped - began, time.process_time() - stepped

    return step


def naive(decoder: BeamSearchDecoder, log_probs: np.ndarray):
    """pyctcdecode re-decoding everything heard so far, as a non-incremental app must at each chunk."""
    from pyctcdecode.decoder import BeamSearchDecoderCTC

    reference = BeamSearchDecoderCTC(decoder.alphabet, decoder.language_model)
    kwargs = decoder.options.decode_beams_kwargs()

    def decode_prefix(end: int) -> float:
        began = time.process_time()
        reference.decode_beams(log_probs[:end], **kwargs)
        return time.process_time() - began

    return decode_prefix


@dataclass
class Row:
    label: str
    checkpoint_ms: dict[int, float]  # checkpoint second -> median ms per chunk


def at_checkpoints(seconds: list[float], bounds, window_s: float) -> dict[int, float]:
    """Median ms per chunk over the chunks ending within window_s of each checkpoint."""
    ends = np.array([end for _, end in bounds]) / FRAME_RATE
    return {c: 1000 * statistics.median(s for s, e in zip(seconds, ends) if abs(e - c) <= window_s) for c in CHECKPOINTS_S}


def naive_indices(bounds) -> list[list[int]]:
    """Per checkpoint, the first NAIVE_REPEATS chunks ending at or after it."""
    ends = [end / FRAME_RATE for _, end in bounds]
    return [[next(i for i, e in enumerate(ends) if e >= c) + k for k in range(NAIVE_REPEATS)] for c in CHECKPOINTS_S]


def run_setting(options: BeamSearchOptions, lm_path: str | None, log_probs, bounds, window_s: float,
                workdir: Path) -> tuple[list[Row], str]:
    """All decoders over one stream, chunk by chunk in alternating order, so machine load hits them alike."""
    decoder = BeamSearchDecoder(LABELS, options, lm_path=lm_path)
    ours_step, stream = ours(decoder)
    steps = [("ours", ours_step), ("flashlight", flashlight(flashlight_decoder(options, lm_path, workdir)))]
    decode_prefix, naive_groups = naive(decoder, log_probs), naive_indices(bounds)
    naive_at = {index for group in naive_groups for index in group}
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in steps}
    naive_seconds = {}
    for index, (start, end) in enumerate(bounds):
        for name, step in steps if index % 2 else steps[::-1]:
            seconds[name].append(step(log_probs[start:end]))
        if index in naive_at:
            naive_seconds[index] = decode_prefix(end)

    def row(label: str, name: str, with_partial: bool) -> Row:
        per_chunk = [step + (partial if with_partial else 0.0) for step, partial in seconds[name]]
        return Row(label, at_checkpoints(per_chunk, bounds, window_s))

    rows = [row("(a) ours: extend", "ours", False), row("(a) ours: extend + result", "ours", True),
            Row("(b) naive: pyctcdecode on the prefix",
                {c: 1000 * statistics.median(naive_seconds[i] for i in group) for c, group in zip(CHECKPOINTS_S, naive_groups)}),
            row("(c) flashlight: decode_step", "flashlight", False),
            row("(c) flashlight: decode_step + partial", "flashlight", True)]
    return rows, stream.finalize().text


RATIOS = (("(b) / (a) extend + result", 2, 1), ("(c) step / (a) extend", 3, 0), ("(c) step + partial / (a) extend + result", 4, 1))


def format_table(title: str, rows: list[Row]) -> str:
    lines = ["| " + title + " | " + " | ".join(f"{c} s" for c in CHECKPOINTS_S) + " | 120 s / 5 s |",
             "|" + " --- |" * (len(CHECKPOINTS_S) + 2)]
    first, last = CHECKPOINTS_S[0], CHECKPOINTS_S[-1]
    for row in rows:
        cells = " | ".join(f"{row.checkpoint_ms[c]:.2f} ms" for c in CHECKPOINTS_S)
        lines.append(f"| {row.label} | {cells} | {row.checkpoint_ms[last] / row.checkpoint_ms[first]:.2f}x |")
    for label, slower, faster in RATIOS:
        ratios = " | ".join(f"**{rows[slower].checkpoint_ms[c] / rows[faster].checkpoint_ms[c]:.1f}x**" for c in CHECKPOINTS_S)
        lines.append(f"| ratio {label} | {ratios} | |")
    return "\n".join(lines)


def verdict(title: str, rows: list[Row]) -> str:
    """The issue's targets, checked on this run's numbers: >= 10x (b) at 120 s, flat, not slower than (c)."""
    first, last = CHECKPOINTS_S[0], CHECKPOINTS_S[-1]
    ours_total, ours_step = rows[1].checkpoint_ms, rows[0].checkpoint_ms
    versus_step = min(rows[3].checkpoint_ms[c] / ours_step[c] for c in CHECKPOINTS_S)
    versus_partial = min(rows[4].checkpoint_ms[c] / ours_total[c] for c in CHECKPOINTS_S)
    return (f"{title}: (a) is {rows[2].checkpoint_ms[last] / ours_total[last]:.0f}x faster than (b) at {last} s; "
            f"(a) at {last} s costs {ours_total[last] / ours_total[first]:.2f}x what it costs at {first} s; "
            f"(c) decode_step alone takes at least {versus_step:.2f}x the time of (a) extend, "
            f"and with its partial hypothesis at least {versus_partial:.2f}x that of (a) extend + result.")


def error_rates(truth: str, transcripts: dict[str, str]) -> str:
    """CER / WER of each transcript: how hard the synthetic posteriors are, and what the LM does with them."""
    import jiwer

    return ", ".join(f"{name} {100 * jiwer.cer(truth, text):.1f} % / {100 * jiwer.wer(truth, text):.1f} %"
                     for name, text in transcripts.items())


def write_results(report: str) -> None:
    write_section("## Decoding", report)


def main() -> None:
    args = parse_args()
    if args.device != "cpu":
        print(f"note: --device {args.device} ignored, beam search runs on the CPU", file=sys.stderr)
    rng = np.random.default_rng(args.seed)
    texts, block_text = sentences("test"), None
    block = real_log_probs(args.log_probs) if args.log_probs else None
    if block is None:
        block, block_text = synthetic_log_probs(BLOCK_S, texts, rng)
    window_s = len(block) / FRAME_RATE / 2
    log_probs, repeats = repeat_block(block, CHECKPOINTS_S[-1] + window_s + 1)
    truth = None if block_text is None else " ".join([block_text] * repeats)
    bounds = chunk_bounds(len(log_probs), args.chunk_seconds)
    options = BeamSearchOptions(beam_width=args.beam_width)
    try:
        open_kenlm(args.lm)  # one clear sentence now, rather than a traceback halfway through the bench
    except LanguageModelError as error:
        raise SystemExit(str(error)) from None
    with tempfile.TemporaryDirectory() as tmp:
        plain_rows, plain_text = run_setting(options, None, log_probs, bounds, window_s, Path(tmp))
        lm_rows, lm_text = run_setting(options, args.lm, log_probs, bounds, window_s, Path(tmp))
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO_ROOT)] + sys.argv[1:])
    source = args.log_probs or f"synthetic (held-out sentences spelled as peaky CTC posteriors, seed {args.seed})"
    source += f", a {len(block) / FRAME_RATE:.1f} s block repeated {repeats} times"
    candidates = float(np.mean((log_probs >= options.token_min_logp).sum(axis=1)))
    lines = [
        f"Command: `{command}`", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}. "
        f"Log-probs: {source}; {FRAME_RATE:.1f} frames/s, {len(LABELS)} labels, {candidates:.1f} labels per frame above "
        f"token_min_logp; chunks of {args.chunk_seconds} s. LM: {os.path.relpath(args.lm, REPO_ROOT)}. Beam width {options.beam_width}, alpha "
        f"{options.alpha}, beta {options.beta}, beam_prune_logp {options.beam_prune_logp}, token_min_logp "
        f"{options.token_min_logp}, prune_history {options.prune_history}. Flashlight: same beam size, beam_threshold "
        f"{-options.beam_prune_logp:g}, all tokens; lexicon-free without LM; with the LM it needs a lexicon (the LM's "
        "unigrams), so that row is a different, constrained search. Each figure is the median CPU time (process_time, "
        "which other jobs on the shared cores do not inflate as much as wall time) per chunk over the chunks ending within "
        f"{window_s:.1f} s of the checkpoint, i.e. over one block ((b): the {NAIVE_REPEATS} chunks from it on); the "
        "decoders take turns on each chunk.", "",
        format_table(f"no LM, beam {options.beam_width}", plain_rows), "",
        format_table(f"with LM, beam {options.beam_width}", lm_rows), "",
        verdict("No LM", plain_rows), "",
        verdict("With LM (flashlight over a lexicon)", lm_rows),
    ]
    if truth is not None:
        greedy = GreedyDecoder().decode(log_probs).text
        rates = error_rates(truth, {"greedy": greedy, "beam": plain_text, "beam + LM": lm_text})
        lines += ["", f"CER / WER over the stream ({len(set(block_text.split()))} distinct words, repeated): {rates}."]
    report = "\n".join(lines)
    print(report)
    if args.write_results:
        write_results(report)


if __name__ == "__main__":
    main()
