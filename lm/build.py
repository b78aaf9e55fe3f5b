"""Build a KenLM model for the decoder from English text: training text, ARPA, binary, unigram list, metadata.

    python -m lm.build --source fortunes --exclude-manifests data/real/dev*.jsonl data/real/test*.jsonl \\
        --out lm/default --order 4 -q 8                                 # the shipped default
    python -m lm.build --text-folder ../shared/lmtext --exclude-manifests data/real/dev*.jsonl data/real/test*.jsonl \\
        --out runs/lm/general --order 3 --prune 0 2 4 --vocabulary 100000 -q 6   # the general-English LM (lm/README.md)
    python -m lm.build --text my_corpus.txt --out my_lm

Writes DIR/lm.binary (trie), DIR/unigrams.txt (the word list pyctcdecode wants beside the model),
DIR/metadata.json (sources and licences, settings, counts, held-out perplexity), DIR/NOTICE when a
source's licence asks for attribution, and, with --keep-arpa, DIR/lm.arpa. Held-out sentences never
train the model: the fortune dev and test splits (--exclude-splits), the transcripts of the manifests
given to --exclude-manifests, and a fixed sample of each text folder's sentences (written to
--held-out-dir); the model's perplexity on each of them goes into the metadata.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from lm.corpus import CorpusStats, is_held_out, normalized_sentences, raw_sentences, read_text, without_held_out, write_training_text
from lm.perplexity import held_out_sentences, load_model, manifest_transcripts, perplexity
from lm.sources import SOURCES, TextFile, read_text_folder
from lm.tools import KENLM_MAX_ORDER, KenLMTools, ToolsError, ensure_tools

BINARY_NAME, ARPA_NAME, UNIGRAMS_NAME, METADATA_NAME, NOTICE_NAME = "lm.binary", "lm.arpa", "unigrams.txt", "metadata.json", "NOTICE"
SENTENCE_MARKERS = {"<s>", "</s>", "<unk>"}
REPO_ROOT = Path(__file__).resolve().parent.parent
HELD_OUT_DIR = REPO_ROOT / "data" / "lm-held-out"
# The share of each text-folder group kept out of training to measure perplexity on, per thousand sentences:
# about 2,000 sentences each from 107k Tatoeba lines and 1.5M book sentences.
HELD_OUT_PER_MILLE = {"tatoeba": 20, "gutenberg": 1}
# Licences that ask for attribution, and the attribution the NOTICE gives for them.
ATTRIBUTIONS = {
    "CC BY 2.0 FR": "Tatoeba (https://tatoeba.org), sentences by Tatoeba contributors, licensed under Creative Commons "
                    "Attribution 2.0 France (CC BY 2.0 FR, https://creativecommons.org/licenses/by/2.0/fr/)",
}


@dataclass(frozen=True)
class BuildOptions:
    order: int = 4
    prune: tuple[int, ...] = ()
    quantize: int | None = None
    vocabulary: int | None = None  # keep only the N most frequent words (lmplz --limit_vocab_file)
    exclude_splits: tuple[str, ...] = ("dev", "test")
    exclude_manifests: tuple[str, ...] = ()
    keep_arpa: bool = False
    memory: str = "1G"


@dataclass(frozen=True)
class TextInput:
    """Raw sentences of one input, how the metadata names its sources, and the share held out for perplexity."""

    name: str
    sources: tuple[str, ...]
    sentences: Callable[[], Iterable[str]]
    held_out_per_mille: int = 0


@dataclass
class TrainingText:
    """Normalised training lines and the held-out sets they were kept apart from, by name."""

    lines: list[str]
    evaluation: dict[str, list[str]]
    stats: CorpusStats
    sources: list[str]


@dataclass
class BuildReport:
    sources: list[str]
    options: dict
    corpus: dict
    vocabulary_size: int
    binary_bytes: int
    unigrams_bytes: int
    perplexity: dict = field(default_factory=dict)
    held_out: dict = field(default_factory=dict)


def text_file_sentences(paths: Iterable[Path]) -> Iterable[str]:
    """Raw sentences of plain-text files, read one at a time."""
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: text file not found")
        yield from raw_sentences(read_text(path))


def folder_inputs(files: Sequence[TextFile]) -> list[TextInput]:
    """One input per sub-folder of a text folder (books, Tatoeba), each with its held-out share."""
    groups: dict[str, list[TextFile]] = {}
    for file in files:
        groups.setdefault(file.group, []).append(file)
    return [
        TextInput(f"lmtext/{group}", tuple(file.description for file in members),
                  lambda members=members: (sentence for file in members for sentence in file.sentences()),
                  HELD_OUT_PER_MILLE.get(group, 0))
        for group, members in groups.items()
    ]


def evaluation_sets(options: BuildOptions) -> dict[str, list[str]]:
    """The held-out sets that exist before any text is read: fortune splits and manifests' transcripts, by name."""
    sets: dict[str, list[str]] = {}
    try:
        for split in options.exclude_splits:
            sets[f"fortunes/{split}"] = held_out_sentences(split)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}; or pass --exclude-splits with no split to train without the held-out filter") from None
    for manifest in map(Path, options.exclude_manifests):
        sets[f"{manifest.parent.name}/{manifest.stem}"] = manifest_transcripts(manifest)
    return sets


