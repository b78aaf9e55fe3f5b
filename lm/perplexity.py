"""Perplexity of a KenLM model on held-out sentences, with and without out-of-vocabulary words.

`python -m lm.perplexity LM [FILE...]` scores the files' normalised lines (a `.jsonl` file is read as a
manifest: its transcripts), or, with no file, the dev split of the fortune sentences (the split the LM
never sees in training).
Both figures count the end-of-sentence token, as KenLM's and SRILM's do; "without OOVs"
leaves the unknown words' tokens out of sum and count, SRILM's `ppl` convention.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import kenlm

from asr.text import normalize


@dataclass(frozen=True)
class Perplexity:
    sentences: int
    words: int
    oovs: int
    with_oovs: float
    without_oovs: float

    @property
    def oov_rate(self) -> float:
        return self.oovs / self.words if self.words else 0.0


def perplexity(model: kenlm.Model, sentences: Iterable[str]) -> Perplexity:
    """Corpus-level perplexity over normalised sentences (one sentence, one </s>)."""
    sentence_count = words = oovs = 0
    total = known_total = 0.0
    for sentence in sentences:
        scores = list(model.full_scores(sentence, bos=True, eos=True))
        sentence_count += 1
        words += len(scores) - 1
        for log10_prob, _, is_oov in scores:
            total += log10_prob
            if is_oov:
                oovs += 1
            else:
                known_total += log10_prob
    tokens = words + sentence_count
    return Perplexity(
        sentences=sentence_count,
        words=words,
        oovs=oovs,
        with_oovs=10 ** (-total / tokens) if tokens else float("nan"),
        without_oovs=10 ** (-known_total / (tokens - oovs)) if tokens > oovs else float("nan"),
    )


def held_out_sentences(split: str = "dev") -> list[str]:
    """The fortune sentences of one held-out split: what the fortunes LM was chosen on."""
    from asr.data.sentences import sentences_by_split

    return sentences_by_split()[split]


def manifest_transcripts(path: Path) -> list[str]:
    """The transcripts of a JSON-lines manifest (already in the model's alphabet)."""
    from asr.data.manifest import read_manifest

    return [entry.text for entry in read_manifest(path)]


def file_sentences(paths: Sequence[Path]) -> list[str]:
    """Normalised non-empty lines of text files, and the transcripts of manifests (`.jsonl`)."""
    lines = []
    for path in paths:
        lines += manifest_transcripts(path) if path.suffix == ".jsonl" else path.read_text(encoding="utf-8").splitlines()
    return [line for line in map(normalize, lines) if line]


def load_model(path: Path) -> kenlm.Model:
    """Load an ARPA or KenLM binary file, with a one-line error naming the file when it is unusable."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: language model file not found")
    try:
        return kenlm.Model(str(path))
    except (OSError, RuntimeError) as error:
        raise ValueError(f"{path}: not a readable KenLM model ({error})") from None


def format_report(result: Perplexity, label: str) -> str:
    """One readable line for people."""
    return (
        f"{label}: {result.sentences} sentences, {result.words} words, OOV rate {result.oov_rate:.2%}; "
        f"perplexity {result.with_oovs:.1f} with OOVs, {result.without_oovs:.1f} without"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lm.perplexity", description=__doc__.splitlines()[0])
    parser.add_argument("lm", type=Path, help="ARPA or KenLM binary file")
    parser.add_argument("text", type=Path, nargs="*", help="text files, one sentence a line, or .jsonl manifests (default: the fortune dev split)")
    parser.add_argument("--split", default="dev", choices=["dev", "test"], help="held-out fortune split when no text file is given")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.lm)
        sentences = file_sentences(args.text) if args.text else held_out_sentences(args.split)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    result = perplexity(model, sentences)
    label = ", ".join(map(str, args.text)) if args.text else f"fortunes {args.split} split"
    print(json.dumps({**asdict(result), "oov_rate": result.oov_rate}) if args.json else format_report(result, label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
