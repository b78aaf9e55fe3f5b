"""`python -m asr transcribe`: files -> greedy and beam transcripts, offline or fed through a Stream in chunks."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import numpy as np

from asr.audio import audio_blocks, audio_info, load_audio
from asr.checkpoint import CheckpointError
from asr.device import DEVICE_CHOICES, DeviceError
from asr.features import AudioError
from asr.pretrained import BeamSettings, build_beam_decoder, load_recognizer
from asr.streaming import EndpointConfig, Recognizer
from asr.transcript import FORMATS, UtteranceRecord, record_of, render

# Longer files are decoded as a stream with endpointing, so memory stays bounded for hours of audio.
MAX_OFFLINE_SECONDS = 900.0


def add_beam_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = BeamSettings()
    lm = parser.add_mutually_exclusive_group()
    lm.add_argument("--lm", default=None, help="KenLM binary/ARPA for beam search (default: the shipped LM)")
    lm.add_argument("--no-lm", action="store_true", help="beam search without a language model")
    parser.add_argument("--beam-width", type=int, default=defaults.beam_width)
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="LM weight")
    parser.add_argument("--beta", type=float, default=defaults.beta, help="word insertion bonus")
    parser.add_argument("--hotwords", default="", help="comma-separated words or phrases to favour")
    parser.add_argument("--hotword-weight", type=float, default=defaults.hotword_weight)


def beam_settings_from(args: argparse.Namespace) -> BeamSettings:
    hotwords = tuple(w.strip() for w in args.hotwords.split(",") if w.strip())
    return BeamSettings(use_lm=not args.no_lm, lm_path=args.lm, beam_width=args.beam_width, alpha=args.alpha,
                        beta=args.beta, hotwords=hotwords, hotword_weight=args.hotword_weight)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--model", default=None, help="checkpoint path or hf://owner/repo/file.pt (default: shipped model)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="a transcript document per file, as the demo exports it: txt (one line per utterance), srt "
                             "(subtitles from word timings) or json (greedy, beam, beam + LM, n-best, word timings); "
                             "decoded as the demo does, with endpointing")
    parser.add_argument("--output-dir", default=None,
                        help="with --format: write <file stem>.<format> here instead of to standard output")
    parser.add_argument("--chunk-ms", type=int, default=None, help="feed the file through a Stream in chunks of N ms")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    add_beam_arguments(parser)


def transcribe_file(recognizer: Recognizer, path: str, chunk_ms: int | None) -> dict:
    info = audio_info(path)
    if chunk_ms is None and info.frames / info.samplerate <= MAX_OFFLINE_SECONDS:
        samples, rate = load_audio(path)
        started = time.perf_counter()
        greedy, beam, _ = recognizer.transcribe(samples, rate)
        greedy_text, beam_text, frames = greedy.text, beam.text if beam else None, len(samples)
    else:  # read piece by piece: hours of audio never sit in memory at once
        rate, blocks = audio_blocks(path, max(1, int(info.samplerate * (chunk_ms or 500) / 1000)))
        started = time.perf_counter()
        greedy_text, beam_text, frames = transcribe_blocks(recognizer, blocks, rate, endpointing=chunk_ms is None)
    elapsed = time.perf_counter() - started
    duration = frames / rate
    return {"file": path, "duration_s": round(duration, 3), "greedy": greedy_text, "beam": beam_text, "rtf": round(elapsed / max(duration, 1e-9), 4)}


def transcribe_blocks(recognizer: Recognizer, blocks: Iterable[np.ndarray], rate: int, endpointing: bool) -> tuple[str, str | None, int]:
    """Blocks through one Stream, the finished utterances' texts joined; without endpointing it equals the offline
    decode exactly, with it the demo's (a pause closes an utterance). Returns the frame count too."""
    stream = recognizer.create_stream(endpoint=EndpointConfig(enabled=endpointing))
    greedy_texts, beam_texts, frames = [], [], 0

    def keep_texts(utterances) -> None:  # only the words: an utterance's features and log-probs would pile up for hours
        greedy_texts.extend(u.greedy.text for u in utterances if u.greedy.text)
        beam_texts.extend(u.beam.text for u in utterances if u.beam and u.beam.text)

    for block in blocks:
        frames += len(block)
        keep_texts(stream.accept(block, rate).finished)
    keep_texts(stream.finalize().finished)
    return " ".join(greedy_texts), " ".join(beam_texts) if recognizer.beam_decoder else None, frames


