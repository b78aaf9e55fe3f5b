"""Reading audio files with soundfile, with size limits and one-sentence errors for the user."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from asr.features import AudioError

MAX_FILE_BYTES = 1 << 30  # 1 GiB
MAX_SECONDS = 4 * 3600.0


def load_audio(path: str | Path, max_bytes: int = MAX_FILE_BYTES, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int]:
    """(samples as float32, shape (n,) or (n, channels), sample rate); AudioError names the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if not path.is_file():
        raise AudioError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    if size > max_bytes:
        raise AudioError(f"{path}: file is {size / 2**20:.0f} MB, over the {max_bytes / 2**20:.0f} MB limit")
    try:
        info = soundfile.info(str(path))
        if info.frames <= 0 or info.samplerate <= 0:
            raise AudioError(f"{path}: contains no audio samples")
        if info.frames / info.samplerate > max_seconds:
            raise AudioError(f"{path}: {info.frames / info.samplerate / 3600:.1f} h of audio is over the {max_seconds / 3600:.1f} h limit")
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    except AudioError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as error:
        raise AudioError(f"{path}: not a readable audio file ({_first_line(error)})") from None
    if samples.size == 0:
        raise AudioError(f"{path}: contains no audio samples")
    return samples, int(rate)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:120]
