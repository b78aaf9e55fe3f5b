"""Several manifests -> one training manifest, each taken a set number of times (its share of every epoch).

    python -m asr.data.mix --out data/train-mix.jsonl data/synth/train.jsonl=0.5 data/real/train-commonvoice.jsonl=8

A few minutes of real speech beside hours of synthetic voices would be a rounding error in each batch; repeating
it is the simplest upsampling that keeps one epoch a fixed, reproducible list (the batch sampler shuffles, and
augmentation makes each repeat sound different). `MANIFEST=N` repeats it N times; a fraction takes that share of
its utterances, chosen by a hash of each audio path (the same subset on every machine); a bare path counts once.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from pathlib import Path

from asr.data.manifest import ManifestEntry, read_manifest, write_manifest


def parse_part(spec: str) -> tuple[Path, float]:
    """'path=N' -> (path, N); 'path' -> (path, 1)."""
    path, separator, share = spec.rpartition("=")
    if not separator:
        return Path(spec), 1.0
    try:
        value = float(share)
    except ValueError:
        value = math.nan
    if not (value > 0 and (value < 1 or value.is_integer())):
        raise ValueError(f"{spec}: the share after '=' must be a fraction in (0, 1) or a whole number >= 1")
    return Path(path), value


def _hash_fraction(entry: ManifestEntry) -> float:
    """A machine-independent number in [0, 1) for one utterance, so a fractional share is a stable subset."""
    return int(hashlib.sha1(Path(entry.audio_filepath).as_posix().encode("utf-8")).hexdigest()[:12], 16) / 16**12


def take(entries: list[ManifestEntry], share: float) -> list[ManifestEntry]:
    """Whole shares repeat the list; a fraction keeps the utterances whose hash falls below it."""
    if share >= 1:
        return entries * int(share)
    return [entry for entry in entries if _hash_fraction(entry) < share]


def mix(parts: list[tuple[Path, float]]) -> tuple[list[ManifestEntry], list[str]]:
    """The pooled entries and one line per part saying how many hours it adds."""
    entries, summary = [], []
    for path, share in parts:
        own = read_manifest(path)
        taken = take(own, share)
        entries.extend(taken)
        hours = sum(entry.duration for entry in own) / 3600
        summary.append(f"{path}: {len(own)} utterances, {hours:.2f} h x {share:g} = "
                       f"{sum(entry.duration for entry in taken) / 3600:.2f} h")
    return entries, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.data.mix", description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", help="MANIFEST, MANIFEST=REPEATS or MANIFEST=FRACTION")
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
