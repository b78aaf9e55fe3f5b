"""Speaker-disjoint train / dev / test manifests from the real-speech corpora (`../shared/speech`).

    python -m asr.data.real_splits --speech ../shared/speech --out data/real

Real speech is the yardstick: the dev set chooses checkpoints and LM weights, the test set is only reported.
Each speaker lands in exactly one split, chosen by a hash of corpus and speaker id (stable on every machine, no
list to keep in sync). What each corpus gives (SPLIT_PLANS):
- commonvoice: volunteers on their own microphones, the closest to what the demo hears, so most of its speakers
  are held out (35 % dev, 35 % test); the rest train.
- speechocean762: non-native read speech, adults and children: 8 speakers dev, 8 test, the other 234 train.
- fsdd (spoken digits): 1 speaker dev, 1 test, 4 train; a held-out speaker gives at most 50 clips, so
  single-word clips do not swamp the held-out sentences.
- dc_tts_reader: its one speaker trains.

Writes OUT/{train,dev,test}.jsonl (all corpora) and OUT/{train,dev,test}-<corpus>.jsonl (one corpus each; the
Common Voice dev set is the native-speaker figure models are chosen by), then prints what each split holds.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from asr.data.manifest import write_manifest
from asr.data.real_speech import Utterance, read_corpus_manifest

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class SplitPlan:
    """How many of a corpus's speakers are held out: a share of them, or a fixed count, for dev and for test."""

    held_out_share: float = 0.0  # of the speakers, for dev and again for test
    held_out_speakers: int = 0  # used when the share is 0
    max_clips_per_held_out_speaker: int = 0  # 0: all of them

    def held_out_count(self, speakers: int) -> int:
        """Speakers for dev (and as many for test), leaving at least one to train when there are three or more."""
        wanted = round(self.held_out_share * speakers) if self.held_out_share else self.held_out_speakers
        return max(0, min(wanted, (speakers - 1) // 2))


SPLIT_PLANS = {
    "commonvoice": SplitPlan(held_out_share=0.35),
    "speechocean762": SplitPlan(held_out_speakers=8),
    "fsdd": SplitPlan(held_out_speakers=1, max_clips_per_held_out_speaker=50),
    "dc_tts_reader": SplitPlan(),
}


def stable_order(key: str) -> str:
    """A machine-independent pseudo-random sort key (Python's hash() is salted per process)."""
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


def split_corpus(utterances: list[Utterance], plan: SplitPlan) -> dict[str, list[Utterance]]:
    """train/dev/test of one corpus, no speaker in two of them."""
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utterance in utterances:
        by_speaker[utterance.speaker].append(utterance)
    speakers = sorted(by_speaker, key=lambda speaker: stable_order(f"{utterances[0].corpus}/{speaker}"))
    held_out = plan.held_out_count(len(speakers))
    assignment = {"dev": speakers[:held_out], "test": speakers[held_out : 2 * held_out], "train": speakers[2 * held_out :]}
    splits = {}
    for split, members in assignment.items():
        clips = []
        for speaker in sorted(members):
            own = sorted(by_speaker[speaker], key=lambda u: stable_order(u.entry.audio_filepath.name))
            if split != "train" and plan.max_clips_per_held_out_speaker:
                own = own[: plan.max_clips_per_held_out_speaker]
            clips.extend(sorted(own, key=lambda u: u.entry.audio_filepath.name))
        splits[split] = clips
    return splits


def build_splits(speech_root: Path, plans: dict[str, SplitPlan] = SPLIT_PLANS) -> dict[str, dict[str, list[Utterance]]]:
    """corpus -> split -> utterances, for every corpus folder under `speech_root` that has a manifest and a plan."""
    corpora = {}
    for corpus, plan in plans.items():
        manifest = speech_root / corpus / "manifest.jsonl"
        if not manifest.is_file():
            continue
        utterances, counts = read_corpus_manifest(manifest, corpus)
        if counts.unreadable_numbers or counts.empty_text:
            print(f"{corpus}: dropped {counts.unreadable_numbers} clips with digits no rule reads, "
                  f"{counts.empty_text} with no text", file=sys.stderr)
        if utterances:
            corpora[corpus] = split_corpus(utterances, plan)
    if not corpora:
        raise ValueError(f"{speech_root}: none of {', '.join(plans)} has a manifest.jsonl")
    return corpora


def write_splits(corpora: dict[str, dict[str, list[Utterance]]], out_dir: Path) -> list[str]:
    """Write the pooled and per-corpus manifests; returns one summary line per corpus and split."""
    summary = []
    for split in SPLITS:
        pooled = []
        for corpus, splits in corpora.items():
            clips = splits[split]
            pooled.extend(clips)
            if clips:
                write_manifest(out_dir / f"{split}-{corpus}.jsonl", [u.entry for u in clips])
            minutes = sum(u.entry.duration for u in clips) / 60
            summary.append(f"{split:5s} {corpus:15s} {len(clips):5d} clips {minutes:6.1f} min "
                           f"{len({u.speaker for u in clips}):4d} speakers")
        write_manifest(out_dir / f"{split}.jsonl", [u.entry for u in pooled])
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.data.real_splits", description=__doc__.splitlines()[0])
    parser.add_argument("--speech", type=Path, default=Path("../shared/speech"), help="folder of corpus folders")
    parser.add_argument("--out", type=Path, required=True, help="folder for the manifests")
    args = parser.parse_args(argv)
    try:
        corpora = build_splits(args.speech)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(write_splits(corpora, args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
