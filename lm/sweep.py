"""Choose an LM: build a grid of orders, pruning, vocabulary sizes and quantisation, keep the best under a size cap.

    python -m lm.sweep --text-folder ../shared/lmtext --exclude-manifests data/real/dev*.jsonl data/real/test*.jsonl \
        --choose-on real/dev --max-oov-rate 0.0157 --out runs/lm/general
    python -m lm.sweep --source fortunes --out runs/lm/fortunes

The training text is prepared once (held-out sentences removed); every candidate is built from it, measured on
every held-out set and printed as a Markdown table row. The winner, the smallest candidate whose perplexity on
--choose-on (with OOVs) is within 1 % of the lowest among those whose binary and unigram list each fit the size
cap (and whose OOV rate there is at most --max-oov-rate), is copied to --out. Test sets are measured and reported,
never used to choose.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from lm.build import (
    BINARY_NAME, METADATA_NAME, NOTICE_NAME, UNIGRAMS_NAME, BuildOptions, BuildReport, TrainingText, add_input_arguments,
    build_prepared, check_inputs, inputs_from, prepare_text, validate, write_held_out,
)
from lm.tools import ensure_tools

# Each shipped file stays under this (a Space stores files of 10 MB and more only through LFS); the margin
# keeps a rebuild that comes out a little larger under the hard limit.
SIZE_CAP_BYTES = 9_500_000
# Perplexities within 1 % of the best are a tie (the dev sets have a few thousand words), and the smaller model wins it.
PERPLEXITY_TIE = 0.01
# Small text (the fortunes, 208k words): order, pruning and quantisation; no vocabulary cut.
SMALL_TEXT_GRID: tuple[BuildOptions, ...] = tuple(
    BuildOptions(order=order, prune=prune, quantize=quantize)
    for order in (3, 4, 5)
    for prune in ((), (0, 0, 1), (0, 1, 1))
    for quantize in (None, 8)
)
# Large text (a text folder, 28M words): a 4-gram pruned 0 1 2 3 is 17 MB and bigrams seen once alone overflow the
# cap, so every point prunes them; 6-bit quantisation buys room for more n-grams than 8-bit at each vocabulary size.
LARGE_TEXT_GRID: tuple[BuildOptions, ...] = tuple(
    BuildOptions(order=len(prune), prune=prune, vocabulary=vocabulary, quantize=bits)
    for prune in ((0, 2, 2), (0, 2, 3), (0, 2, 4), (0, 2, 4, 6), (0, 3, 5, 7))
    for vocabulary, bits in ((64_000, 6), (100_000, 6), (100_000, 8), (120_000, 6))
)
GRIDS = {"small-text": SMALL_TEXT_GRID, "large-text": LARGE_TEXT_GRID}


@dataclass(frozen=True)
class Candidate:
    options: BuildOptions
    report: BuildReport
    directory: Path

    @property
    def shipped_bytes(self) -> int:
        return self.report.binary_bytes + self.report.unigrams_bytes

    def fits(self, cap_bytes: int) -> bool:
        return self.report.binary_bytes < cap_bytes and self.report.unigrams_bytes < cap_bytes

    def perplexity_on(self, name: str) -> float:
        return self.report.perplexity[name]["with_oovs"]


def settings_cells(options: BuildOptions) -> list[str]:
    prune = " ".join(map(str, options.prune)) or "none"
    vocabulary = f"{options.vocabulary // 1000}k" if options.vocabulary else "all"
    return [str(options.order), prune, vocabulary, str(options.quantize or "none")]


def table_header(sets: Sequence[str]) -> str:
    columns = ["order", "prune", "vocabulary cut", "bits", "binary", "unigrams", "words"]
    columns += [f"{name} {figure}" for name in sets for figure in ("OOV", "ppl")]
    return "| " + " | ".join(columns) + " |\n|" + " --- |" * len(columns)


def table_row(candidate: Candidate, sets: Sequence[str]) -> str:
    """One Markdown row: settings, file sizes, vocabulary, then OOV rate and perplexity (with OOVs) on each set."""
    report = candidate.report
    cells = settings_cells(candidate.options)
    cells += [f"{report.binary_bytes / 1e6:.2f} MB", f"{report.unigrams_bytes / 1e6:.2f} MB", f"{report.vocabulary_size:,}"]
    for name in sets:
        measured = report.perplexity[name]
        cells += [f"{100 * measured['oov_rate']:.2f} %", f"{measured['with_oovs']:.1f}"]
    return "| " + " | ".join(cells) + " |"


def best(candidates: Sequence[Candidate], choose_on: str = "fortunes/dev", cap_bytes: int = SIZE_CAP_BYTES,
         max_oov_rate: float | None = None) -> Candidate:
    """The smallest model under the cap (and at most `max_oov_rate` OOVs on `choose_on`) whose perplexity there is within
    PERPLEXITY_TIE of the lowest. The OOV bound is what lets vocabulary sizes compete: perplexity with OOVs alone
    favours the smaller vocabulary, whose unknown-word token soaks up the probability of every word it lacks."""
    fitting = [candidate for candidate in candidates if candidate.fits(cap_bytes)]
    if max_oov_rate is not None:
        fitting = [candidate for candidate in fitting if candidate.report.perplexity[choose_on]["oov_rate"] <= max_oov_rate]
    if not fitting:
        raise ValueError(f"no candidate fits under {cap_bytes / 1e6:.1f} MB a file (and the OOV bound): add stronger pruning or another vocabulary size to the grid")
    lowest = min(candidate.perplexity_on(choose_on) for candidate in fitting)
    tied = [candidate for candidate in fitting if candidate.perplexity_on(choose_on) <= lowest * (1 + PERPLEXITY_TIE)]
    return min(tied, key=lambda candidate: (candidate.shipped_bytes, candidate.perplexity_on(choose_on)))


def sweep(text: TrainingText, grid: Sequence[BuildOptions], work: Path, sets: Sequence[str]) -> list[Candidate]:
    """Build every grid point into its own folder under `work`, printing a table row as each finishes."""
    tools = ensure_tools()
    print(table_header(sets), flush=True)
    candidates = []
    for index, options in enumerate(grid):
        directory = work / f"candidate-{index}"
        candidate = Candidate(options, build_prepared(text, directory, options, tools), directory)
        print(table_row(candidate, sets), flush=True)
        candidates.append(candidate)
    return candidates


def install(candidate: Candidate, out: Path) -> None:
    """Copy the chosen model's shipped files (binary, unigrams, metadata, NOTICE when there is one) to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (BINARY_NAME, UNIGRAMS_NAME, METADATA_NAME, NOTICE_NAME):
        if (candidate.directory / name).is_file():
            shutil.copy2(candidate.directory / name, out / name)
        else:
            (out / name).unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lm.sweep", description=__doc__.splitlines()[0])
    add_input_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="where the chosen model goes")
    parser.add_argument("--grid", choices=sorted(GRIDS), default=None, help="default: large-text with --text-folder, else small-text")
    parser.add_argument("--choose-on", default="fortunes/dev", help="held-out set that chooses, e.g. real/dev-commonvoice (default %(default)s)")
    parser.add_argument("--max-oov-rate", type=float, default=None, help="leave out candidates with more OOVs on --choose-on, e.g. 0.0157")
    parser.add_argument("--report-on", nargs="+", default=None, help="held-out sets in the table (default: --choose-on, then the text folder's)")
    parser.add_argument("--work", type=Path, default=None, help="keep every candidate under this folder (default: a temporary one)")
    args = parser.parse_args(argv)
    check_inputs(parser, args)
    base = BuildOptions(exclude_splits=tuple(args.exclude_splits), exclude_manifests=tuple(map(str, args.exclude_manifests)), memory=args.memory)
    grid = [replace(options, exclude_splits=base.exclude_splits, exclude_manifests=base.exclude_manifests, memory=base.memory)
            for options in GRIDS[args.grid or ("large-text" if args.text_folder else "small-text")]]
    for options in grid:
        validate(options)
    text = prepare_text(inputs_from(args), base)
    if args.choose_on not in text.evaluation:
        parser.error(f"--choose-on {args.choose_on}: not a held-out set of this text (there are: {', '.join(text.evaluation)})")
    write_held_out(text.evaluation, args.held_out_dir)
    sets = args.report_on or [args.choose_on] + [name for name in text.evaluation if name.startswith("lmtext/")]
    with tempfile.TemporaryDirectory(prefix="lm-sweep-") as temporary:
        work = args.work or Path(temporary)
        chosen = best(sweep(text, grid, work, sets), args.choose_on, max_oov_rate=args.max_oov_rate)
        install(chosen, args.out)
    print(f"chosen: {table_row(chosen, sets)} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
