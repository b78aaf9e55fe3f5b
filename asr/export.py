"""`python -m asr export RUN_CHECKPOINT OUT`: a shippable copy of a trained checkpoint (float16 weights by default).

`--average-with runs/x/epoch008.pt runs/x/epoch009.pt` ships the mean of those weights and RUN_CHECKPOINT's.
"""

from __future__ import annotations

import argparse
import sys

from asr.checkpoint import CheckpointError, average_checkpoints, load_checkpoint, save_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="e.g. runs/small/best.pt")
    parser.add_argument("out", help="e.g. asr/pretrained/ds2_small.pt")
    parser.add_argument("--average-with", nargs="+", default=[], metavar="CHECKPOINT",
                        help="average these checkpoints' weights with RUN_CHECKPOINT's (same model; e.g. a run's last "
                             "epochs, saved by train --keep-epoch-checkpoints)")
    parser.add_argument("--full-precision", action="store_true", help="keep float32 weights (twice the size)")


def run(args: argparse.Namespace) -> int:
    try:
        loaded = average_checkpoints([args.checkpoint, *args.average_with]) if args.average_with else load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    info = {**loaded.train_info, "exported_from": loaded.source, "weights_dtype": "float32" if args.full_precision else "float16"}
    save_checkpoint(args.out, loaded.model, loaded.feature_config, info, half=not args.full_precision)
    print(f"wrote {args.out}")
    return 0