def transcript_records(recognizer: Recognizer, path: str, plain_beam_decoder, chunk_ms: int | None) -> tuple[list[UtteranceRecord], float]:
    """A file through one endpointing Stream in chunks (as the demo hears it): its utterances' records, and duration."""
    info = audio_info(path)
    rate, blocks = audio_blocks(path, max(1, int(info.samplerate * (chunk_ms or 400) / 1000)))
    stream = recognizer.create_stream(plain_beam_decoder=plain_beam_decoder)
    has_lm = bool(getattr(recognizer.beam_decoder, "has_language_model", False))
    records, frames = [], 0

    def keep(utterances) -> None:
        for utterance in utterances:
            if utterance.greedy.text or (utterance.beam and utterance.beam.text):
                records.append(record_of(utterance, recognizer.seconds_per_output_frame, has_lm, source=Path(path).name))

    for block in blocks:
        frames += len(block)
        keep(stream.accept(block, rate).finished)
    keep(stream.finalize().finished)
    return records, frames / rate


def write_document(args: argparse.Namespace, recognizer: Recognizer, plain_beam_decoder, path: str, about: dict) -> None:
    records, duration = transcript_records(recognizer, path, plain_beam_decoder, args.chunk_ms)
    document = render(records, args.format, {**about, "file": path, "duration_s": round(duration, 3)})
    if args.output_dir is None:
        sys.stdout.write(document)
        sys.stdout.flush()
        return
    out = Path(args.output_dir) / f"{Path(path).stem}.{args.format}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    print(f"{path} -> {out}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.chunk_ms is not None and args.chunk_ms <= 0:
        print("error: --chunk-ms must be a positive number of milliseconds", file=sys.stderr)
        return 2
    if args.format and args.json:
        print("error: --json and --format are two different outputs; choose one", file=sys.stderr)
        return 2
    if args.format == "srt" and len(args.files) > 1 and args.output_dir is None:
        print("error: several files in SRT need --output-dir (one subtitle file each)", file=sys.stderr)
        return 2
    if args.output_dir is not None and not args.format:
        print("error: --output-dir goes with --format", file=sys.stderr)
        return 2
    try:
        loaded = load_recognizer(args.model, beam_settings_from(args), device=args.device)
    except (CheckpointError, DeviceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    settings = beam_settings_from(args)
    plain_beam_decoder, about = None, {}
    if args.format:
        if getattr(loaded.recognizer.beam_decoder, "has_language_model", False):  # the json's "beam": the same search, no LM
            plain_beam_decoder, _ = build_beam_decoder(replace(settings, use_lm=False))
        about = {"model": str(args.model or "shipped"), "beam_settings": {"beam_width": settings.beam_width, "alpha": settings.alpha,
                 "beta": settings.beta, "language_model": bool(getattr(loaded.recognizer.beam_decoder, "has_language_model", False))}}
    failures = 0
    for path in args.files:
        try:
            if args.format:
                write_document(args, loaded.recognizer, plain_beam_decoder, path, about)
                continue
            result = transcribe_file(loaded.recognizer, path, args.chunk_ms)
        except AudioError as error:
            message = str(error)
            named = message.startswith((f"{path}:", f"{Path(path)}:"))
            print(f"error: {message if named else f'{path}: {message}'}", file=sys.stderr)
            failures += 1
            continue
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(f"{path}\n  greedy: {result['greedy']}\n  beam:   {result['beam']}", flush=True)
    return 1 if failures else 0
