"""Reading audio files with soundfile, with size limits and one-sentence errors for the user."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile

from asr.features import MAX_INPUT_RATE, MIN_INPUT_RATE, AudioError

MAX_FILE_BYTES = 1 << 30  # 1 GiB
MAX_SECONDS = 4 * 3600.0
_READ_ERRORS = (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError)


def audio_info(path: str | Path, max_bytes: int = MAX_FILE_BYTES, max_seconds: float = MAX_SECONDS):
    """soundfile's info for a file within the limits; AudioError names the file and the problem."""
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
    except _READ_ERRORS as error:
        raise AudioError(f"{path}: not a readable audio file ({_first_line(error)})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not MIN_INPUT_RATE <= info.samplerate <= MAX_INPUT_RATE:  # refused before reading, as the Stream would refuse every chunk
        raise AudioError(f"{path}: sample rate {info.samplerate} Hz is outside the supported {MIN_INPUT_RATE}-{MAX_INPUT_RATE} Hz")
    if info.frames / info.samplerate > max_seconds:
        raise AudioError(f"{path}: {_duration(info.frames / info.samplerate)} of audio is over the {_duration(max_seconds)} limit")
    return info


def load_audio(path: str | Path, max_bytes: int = MAX_FILE_BYTES, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int]:
    """(samples as float32, shape (n,) or (n, channels), sample rate); AudioError names the file and the problem."""
    path = Path(path)
    audio_info(path, max_bytes, max_seconds)
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    except _READ_ERRORS as error:
        raise AudioError(f"{path}: not a readable audio file ({_first_line(error)})") from None
    if samples.size == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not np.isfinite(samples).all():  # float files can hold them; refused whole, as a stream would refuse each such chunk
        raise AudioError(f"{path}: contains NaN or infinite samples")
    return samples, int(rate)


def audio_blocks(path: str | Path, block_frames: int, max_bytes: int = MAX_FILE_BYTES,
                 max_seconds: float = MAX_SECONDS) -> tuple[int, Iterator[np.ndarray]]:
    """(sample rate, float32 blocks of `block_frames`): a long file read piece by piece, so memory stays bounded."""
    path = Path(path)
    rate = int(audio_info(path, max_bytes, max_seconds).samplerate)

    def blocks() -> Iterator[np.ndarray]:
        delivered = 0
        try:
            with soundfile.SoundFile(str(path)) as audio:
                # Sequential reads only: soundfile otherwise asks for the position before every read, and that
                # seek makes libsndfile's MP3 decoder resync mid-stream (glitches, and libmpg123 noise on stderr).
                audio.seekable = lambda: False
                while len(block := audio.read(block_frames, dtype="float32", always_2d=False)):
                    delivered += len(block)
                    yield block
        except _READ_ERRORS as error:
            raise AudioError(f"{path}: not a readable audio file ({_first_line(error)})") from None
        if delivered == 0:
            raise AudioError(f"{path}: contains no audio samples")

    return rate, blocks()


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:120]
