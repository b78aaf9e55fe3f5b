"""Choose the default LM: build a grid of orders, pruning and quantisation, keep the best dev perplexity under a size cap.

    python -m lm.sweep --source fortunes --out lm/default

Every candidate is built from the same training text (held-out splits removed), measured on the
fortune dev split, and printed as a Markdown table row; the winner, the smallest candidate whose
dev perplexity (with OOVs) is within 1 % of the lowest, is copied to --out. The test split is never used to choose.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lm.build import BINARY_NAME, METADATA_NAME, UNIGRAMS_NAME, BuildOptions, BuildReport, build_lm
from lm.sources import SOURCES

SIZE_CAP_BYTES = 10 * 1000 * 1000
# The dev split has about 6,500 words: perplexities within 1 % of the best are a tie, and the smaller model wins it.
PERPLEXITY_TIE = 0.01
DEFAULT_GRID: tuple[BuildOptions, ...] = tuple(
    BuildOptions(order=order, prune=prune, quantize=quantize)
    for order in (3, 4, 5)
    for prune in ((), (0, 0, 1), (0, 1, 1))
    for quantize in (None, 8)
)


@dataclass(frozen=True)
class Candidate:
    options: BuildOptions
    report: BuildReport
    directory: Path

    @property
    def shipped_bytes(self) -> int:
        return self.report.binary_bytes + self.report.unigrams_bytes

    @property
    def dev_perplexity(self) -> float:
        return self.report.perplexity["dev"]["with_oovs"]


def table_row(candidate: Candidate) -> str:
    """One Markdown row: settings, size, dev perplexity with and without OOVs."""
    options, dev = candidate.options, candidate.report.perplexity["dev"]
    prune = " ".join(map(str, options.prune)) or "none"
    return (
        f"| {options.order} | {prune} | {options.quantize or 'none'} | {candidate.shipped_bytes / 1e6:.2f} MB "
        f"| {dev['with_oovs']:.1f} | {dev['without_oovs']:.1f} |"
    )


def best(candidates: Sequence[Candidate], cap_bytes: int = SIZE_CAP_BYTES) -> Candidate:
    """The smallest model under the cap whose dev perplexity is within PERPLEXITY_TIE of the lowest there."""
    fitting = [candidate for candidate in candidates if candidate.shipped_bytes < cap_bytes]
    if not fitting:
        raise ValueError(f"no candidate fits under {cap_bytes / 1e6:.0f} MB: add stronger pruning or quantisation to the grid")
    lowest = min(candidate.dev_perplexity for candidate in fitting)
    tied = [candidate for candidate in fitting if candidate.dev_perplexity <= lowest * (1 + PERPLEXITY_TIE)]
    return min(tied, key=lambda candidate: (candidate.shipped_bytes, candidate.dev_perplexity))


def sweep(raw: list[str], sources: list[str], grid: Sequence[BuildOptions], work: Path) -> list[Candidate]:
    """Build every grid point into its own folder under `work`, printing a table row as each finishes."""
    print("| order | prune | quantise bits | binary + unigrams | dev ppl (with OOVs) | dev ppl (without OOVs) |")
    print("| --- | --- | --- | --- | --- | --- |")
    candidates = []
    for index, options in enumerate(grid):
        directory = work / f"candidate-{index}"
        candidate = Candidate(options, build_lm(raw, sources, directory, options), directory)
        print(table_row(candidate), flush=True)
        candidates.append(candidate)
    return candidates


def install(candidate: Candidate, out: Path) -> None:
    """Copy the chosen model's shipped files (binary, unigrams, metadata) to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (BINARY_NAME, UNIGRAMS_NAME, METADATA_NAME):
        shutil.copy2(candidate.directory / name, out / name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lm.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--source", nargs="+", default=["fortunes"], choices=sorted(SOURCES), help="named texts to train on")
    parser.add_argument("--out", type=Path, required=True, help="where the chosen model goes")
    args = parser.parse_args(argv)
    sources = [SOURCES[name].description for name in args.source]
    raw = [sentence for name in args.source for sentence in SOURCES[name].sentences()]
    with tempfile.TemporaryDirectory(prefix="lm-sweep-") as work:
        chosen = best(sweep(raw, sources, DEFAULT_GRID, Path(work)))
        install(chosen, args.out)
    print(f"chosen: {table_row(chosen)} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
