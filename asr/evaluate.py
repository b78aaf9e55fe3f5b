"""`python -m asr evaluate MANIFEST`: WER and CER (jiwer) and real-time factor for greedy, beam, beam + LM."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace

import jiwer
import numpy as np
import torch
from tqdm import tqdm

from asr.audio import load_audio
from asr.checkpoint import load_checkpoint
from asr.data.manifest import ManifestEntry, read_manifest
from asr.decoding import GreedyDecoder
from asr.device import DEVICE_CHOICES, resolve_device
from asr.features import compute_features
from asr.pretrained import DEFAULT_MODEL, BeamSettings, build_beam_decoder
from asr.transcribe import add_beam_arguments, beam_settings_from


@dataclass
class AcousticOutput:
    """Log-probs of every utterance of a manifest, computed once and shared by all decoders."""

    references: list[str]
    log_probs: list[np.ndarray]
    audio_seconds: float
    model_seconds: float


def compute_log_probs(model_reference: str | None, entries: list[ManifestEntry], device: str = "auto") -> AcousticOutput:
    torch_device = resolve_device(device)
    checkpoint = load_checkpoint(model_reference or DEFAULT_MODEL, device=torch_device)
    model, references, outputs, audio_seconds, model_seconds = checkpoint.model, [], [], 0.0, 0.0
    for entry in tqdm(entries, desc="acoustic model", mininterval=2):
        samples, rate = load_audio(entry.audio_filepath)
        started = time.perf_counter()
        features = compute_features(samples, rate, checkpoint.feature_config).to(torch_device)
        with torch.no_grad():
            log_probs, _ = model(features[None], torch.tensor([len(features)], device=torch_device))
        outputs.append(log_probs[0].float().cpu().numpy())
        model_seconds += time.perf_counter() - started
        audio_seconds += len(samples) / rate
        references.append(entry.text)
    return AcousticOutput(references, outputs, audio_seconds, model_seconds)


def decode_all(decoder, log_probs: list[np.ndarray]) -> tuple[list[str], float]:
    """Hypotheses and the seconds spent decoding."""
    started, hypotheses = time.perf_counter(), []
    for matrix in log_probs:
        stream = decoder.new_stream()
        stream.extend(matrix)
        hypotheses.append(stream.finalize().text)
    return hypotheses, time.perf_counter() - started


def score(references: list[str], hypotheses: list[str]) -> dict:
    return {"wer": jiwer.wer(references, hypotheses), "cer": jiwer.cer(references, hypotheses)}


def evaluate(acoustic: AcousticOutput, settings: BeamSettings) -> list[dict]:
    """One row per decoder: greedy, beam without LM, beam with LM (when one loads)."""
    decoders = [("greedy", GreedyDecoder(), None)]
    plain, _ = build_beam_decoder(replace(settings, use_lm=False))
    decoders.append(("beam", plain, None))
    with_lm, warning = build_beam_decoder(replace(settings, use_lm=True))
    decoders.append(("beam+lm", with_lm, warning))
    rows = []
    for name, decoder, warning in decoders:
        if warning:
            rows.append({"decoder": name, "error": warning})
            continue
        hypotheses, decode_seconds = decode_all(decoder, acoustic.log_probs)
        rows.append({"decoder": name, **score(acoustic.references, hypotheses),
                     "rtf": (acoustic.model_seconds + decode_seconds) / acoustic.audio_seconds,
                     "utterances": len(hypotheses), "audio_hours": acoustic.audio_seconds / 3600})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'decoder':<10} {'WER %':>7} {'CER %':>7} {'RTF':>8}"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['decoder']:<10} unavailable: {row['error']}")
        else:
            lines.append(f"{row['decoder']:<10} {100 * row['wer']:>7.2f} {100 * row['cer']:>7.2f} {row['rtf']:>8.4f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest")
    parser.add_argument("--model", default=None, help="checkpoint path or hf:// reference (default: shipped model)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N utterances")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    add_beam_arguments(parser)


def run(args: argparse.Namespace) -> int:
    entries = read_manifest(args.manifest)
    entries = entries[: args.limit] if args.limit else entries
    acoustic = compute_log_probs(args.model, entries, args.device)
    rows = evaluate(acoustic, beam_settings_from(args))
    print(json.dumps(rows) if args.json else format_table(rows))
    print(f"{len(entries)} utterances, {acoustic.audio_seconds / 3600:.2f} h of audio, manifest {args.manifest}")
    return 0
