"""English sentences respelled in Czech orthography, so Festival's Czech voices can speak English.

Debian packages only five natural-sounding English speakers, too few for a model to learn what stays
the same across talkers. Festival's Czech voices (four recorded people: two men, a woman, a boy) read
Czech spelling almost letter by letter, and Czech spelling has a letter for nearly every English sound.
So: espeak-ng turns the English sentence into IPA (its en-us pronunciation), and each IPA symbol becomes
the Czech letters for the nearest Czech sound. The result is English with a Czech accent (no "th", no
"w", stress on the first syllable) in four new voices; the transcript stays the English sentence.
"""

from __future__ import annotations

import re
import subprocess

# espeak-ng en-us IPA -> Czech spelling. Longest symbols first (the list order is the match order).
# i-sounds are written y/ý: Czech softens d, t, n before i (ti = [ci]) but not before y.
IPA_TO_CZECH = (
    ("tʃ", "č"), ("dʒ", "dž"), ("eɪ", "ej"), ("oʊ", "ou"), ("aɪ", "aj"), ("aʊ", "au"), ("ɔɪ", "oj"),
    ("ɜː", "ér"), ("ɜ", "er"), ("ɚ", "er"), ("ɝ", "ér"), ("iː", "ý"), ("uː", "ú"), ("ɑː", "á"), ("ɔː", "ó"), ("oː", "ó"),
    ("aː", "á"), ("eː", "é"), ("ɛː", "é"),
    ("i", "y"), ("ɪ", "y"), ("ᵻ", "y"), ("ɛ", "e"), ("æ", "e"), ("ɑ", "a"), ("ɒ", "o"), ("ɔ", "o"), ("ʊ", "u"),
    ("u", "u"), ("ʌ", "a"), ("ə", "e"), ("ɐ", "a"), ("a", "a"), ("e", "e"), ("o", "o"),
    ("θ", "f"), ("ð", "d"), ("ʃ", "š"), ("ʒ", "ž"), ("ŋ", "n"), ("ɹ", "r"), ("ɾ", "d"), ("w", "u"), ("j", "j"),
    ("ɡ", "g"), ("ɬ", "l"), ("x", "ch"), ("ʔ", ""),
    ("p", "p"), ("b", "b"), ("t", "t"), ("d", "d"), ("k", "k"), ("f", "f"), ("v", "v"), ("s", "s"), ("z", "z"),
    ("h", "h"), ("m", "m"), ("n", "n"), ("l", "l"), ("r", "r"),
    ("ː", ""),  # length after a vowel the table writes short
)
# Marks that carry no sound of their own here: stress, syllabic and tie marks.
_IGNORED = re.compile("[ˈˌ̩‿]")
_LANGUAGE_SWITCH = re.compile(r"\([a-z-]+\)")  # espeak-ng marks words it reads in another language: "(fr)"


class RespellError(ValueError):
    """The sentence's pronunciation has a sound the table does not map."""


def english_ipa(text: str, timeout_s: float = 30.0) -> str:
    """espeak-ng's American English pronunciation of `text`, in IPA, one line."""
    result = subprocess.run(["espeak-ng", "-q", "-v", "en-us", "--ipa", text], capture_output=True, text=True,
                            timeout=timeout_s, check=True)
    return " ".join(result.stdout.split())


def czech_spelling(ipa: str) -> str:
    """The IPA as Czech letters; raises RespellError on a symbol the table lacks, so no sound is silently lost."""
    ipa = _IGNORED.sub("", _LANGUAGE_SWITCH.sub("", ipa))
    letters, position = [], 0
    while position < len(ipa):
        if ipa[position] == " ":
            letters.append(" ")
            position += 1
            continue
        for symbol, spelling in IPA_TO_CZECH:
            if ipa.startswith(symbol, position):
                letters.append(spelling)
                position += len(symbol)
                break
        else:
            raise RespellError(f"no Czech spelling for {ipa[position]!r} (U+{ord(ipa[position]):04X}) in {ipa!r}")
    return " ".join("".join(letters).split())


def respell_for_czech(text: str) -> str:
    """An English sentence as Czech spelling that a Czech voice reads as (accented) English."""
    return czech_spelling(english_ipa(text))
