"""The command line: python -m asr {transcribe,evaluate,tune-lm,train,synth,librispeech,commonvoice,export,recode} ..."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module with add_arguments/run, help); modules import lazily so `transcribe` starts fast.
COMMANDS = {
    "transcribe": ("asr.transcribe", "transcribe audio files (greedy and beam search)"),
    "evaluate": ("asr.evaluate", "WER/CER and real-time factor on a manifest"),
    "tune-lm": ("asr.tune_lm", "search LM weight alpha and word bonus beta on a dev manifest"),
    "train": ("asr.train", "train a model (single process or under torchrun)"),
    "synth": ("asr.data.synth", "build the synthetic multi-voice corpus"),
    "librispeech": ("asr.data.librispeech", "write a manifest for a LibriSpeech-layout folder"),
    "commonvoice": ("asr.data.real_speech", "write a manifest for one split of a Common Voice release"),
    "export": ("asr.export", "write a shippable (float16) copy of a trained checkpoint"),
    "recode": ("asr.data.recode", "re-encode a manifest's audio as Ogg Opus (a small copy of a corpus)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m asr", description="Streaming Deep Speech 2 speech recognition")
    subparsers = parser.add_subparsers(dest="command", required=True)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text)
        if name == chosen:  # only the chosen command's module is imported
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
