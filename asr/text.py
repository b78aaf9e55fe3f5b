"""The character vocabulary and the text normalisation shared by data, training, decoding and LM building."""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

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


# A number as written in running text: optional currency sign, digits (with thousands commas), an optional decimal
# part, an optional ordinal suffix or percent sign. Digits glued to letters ("mp3", "4x4") do not match: no rule
# says how those are read, so they are left for the caller to reject.
_NUMBER = re.compile(r"(?<![\w.,])(\$)?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:(st|nd|rd|th)\b|(%)|\b)(?![.,]?\d)", re.IGNORECASE)
_DIGIT = re.compile(r"[0-9]")
# Four-digit numbers in this range are read as years ("nineteen eighty four"), which is how running text uses them.
YEAR_RANGE = range(1100, 2100)


def _spoken_number(match: re.Match) -> str:
    from num2words import num2words  # imported here: only data and LM building spell numbers, never a live stream

    dollar, digits, fraction, ordinal, percent = match.groups()
    value = Decimal(digits.replace(",", "") + (fraction or ""))
    if dollar and fraction:
        return f" {num2words(value, to='currency', currency='USD')} "
    if dollar:  # whole dollars: num2words' currency form would add "zero cents", which nobody says
        return f" {num2words(int(value))} {'dollar' if int(value) == 1 else 'dollars'} "
    if ordinal and not fraction:
        return f" {num2words(int(value), to='ordinal')} "
    if ordinal:  # "3.5th" is not a number anyone reads; leave its digits for the caller to reject
        return match.group(0)
    if "," not in digits and not fraction and not percent and len(digits) == 4 and int(digits) in YEAR_RANGE:
        words = num2words(int(digits), to="year")
    else:
        words = num2words(value)
    return f" {words}{' percent' if percent else ''} "


def spell_numbers(text: str) -> str:
    """Numbers written with digits as the words people say for them: '1984' -> 'nineteen eighty-four', '2nd' -> 'second'."""
    return _NUMBER.sub(_spoken_number, text)


def normalize_spoken(text: str) -> str | None:
    """normalize() after spelling numbers out; None when digits are left that no rule reads, so the caller drops the
    text instead of training on words with the number silently deleted."""
    spelled = spell_numbers(text)
    if _DIGIT.search(spelled):
        return None
    return normalize(spelled)
