"""`python -m asr tune-lm MANIFEST`: search the LM weight (alpha) and word bonus (beta) on a dev manifest.

The acoustic model runs once; every (alpha, beta) pair re-decodes the cached log-probs.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from dataclasses import replace

import jiwer
from tqdm import tqdm

from asr.device import DEVICE_CHOICES
from asr.evaluate import acoustic_output_or_none, decode_all
from asr.pretrained import build_beam_decoder
from asr.transcribe import add_beam_arguments, beam_settings_from


def candidate_pairs(alphas: list[float], betas: list[float], trials: int, seed: int) -> list[tuple[float, float]]:
    """The full grid, or `trials` pairs drawn uniformly from the grid's ranges (random search)."""
    if trials <= 0:
        return list(itertools.product(alphas, betas))
    rng = random.Random(seed)
    return [(round(rng.uniform(min(alphas), max(alphas)), 3), round(rng.uniform(min(betas), max(betas)), 3)) for _ in range(trials)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="dev manifest (never the test set)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--alphas", default="0,0.25,0.5,0.75,1.0,1.5,2.0")
    parser.add_argument("--betas", default="-1,0,1,2,3")
    parser.add_argument("--trials", type=int, default=0, help="random search with this many pairs instead of the grid")
    parser.add_argument("--seed", type=int, default=0)
    add_beam_arguments(parser)


def run(args: argparse.Namespace) -> int:
    acoustic = acoustic_output_or_none(args)
    if acoustic is None:
        return 2
    base = beam_settings_from(args)
    pairs = candidate_pairs([float(a) for a in args.alphas.split(",")], [float(b) for b in args.betas.split(",")], args.trials, args.seed)
    results = []
    for alpha, beta in tqdm(pairs, desc="alpha/beta", mininterval=2):
        decoder, warning = build_beam_decoder(replace(base, alpha=alpha, beta=beta))
        if warning:
            print(f"error: {warning}", file=sys.stderr)
            return 2
        hypotheses, _ = decode_all(decoder, acoustic.log_probs)
        results.append((jiwer.wer(acoustic.references, hypotheses), jiwer.cer(acoustic.references, hypotheses), alpha, beta))
    results.sort()
    print(f"{'alpha':>6} {'beta':>6} {'WER %':>7} {'CER %':>7}")
    for wer, cer, alpha, beta in results[:10]:
        print(f"{alpha:>6.3g} {beta:>6.3g} {100 * wer:>7.2f} {100 * cer:>7.2f}")
    wer, cer, alpha, beta = results[0]
    print(f"best: --alpha {alpha:g} --beta {beta:g} (WER {100 * wer:.2f} %, CER {100 * cer:.2f} % on {len(acoustic.references)} utterances)")
    return 0