def prepare_text(inputs: Sequence[TextInput], options: BuildOptions) -> TrainingText:
    """Normalised training lines with every held-out sentence, and every copy or near-copy of one, removed."""
    stats, lines, evaluation = CorpusStats(), [], evaluation_sets(options)
    for text_input in inputs:
        normalized = normalized_sentences(text_input.sentences(), stats)
        if not text_input.held_out_per_mille:
            lines.extend(normalized)
            continue
        held: dict[str, None] = {}  # insertion-ordered set: each held-out sentence once, in text order
        for line in normalized:
            if is_held_out(line, text_input.held_out_per_mille):
                held[line] = None
            else:
                lines.append(line)
        evaluation[text_input.name] = list(held)
    held_out = [sentence for sentences in evaluation.values() for sentence in sentences]
    lines = without_held_out(lines, held_out, stats) if held_out else lines
    return TrainingText(lines, evaluation, stats, [source for text_input in inputs for source in text_input.sources])


def run_tool(command: Sequence[str | Path]) -> None:
    """Run a KenLM program; on failure raise with the program's own last words."""
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(str(command[0])).name} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")


def lmplz_command(tools: KenLMTools, text: Path, arpa: Path, options: BuildOptions, scratch: Path, vocabulary: Path | None = None) -> list[str | Path]:
    """lmplz arguments: modified Kneser-Ney of the given order, count pruning, a vocabulary limit, bounded memory."""
    command: list[str | Path] = [tools.lmplz, "-o", str(options.order), "-S", options.memory, "-T", scratch, "--discount_fallback"]
    if options.prune:
        command += ["--prune", *map(str, options.prune)]
    if vocabulary:
        command += ["--limit_vocab_file", vocabulary]
    return command + ["--text", text, "--arpa", arpa]


def build_binary_command(tools: KenLMTools, arpa: Path, binary: Path, options: BuildOptions, scratch: Path) -> list[str | Path]:
    """build_binary arguments: a trie, optionally with quantised probabilities and backoffs and compressed pointers."""
    command: list[str | Path] = [tools.build_binary, "-S", options.memory, "-T", scratch / "build_binary-"]
    if options.quantize:
        command += ["-q", str(options.quantize), "-b", str(options.quantize), "-a", "255"]
    return command + ["trie", arpa, binary]


def most_frequent_words(lines: Iterable[str], count: int) -> list[str]:
    """The `count` most frequent words of the training text (ties in alphabetical order, so builds repeat)."""
    counts = Counter(word for line in lines for word in line.split())
    return sorted(counts, key=lambda word: (-counts[word], word))[:count]


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
    if options.vocabulary is not None and options.vocabulary < 1:
        raise ValueError("--vocabulary takes a number of words, e.g. --vocabulary 80000")


