"""Build a KenLM model for the decoder from English text: training text, ARPA, binary, unigram list, metadata.

    python -m lm.build --fortunes --out lm/default --order 4 --prune 0 1 1 --quantize 8
    python -m lm.build --text my_corpus.txt --out my_lm

Writes DIR/lm.binary (trie), DIR/unigrams.txt (the word list pyctcdecode wants beside the
model), DIR/metadata.json (sources, settings, counts, held-out perplexity) and, with
--keep-arpa, DIR/lm.arpa. Sentences of the held-out fortune splits (dev and test: the synthetic
test set speaks them) are removed from the training text unless --exclude-splits says otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from lm.corpus import CorpusStats, normalized_sentences, raw_sentences, read_text, without_held_out, write_training_text
from lm.perplexity import held_out_sentences, load_model, perplexity
from lm.sources import SOURCES
from lm.tools import KENLM_MAX_ORDER, KenLMTools, ToolsError, ensure_tools

BINARY_NAME, ARPA_NAME, UNIGRAMS_NAME, METADATA_NAME = "lm.binary", "lm.arpa", "unigrams.txt", "metadata.json"
SENTENCE_MARKERS = {"<s>", "</s>", "<unk>"}


@dataclass(frozen=True)
class BuildOptions:
    order: int = 4
    prune: tuple[int, ...] = ()
    quantize: int | None = None
    exclude_splits: tuple[str, ...] = ("dev", "test")
    keep_arpa: bool = False
    memory: str = "1G"


@dataclass
class BuildReport:
    sources: list[str]
    options: dict
    corpus: dict
    vocabulary_size: int
    binary_bytes: int
    unigrams_bytes: int
    perplexity: dict = field(default_factory=dict)


def text_file_sentences(paths: Iterable[Path]) -> Iterable[str]:
    """Raw sentences of plain-text files, read one at a time."""
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: text file not found")
        yield from raw_sentences(read_text(path))


def training_lines(raw: Iterable[str], exclude_splits: Sequence[str], stats: CorpusStats) -> list[str]:
    """Normalised training sentences with every held-out sentence, and every copy or near-copy of one, removed."""
    lines = list(normalized_sentences(raw, stats))
    try:
        held_out = [sentence for split in exclude_splits for sentence in held_out_sentences(split)]
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}; or pass --exclude-splits with no split to train without the held-out filter") from None
    return without_held_out(lines, held_out, stats) if held_out else lines


def run_tool(command: Sequence[str | Path]) -> None:
    """Run a KenLM program; on failure raise with the program's own last words."""
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(str(command[0])).name} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")


def lmplz_command(tools: KenLMTools, text: Path, arpa: Path, options: BuildOptions, scratch: Path) -> list[str | Path]:
    """lmplz arguments: modified Kneser-Ney of the given order, count pruning, bounded memory."""
    command: list[str | Path] = [tools.lmplz, "-o", str(options.order), "-S", options.memory, "-T", scratch, "--discount_fallback"]
    if options.prune:
        command += ["--prune", *map(str, options.prune)]
    return command + ["--text", text, "--arpa", arpa]


def build_binary_command(tools: KenLMTools, arpa: Path, binary: Path, options: BuildOptions, scratch: Path) -> list[str | Path]:
    """build_binary arguments: a trie, optionally with quantised probabilities and backoffs and compressed pointers."""
    command: list[str | Path] = [tools.build_binary, "-S", options.memory, "-T", scratch / "build_binary-"]
    if options.quantize:
        command += ["-q", str(options.quantize), "-b", str(options.quantize), "-a", "255"]
    return command + ["trie", arpa, binary]


def arpa_unigrams(arpa: Path) -> list[str]:
    """The words of an ARPA file's 1-gram section, sentence markers left out, sorted."""
    words, in_unigrams = [], False
    with arpa.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("\\"):
                if in_unigrams:
                    break
                in_unigrams = line.strip() == "\\1-grams:"
            elif in_unigrams and line.strip():
                words.append(line.split()[1])
    return sorted(word for word in words if word not in SENTENCE_MARKERS)


def binary_vocabulary(binary: Path) -> list[str]:
    """The words stored at the end of a KenLM binary (build_binary keeps them unless given -v), markers left out."""
    data = binary.read_bytes()
    start = data.rfind(b"<unk>\0")
    if start == -1:
        raise ValueError(f"{binary}: no vocabulary at the end of the file (built with build_binary -v?)")
    words = data[start:].split(b"\0")
    return sorted(word.decode("utf-8") for word in words if word and word.decode("utf-8") not in SENTENCE_MARKERS)


