"""The character vocabulary and the text normalisation shared by data, training, decoding and LM building."""

from __future__ import annotations

import re
import unicodedata

BLANK = "_"
# Index 0 is the CTC blank; the rest are the characters the model can emit.
LABELS: tuple[str, ...] = (BLANK, " ", "'") + tuple("abcdefghijklmnopqrstuvwxyz")
BLANK_INDEX = 0
SPACE_INDEX = 1
_CHAR_TO_INDEX = {char: index for index, char in enumerate(LABELS)}

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})
_NOT_IN_ALPHABET = re.compile(r"[^a-z' ]+")
_LONE_APOSTROPHES = re.compile(r"(?<![a-z])'|'(?![a-z])")
_SPACES = re.compile(r" +")


def normalize(text: str) -> str:
    """Lower-case ASCII letters, apostrophes inside words and single spaces: the model's alphabet."""
    text = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    text = text.encode("ascii", "ignore").decode("ascii").lower()
    text = text.replace("-", " ")
    text = _NOT_IN_ALPHABET.sub(" ", text)
    text = _LONE_APOSTROPHES.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def encode(text: str) -> list[int]:
    """Label indices of already-normalised text; raises ValueError on a character outside the alphabet."""
    try:
        return [_CHAR_TO_INDEX[char] for char in text]
    except KeyError as error:
        raise ValueError(f"character {error.args[0]!r} is not in the model's alphabet; normalize() the text first") from None


def decode(indices) -> str:
    """Characters for label indices, blanks dropped (no CTC collapsing: see asr.decoding for that)."""
    return "".join(LABELS[index] for index in indices if index != BLANK_INDEX)