def estimate(lines: list[str], out: Path, options: BuildOptions, tools: KenLMTools, stats: CorpusStats) -> Path:
    """Write training text, run lmplz and build_binary, write unigrams; returns the binary's path."""
    scratch = Path(tempfile.mkdtemp(prefix="lm-build-"))
    try:
        text, arpa, vocabulary = scratch / "train.txt", scratch / ARPA_NAME, None
        write_training_text(lines, text, stats)
        if options.vocabulary:
            vocabulary = scratch / "vocabulary.txt"
            vocabulary.write_text("\n".join(most_frequent_words(lines, options.vocabulary)) + "\n", encoding="utf-8")
        run_tool(lmplz_command(tools, text, arpa, options, scratch, vocabulary))
        run_tool(build_binary_command(tools, arpa, out / BINARY_NAME, options, scratch))
        (out / UNIGRAMS_NAME).write_text("".join(word + "\n" for word in arpa_unigrams(arpa)), encoding="utf-8")
        if options.keep_arpa:
            shutil.move(arpa, out / ARPA_NAME)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out / BINARY_NAME


def measure(binary: Path, evaluation: dict[str, list[str]]) -> dict:
    """Perplexity of the built model on every held-out set."""
    model = load_model(binary)
    return {name: {**asdict(result), "oov_rate": round(result.oov_rate, 5)} for name, sentences in evaluation.items() for result in [perplexity(model, sentences)]}


def notice_text(sources: Sequence[str]) -> str | None:
    """The attribution a NOTICE file must give for sources whose licence asks for one; None when none does."""
    attributed = {licence: [source for source in sources if licence in source] for licence in ATTRIBUTIONS}
    attributed = {licence: names for licence, names in attributed.items() if names}
    if not attributed:
        return None
    parts = ["This language model (n-gram statistics) was estimated from text that includes material licensed under\n"
             "licences that require attribution:\n"]
    for licence, names in attributed.items():
        parts.append(f"\n{ATTRIBUTIONS[licence]}.\nThe text came from these files:\n" + "".join(f"  - {name}\n" for name in names))
    parts.append("\nEvery source and its licence is listed in metadata.json.\n")
    return "".join(parts)


def write_held_out(evaluation: dict[str, list[str]], directory: Path) -> list[Path]:
    """Write the sampled held-out sets (a text folder's sentences) one sentence a line, for lm.perplexity."""
    written = []
    for name, sentences in evaluation.items():
        if name.startswith("lmtext/"):
            directory.mkdir(parents=True, exist_ok=True)
            written.append(directory / f"{name.replace('/', '-')}.txt")
            written[-1].write_text("".join(sentence + "\n" for sentence in sentences), encoding="utf-8")
    return written


def held_out_summary(name: str, sentences: list[str]) -> dict:
    """Size of a held-out set and, for a text folder's sample, how it was drawn."""
    summary = {"sentences": len(sentences), "words": sum(len(sentence.split()) for sentence in sentences)}
    group = name.removeprefix("lmtext/")
    if name.startswith("lmtext/") and group in HELD_OUT_PER_MILLE:
        summary["sample"] = f"{HELD_OUT_PER_MILLE[group]} in 1000 sentences, by SHA-1 of the normalised sentence (lm.corpus.is_held_out)"
    return summary


def build_prepared(text: TrainingText, out: Path, options: BuildOptions, tools: KenLMTools | None = None) -> BuildReport:
    """Estimate, binarise and measure a model from prepared training text into `out`, with its metadata."""
    validate(options)
    tools = tools or ensure_tools()
    if not text.lines:
        raise ValueError("no training sentences left after normalisation: check the input text")
    out.mkdir(parents=True, exist_ok=True)
    stats = CorpusStats(**{**asdict(text.stats), "sentences": 0, "words": 0})
    binary = estimate(text.lines, out, options, tools, stats)
    unigrams = out / UNIGRAMS_NAME
    report = BuildReport(
        sources=text.sources,
        options={**asdict(options), "kenlm_tools": "lmplz (modified Kneser-Ney) + build_binary trie"},
        corpus=asdict(stats),
        vocabulary_size=len(unigrams.read_text(encoding="utf-8").split()),
        binary_bytes=binary.stat().st_size,
        unigrams_bytes=unigrams.stat().st_size,
        perplexity=measure(binary, text.evaluation),
        held_out={name: held_out_summary(name, sentences) for name, sentences in text.evaluation.items()},
    )
    (out / METADATA_NAME).write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    notice = notice_text(text.sources)
    if notice:
        (out / NOTICE_NAME).write_text(notice, encoding="utf-8")
    else:
        (out / NOTICE_NAME).unlink(missing_ok=True)
    return report