def validate(options: BuildOptions) -> None:
    """Reject settings lmplz would refuse, with a sentence a person can act on."""
    if not 1 <= options.order <= KENLM_MAX_ORDER:
        raise ValueError(f"--order must be between 1 and {KENLM_MAX_ORDER} (the tools were built with KENLM_MAX_ORDER={KENLM_MAX_ORDER})")
    if options.prune and (options.prune[0] != 0 or len(options.prune) > options.order or list(options.prune) != sorted(options.prune)):
        raise ValueError("--prune takes one count threshold per order, non-decreasing, starting with 0 (unigrams are never pruned), e.g. --prune 0 1 1")
    if options.quantize is not None and not 2 <= options.quantize <= 25:
        raise ValueError("--quantize takes a number of bits between 2 and 25, e.g. -q 8")


def estimate(lines: list[str], out: Path, options: BuildOptions, tools: KenLMTools, stats: CorpusStats) -> Path:
    """Write training text, run lmplz and build_binary, write unigrams; returns the ARPA path (kept or temporary)."""
    scratch = Path(tempfile.mkdtemp(prefix="lm-build-"))
    try:
        text, arpa = scratch / "train.txt", scratch / ARPA_NAME
        write_training_text(lines, text, stats)
        run_tool(lmplz_command(tools, text, arpa, options, scratch))
        run_tool(build_binary_command(tools, arpa, out / BINARY_NAME, options, scratch))
        (out / UNIGRAMS_NAME).write_text("".join(word + "\n" for word in arpa_unigrams(arpa)), encoding="utf-8")
        if options.keep_arpa:
            shutil.move(arpa, out / ARPA_NAME)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out / BINARY_NAME


def measure(binary: Path, splits: Sequence[str]) -> dict:
    """Held-out perplexity of the built model on each excluded fortune split."""
    model = load_model(binary)
    return {split: {**asdict(result), "oov_rate": round(result.oov_rate, 5)} for split in splits for result in [perplexity(model, held_out_sentences(split))]}


def build_lm(raw: Iterable[str], sources: list[str], out: Path, options: BuildOptions, tools: KenLMTools | None = None) -> BuildReport:
    """The whole pipeline from raw sentences to a ready-to-ship LM directory."""
    validate(options)
    tools = tools or ensure_tools()
    stats = CorpusStats()
    lines = training_lines(raw, options.exclude_splits, stats)
    if not lines:
        raise ValueError("no training sentences left after normalisation: check the input text")
    out.mkdir(parents=True, exist_ok=True)
    binary = estimate(lines, out, options, tools, stats)
    unigrams = out / UNIGRAMS_NAME
    report = BuildReport(
        sources=sources,
        options={**asdict(options), "kenlm_tools": "lmplz (modified Kneser-Ney) + build_binary trie"},
        corpus=asdict(stats),
        vocabulary_size=len(unigrams.read_text(encoding="utf-8").split()),
        binary_bytes=binary.stat().st_size,
        unigrams_bytes=unigrams.stat().st_size,
        perplexity=measure(binary, options.exclude_splits),
    )
    (out / METADATA_NAME).write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lm.build", description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, nargs="+", default=[], help="plain-text files of running English prose")
    parser.add_argument("--fortunes", action="store_true", help="the train split of the fortune sentences (same as --source fortunes)")
    parser.add_argument("--source", nargs="+", default=[], choices=sorted(SOURCES), help="named texts from Debian packages")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--order", type=int, default=BuildOptions.order, help="n-gram order (default %(default)s)")
    parser.add_argument("--prune", type=int, nargs="+", default=[], help="lmplz count thresholds per order, e.g. 0 1 1")
    parser.add_argument("--quantize", "-q", type=int, default=None, metavar="BITS", help="quantise probabilities and backoffs to BITS bits")
    parser.add_argument("--exclude-splits", nargs="*", default=list(BuildOptions.exclude_splits), choices=["dev", "test"], help="held-out fortune splits kept out of training (default: dev test)")
    parser.add_argument("--keep-arpa", action="store_true", help=f"also write DIR/{ARPA_NAME}")
    parser.add_argument("--memory", default=BuildOptions.memory, help="memory for lmplz and build_binary sorting (default %(default)s)")
    args = parser.parse_args(argv)
    if not (args.text or args.fortunes or args.source):
        parser.error("give --text FILE..., --fortunes or --source NAME...")
    return args


def raw_from_args(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Raw sentences of every requested input, and a description of each input for the metadata."""
    names = sorted(set(args.source) | ({"fortunes"} if args.fortunes else set()))
    raw = [sentence for name in names for sentence in SOURCES[name].sentences()]
    raw += list(text_file_sentences(args.text))
    described = [SOURCES[name].description for name in names]
    return raw, described + [f"text file {path.name}" for path in args.text]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = BuildOptions(args.order, tuple(args.prune), args.quantize, tuple(args.exclude_splits), args.keep_arpa, args.memory)
    try:
        raw, sources = raw_from_args(args)
        report = build_lm(raw, sources, args.out, options)
    except (OSError, ValueError, RuntimeError, ToolsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
