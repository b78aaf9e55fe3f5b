"""`python -m asr export RUN_CHECKPOINT OUT`: a shippable copy of a trained checkpoint (float16 weights by default)."""

from __future__ import annotations

import argparse

from asr.checkpoint import load_checkpoint, save_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="e.g. runs/small/best.pt")
    parser.add_argument("out", help="e.g. asr/pretrained/ds2_small.pt")
    parser.add_argument("--full-precision", action="store_true", help="keep float32 weights (twice the size)")


def run(args: argparse.Namespace) -> int:
    loaded = load_checkpoint(args.checkpoint)
    info = {**loaded.train_info, "exported_from": args.checkpoint, "weights_dtype": "float32" if args.full_precision else "float16"}
    save_checkpoint(args.out, loaded.model, loaded.feature_config, info, half=not args.full_precision)
    print(f"wrote {args.out}")
    return 0
