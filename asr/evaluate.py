"""`python -m asr evaluate MANIFEST`: WER and CER (jiwer) and real-time factor for greedy, beam, beam + LM."""

from __future__ import annotations

import argparse
import json
import sys
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
from asr.model import fold_batchnorms
from asr.pretrained import DEFAULT_MODEL, BeamSettings, build_beam_decoder
from asr.transcribe import add_beam_arguments, beam_settings_from


@dataclass
class AcousticOutput:
    """Log-probs of every utterance of a manifest, computed once and shared by all decoders."""

    references: list[str]
    groups: list[str]  # the folder holding each audio file: the voice in a synthetic corpus, the chapter in LibriSpeech
    log_probs: list[np.ndarray]
    audio_seconds: float
    model_seconds: float


def compute_log_probs(model_reference: str | None, entries: list[ManifestEntry], device: str = "auto") -> AcousticOutput:
    torch_device = resolve_device(device)
    checkpoint = load_checkpoint(model_reference or DEFAULT_MODEL, device=torch_device)
    model, references, groups, outputs, audio_seconds, model_seconds = fold_batchnorms(checkpoint.model), [], [], [], 0.0, 0.0
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
        groups.append(entry.audio_filepath.parent.name)
    return AcousticOutput(references, groups, outputs, audio_seconds, model_seconds)


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


def evaluate(acoustic: AcousticOutput, settings: BeamSettings, by_group: bool = False) -> list[dict]:
    """One row per decoder: greedy, beam without LM, beam with LM (unless settings say no LM; a row with the reason
    when it does not load); with by_group, each row also scores every audio folder on its own (which voices or
    speakers the errors come from)."""
    decoders = [("greedy", GreedyDecoder(), None)]
    plain, _ = build_beam_decoder(replace(settings, use_lm=False))
    decoders.append(("beam", plain, None))
    if settings.use_lm:  # --no-lm: the plain beam row above is all that was asked for
        with_lm, warning = build_beam_decoder(settings)
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
        if by_group:
            rows[-1]["groups"] = {group: {**score([r for r, _ in pairs], [h for _, h in pairs]), "utterances": len(pairs)}
                                  for group, pairs in sorted(_pairs_by_group(acoustic, hypotheses).items())}
    return rows


def _pairs_by_group(acoustic: AcousticOutput, hypotheses: list[str]) -> dict[str, list[tuple[str, str]]]:
    pairs: dict[str, list[tuple[str, str]]] = {}
    for group, reference, hypothesis in zip(acoustic.groups, acoustic.references, hypotheses):
        pairs.setdefault(group, []).append((reference, hypothesis))
    return pairs


def format_table(rows: list[dict]) -> str:
    lines = [f"{'decoder':<10} {'WER %':>7} {'CER %':>7} {'RTF':>8}"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['decoder']:<10} unavailable: {row['error']}")
        else:
            lines.append(f"{row['decoder']:<10} {100 * row['wer']:>7.2f} {100 * row['cer']:>7.2f} {row['rtf']:>8.4f}")
    grouped = [row for row in rows if "groups" in row]
    if grouped:
        lines.append("")
        lines.append(f"{'folder':<32} {'utt.':>5} " + " ".join(f"{row['decoder'] + ' WER/CER %':>22}" for row in grouped))
        for group in grouped[0]["groups"]:
            cells = " ".join(f"{100 * row['groups'][group]['wer']:>14.1f} / {100 * row['groups'][group]['cer']:>5.1f}" for row in grouped)
            lines.append(f"{group:<32} {grouped[0]['groups'][group]['utterances']:>5} {cells}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest")
    parser.add_argument("--model", default=None, help="checkpoint path or hf:// reference (default: shipped model)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N utterances")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument("--by-folder", action="store_true", help="also score each audio folder (voice, speaker) on its own")
    add_beam_arguments(parser)


def read_scoring_manifest(path: str, limit: int = 0) -> list[ManifestEntry]:
    """The utterances to score; a ValueError naming the file for a missing, malformed or empty manifest, since a WER over
    nothing is not a number anyone should read."""
    try:
        entries = read_manifest(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: manifest not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: cannot read the manifest ({error})") from None
    if not entries:
        raise ValueError(f"{path}: the manifest lists no utterances")
    return entries[:limit] if limit else entries


def acoustic_output_or_none(args: argparse.Namespace) -> AcousticOutput | None:
    """The manifest's log-probs, or None after printing one line saying why not (a bad manifest or audio file: each
    utterance counts in the score, so one that cannot be read stops the run rather than being skipped)."""
    try:
        return compute_log_probs(args.model, read_scoring_manifest(args.manifest, args.limit), args.device)
    except ValueError as error:  # AudioError is one: its message names the audio file
        print(f"error: {error}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    acoustic = acoustic_output_or_none(args)
    if acoustic is None:
        return 2
    rows = evaluate(acoustic, beam_settings_from(args), by_group=args.by_folder)
    print(json.dumps(rows) if args.json else format_table(rows))
    print(f"{len(acoustic.references)} utterances, {acoustic.audio_seconds / 3600:.2f} h of audio, manifest {args.manifest}")
    return 0
