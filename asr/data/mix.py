"""Several manifests -> one training manifest, each repeated a whole number of times (its share of every epoch).

    python -m asr.data.mix --out data/train-mix.jsonl data/synth/train.jsonl data/real/train-commonvoice.jsonl=8

A few minutes of real speech beside hours of synthetic voices would be a rounding error in each batch; repeating
it is the simplest upsampling that keeps one epoch a fixed, reproducible list (the batch sampler shuffles, and
augmentation makes each repeat sound different). `MANIFEST=N` repeats it N times; a bare path counts once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.data.manifest import ManifestEntry, read_manifest, write_manifest


def parse_part(spec: str) -> tuple[Path, int]:
    """'path=N' -> (path, N); 'path' -> (path, 1)."""
    path, separator, repeats = spec.rpartition("=")
    if not separator:
        return Path(spec), 1
    if not repeats.isdigit() or int(repeats) < 1:
        raise ValueError(f"{spec}: the repeat count after '=' must be a whole number >= 1")
    return Path(path), int(repeats)


def mix(parts: list[tuple[Path, int]]) -> tuple[list[ManifestEntry], list[str]]:
    """The pooled entries and one line per part saying how many hours it adds."""
    entries, summary = [], []
    for path, repeats in parts:
        own = read_manifest(path)
        entries.extend(own * repeats)
        hours = sum(entry.duration for entry in own) / 3600
        summary.append(f"{path}: {len(own)} utterances, {hours:.2f} h x {repeats} = {hours * repeats:.2f} h")
    return entries, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.data.mix", description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", help="MANIFEST or MANIFEST=REPEATS")
    parser.add_argument("--out", type=Path, required=True, help="manifest to write")
    args = parser.parse_args(argv)
    try:
        entries, summary = mix([parse_part(spec) for spec in args.parts])
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    write_manifest(args.out, entries)
    total = sum(entry.duration for entry in entries) / 3600
    print("\n".join(summary + [f"wrote {len(entries)} utterances ({total:.2f} h) to {args.out}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