def build_lm(raw: Iterable[str], sources: list[str], out: Path, options: BuildOptions, tools: KenLMTools | None = None) -> BuildReport:
    """The whole pipeline from raw sentences of one input to a ready-to-ship LM directory."""
    validate(options)
    text = prepare_text([TextInput("text", tuple(sources), lambda: raw)], options)
    return build_prepared(text, out, options, tools)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """What to train on and what to hold out: shared by lm.build and lm.sweep."""
    parser.add_argument("--text", type=Path, nargs="+", default=[], help="plain-text files of running English prose")
    parser.add_argument("--text-folder", type=Path, default=None, help="a folder of text files listed in its SOURCES.tsv, e.g. ../shared/lmtext")
    parser.add_argument("--fortunes", action="store_true", help="the train split of the fortune sentences (same as --source fortunes)")
    parser.add_argument("--source", nargs="+", default=[], choices=sorted(SOURCES), help="named texts from Debian packages")
    parser.add_argument("--exclude-splits", nargs="*", default=list(BuildOptions.exclude_splits), choices=["dev", "test"], help="held-out fortune splits kept out of training (default: dev test)")
    parser.add_argument("--exclude-manifests", type=Path, nargs="+", default=[], metavar="MANIFEST", help="JSON-lines manifests whose transcripts are kept out of training and measured")
    parser.add_argument("--held-out-dir", type=Path, default=HELD_OUT_DIR, help="where the text folder's held-out sentences are written (default: data/lm-held-out)")
    parser.add_argument("--memory", default=BuildOptions.memory, help="memory for lmplz and build_binary sorting (default %(default)s)")


def check_inputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not (args.text or args.text_folder or args.fortunes or args.source):
        parser.error("give --text FILE..., --text-folder DIR, --fortunes or --source NAME...")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lm.build", description=__doc__.splitlines()[0])
    add_input_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--order", type=int, default=BuildOptions.order, help="n-gram order (default %(default)s)")
    parser.add_argument("--prune", type=int, nargs="+", default=[], help="lmplz count thresholds per order, e.g. 0 1 1")
    parser.add_argument("--quantize", "-q", type=int, default=None, metavar="BITS", help="quantise probabilities and backoffs to BITS bits")
    parser.add_argument("--vocabulary", type=int, default=None, metavar="WORDS", help="keep only the WORDS most frequent words")
    parser.add_argument("--keep-arpa", action="store_true", help=f"also write DIR/{ARPA_NAME}")
    args = parser.parse_args(argv)
    check_inputs(parser, args)
    return args


def options_from(args: argparse.Namespace) -> BuildOptions:
    return BuildOptions(args.order, tuple(args.prune), args.quantize, args.vocabulary, tuple(args.exclude_splits),
                        tuple(str(path) for path in args.exclude_manifests), args.keep_arpa, args.memory)


def inputs_from(args: argparse.Namespace) -> list[TextInput]:
    """Every requested input: named Debian texts, a text folder's groups, plain-text files."""
    names = sorted(set(args.source) | ({"fortunes"} if args.fortunes else set()))
    inputs = [TextInput(name, (SOURCES[name].description,), SOURCES[name].sentences) for name in names]
    if args.text_folder:
        inputs += folder_inputs(read_text_folder(args.text_folder))
    if args.text:
        inputs.append(TextInput("text", tuple(f"text file {path.name}" for path in args.text), lambda: text_file_sentences(args.text)))
    return inputs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    options = options_from(args)
    try:
        validate(options)
        text = prepare_text(inputs_from(args), options)
        write_held_out(text.evaluation, args.held_out_dir)
        report = build_prepared(text, args.out, options)
    except (OSError, ValueError, RuntimeError, ToolsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(report), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
