"""asr/text.py: the alphabet, normalisation, and numbers spelled out as people say them."""

from __future__ import annotations

import pytest

from asr.text import LABELS, decode, encode, normalize, normalize_spoken, spell_numbers


def test_normalize_keeps_only_the_model_alphabet():
    assert normalize("\u201cDon\u2019t  PANIC,\u201d she said -- well-known caf\u00e9!") == "don't panic she said well known cafe"
    assert normalize("'quoted' words") == "quoted words"


def test_encode_and_decode_round_trip_and_reject_unnormalised_text():
    text = "it's a test"
    assert decode(encode(text)) == text
    assert all(0 < index < len(LABELS) for index in encode(text))
    with pytest.raises(ValueError, match="normalize"):
        encode("Capital")


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("In 1984 he left.", "in nineteen eighty four he left"),  # four digits in the year range read as a year
        ("in 2024", "in twenty twenty four"),
        ("The year 1066.", "the year one thousand and sixty six"),  # outside the year range: a plain number
        ("Two hundred: 200.", "two hundred two hundred"),
        ("I owe him 1,000 dollars.", "i owe him one thousand dollars"),
        ("He got 90% in English.", "he got ninety percent in english"),
        ("Today is the 3rd.", "today is the third"),
        ("It was $5.50.", "it was five dollars fifty cents"),
        ("pi is 3.14", "pi is three point one four"),
        ("Room 101.", "room one hundred and one"),
        ("No digits here.", "no digits here"),
    ],
)
def test_normalize_spoken_spells_numbers_out(written, spoken):
    assert normalize_spoken(written) == spoken


@pytest.mark.parametrize("unreadable", ["An mp3 file.", "The 4x4 truck.", "the 3.5th time"])
def test_digits_no_rule_reads_make_the_text_unusable(unreadable):
    assert normalize_spoken(unreadable) is None
    assert any(char.isdigit() for char in spell_numbers(unreadable))


def test_spell_numbers_leaves_text_without_numbers_alone():
    assert spell_numbers("Nothing to see, here.") == "Nothing to see, here."
