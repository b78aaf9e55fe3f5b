"""lm/: corpus preparation, Gutenberg cleaning, text folders, held-out filtering, perplexity with known answers, tiny
real builds, the shipped default LM."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import kenlm
import pytest

from asr.text import normalize
from lm import DEFAULT_LM_DIR
from lm.build import (
    BuildOptions, BuildReport, TextInput, arpa_unigrams, binary_vocabulary, build_lm, main as build_main,
    most_frequent_words, notice_text, prepare_text, text_file_sentences, validate,
)
from lm.corpus import CorpusStats, is_held_out, leaking_lines, normalized_sentences, raw_sentences
from lm.gutenberg import book_text, prose_paragraphs
from lm.perplexity import file_sentences, perplexity
from lm.sources import osis_to_text, read_text_folder
from lm.sweep import Candidate, best
from lm.tools import ToolsError, check_build_prerequisites, ensure_tools, find_tools

TINY_CORPUS = """The cat sat on the mat.  The dog sat on the log!
The cat saw the dog.

The dog saw the cat on the mat.   A cat is not a dog.
It cost 5 dollars. The cat had an mp3 player.
"""

# Two words, the markers and one bigram (KenLM loads nothing smaller), log10 probabilities chosen to add up easily.
HAND_ARPA = """\\data\\
ngram 1=5
ngram 2=1

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t0
-0.5\t</s>
-0.5\tyes\t0
-1.0\tno\t0

\\2-grams:
-0.25\t<s> yes

\\end\\
"""


@pytest.fixture(scope="session")
def kenlm_tools():
    """lmplz and build_binary: the cached build, built here once if this machine has never built them."""
    try:
        return find_tools()
    except ToolsError:
        pass
    try:
        check_build_prerequisites()
    except ToolsError as error:
        pytest.skip(f"KenLM tools are not built and cannot be built here: {error}")
    return ensure_tools()


@pytest.fixture(scope="session")
def tiny_lm(kenlm_tools, tmp_path_factory) -> Path:
    """A trigram LM from TINY_CORPUS written through the command line, ARPA kept."""
    corpus = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    corpus.write_text(TINY_CORPUS, encoding="utf-8")
    out = tmp_path_factory.mktemp("tiny_lm")
    assert build_main(["--text", str(corpus), "--out", str(out), "--order", "3", "--keep-arpa", "--exclude-splits"]) == 0
    return out


def test_corpus_file_becomes_one_normalised_sentence_a_line(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\u201cDon\u2019t panic,\u201d he said.  It's\nfine -- really!\n\nNew paragraph\nhere. See 3 cats.\n", encoding="utf-8")
    stats = CorpusStats()
    lines = list(normalized_sentences(text_file_sentences([corpus]), stats))
    assert lines == ["don't panic he said", "it's fine really", "new paragraph here", "see three cats"]
    assert (stats.with_numbers_spelled, stats.dropped_with_digits) == (1, 0)
    assert all(normalize(line) == line for line in lines)


def test_numbers_are_spelled_and_sentences_with_unreadable_digits_dropped_and_counted():
    stats = CorpusStats()
    raw = ["In 1984 they moved to 221B Baker Street.", "In 1984 they moved.", "Two hundred, or 200.", "An mp3 file.", "No numbers."]
    assert list(normalized_sentences(raw, stats)) == ["in nineteen eighty four they moved", "two hundred or two hundred", "no numbers"]
    assert (stats.with_numbers_spelled, stats.dropped_with_digits) == (2, 2)


def test_raw_sentences_split_after_end_punctuation_before_a_capital():
    assert list(raw_sentences("Mr. smith left. Then he ate!  Why? no idea")) == ["Mr. smith left.", "Then he ate!", "Why? no idea"]


def test_raw_sentences_do_not_split_after_titles_and_initials():
    text = "Mr. Bennet met Mrs. Long and Dr. J. Watson at St. Paul's. They talked."
    assert list(raw_sentences(text)) == ["Mr. Bennet met Mrs. Long and Dr. J. Watson at St. Paul's.", "They talked."]


def test_held_out_sentences_and_near_copies_are_found():
    held_out = ["a weak person who yields to the temptation of denying himself a pleasure", "go away now"]
    lines = [
        "abstainer n a weak person who yields to the temptation",  # six words in a row shared: a near copy
        "a weak person who yields",  # five shared words only: ordinary overlap
        "please go away now said the man",  # contains a held-out sentence shorter than the n-gram size
        "they go away nowhere",  # 'go away now' but not as whole words
        "nothing in common here at all today",
    ]
    assert leaking_lines(lines, held_out) == {0, 2}


def test_one_and_two_word_held_out_sentences_remove_only_identical_lines():
    held_out = ["zero", "thank you", "four six two"]
    lines = ["zero", "the count went down to zero", "thank you very much", "thank you", "she said four six two twice"]
    assert leaking_lines(lines, held_out) == {0, 3, 4}


def test_held_out_sample_is_a_stable_share_decided_by_the_sentence_alone():
    sentences = [f"sentence number {index}" for index in range(20000)]
    sampled = [sentence for sentence in sentences if is_held_out(sentence, 20)]
    assert 300 < len(sampled) < 500  # 2 % of 20,000
    assert sampled == [sentence for sentence in sentences if is_held_out(sentence, 20)]
    assert not any(is_held_out(sentence, 0) for sentence in sentences)


def test_perplexity_with_and_without_oovs_on_a_hand_made_model(tmp_path):
    arpa = tmp_path / "hand.arpa"
    arpa.write_text(HAND_ARPA, encoding="ascii")
    model = kenlm.Model(str(arpa))
    result = perplexity(model, ["yes no", "yes maybe"])
    # Tokens: yes no </s> yes maybe(<unk>) </s>; log10 sum -0.25-1-0.5 -0.25-1-0.5 = -3.5 over 6 tokens,
    # and -2.5 over 5 without the unknown word.
    assert (result.sentences, result.words, result.oovs) == (2, 4, 1)
    assert result.with_oovs == pytest.approx(10 ** (3.5 / 6))
    assert result.without_oovs == pytest.approx(10 ** (2.5 / 5))
    assert result.oov_rate == pytest.approx(0.25)


def test_arpa_unigrams_leave_out_sentence_markers(tmp_path):
    arpa = tmp_path / "hand.arpa"
    arpa.write_text(HAND_ARPA, encoding="ascii")
    assert arpa_unigrams(arpa) == ["no", "yes"]


@pytest.mark.parametrize(
    "options",
    [BuildOptions(order=7), BuildOptions(order=3, prune=(1, 1)), BuildOptions(order=2, prune=(0, 1, 1)), BuildOptions(quantize=1)],
)
def test_settings_lmplz_would_refuse_are_rejected_with_a_reason(options):
    with pytest.raises(ValueError, match="--(order|prune|quantize)"):
        validate(options)


def fake_candidate(order: int, megabytes: float, dev_perplexity: float, unigram_megabytes: float = 0.5, oov_rate: float = 0.01) -> Candidate:
    measured = {"real/dev": {"with_oovs": dev_perplexity, "oov_rate": oov_rate}}
    report = BuildReport([], {}, {}, 0, int(megabytes * 1e6), int(unigram_megabytes * 1e6), measured)
    return Candidate(BuildOptions(order=order), report, Path("."))


def test_sweep_picks_the_smallest_model_within_one_percent_of_the_best_under_the_cap():
    candidates = [fake_candidate(6, 12.0, 300.0), fake_candidate(5, 3.5, 379.2), fake_candidate(4, 2.6, 379.3), fake_candidate(3, 1.8, 384.9)]
    assert best(candidates, "real/dev").options.order == 4
    with pytest.raises(ValueError, match="no candidate fits"):
        best(candidates[:1], "real/dev")


def test_sweep_caps_each_shipped_file_not_their_sum():
    candidates = [fake_candidate(4, 9.4, 300.0, unigram_megabytes=9.6), fake_candidate(3, 9.4, 310.0, unigram_megabytes=1.0)]
    assert best(candidates, "real/dev").options.order == 3


def test_sweep_oov_bound_keeps_a_small_vocabulary_from_winning_on_cheap_unknown_words():
    candidates = [fake_candidate(3, 8.0, 240.0, oov_rate=0.0168), fake_candidate(4, 9.0, 245.0, oov_rate=0.0139)]
    assert best(candidates, "real/dev").options.order == 3
    assert best(candidates, "real/dev", max_oov_rate=0.0157).options.order == 4


def test_osis_markup_becomes_running_text():
    markup = '<title type="x">Chapter One</title><w lemma="a">In</w> <w lemma="b">the</w> beginning<note placement="foot">a footnote</note>.<lb/>Then'
    assert " ".join(osis_to_text(markup).split()) == "In the beginning . Then"


GUTENBERG_BOOK = """The Project Gutenberg EBook of A Small Tale, by Nobody

This eBook is for the use of anyone anywhere at no cost.

*** START OF THIS PROJECT GUTENBERG EBOOK A SMALL TALE ***

Produced by Some Volunteers.

Editorial note:

      This edition was prepared from the 1899 printing.
      See http://www.gutenberg.org/files/0000 for the pictures.

A SMALL TALE

by A. Nobody

CONTENTS

  Chapter I. The Morning
  Chapter II. The Evening

CHAPTER I.

THE MORNING

It was a quiet morning in 1899.[1] The kettle sang and Mr. Brown
read his paper.

[Illustration: Mr. Brown at breakfast]

[Footnote 1: The year of the great flood.]

"Is it raining?" asked his wife.

[Transcriber's Note: a misprint was corrected here.]

CHAPTER II.

"No, my dear," he said, and went out into the garden.

THE END

ADVERTISEMENTS

Buy our other fine books at the shop on the corner.

*** END OF THIS PROJECT GUTENBERG EBOOK A SMALL TALE ***

This file should be named 0000.txt. Donations are welcome.
"""


def test_gutenberg_book_keeps_the_prose_and_drops_licence_title_contents_notes_and_back_matter():
    assert prose_paragraphs(GUTENBERG_BOOK) == [
        "It was a quiet morning in 1899. The kettle sang and Mr. Brown read his paper.",
        '"Is it raining?" asked his wife.',
        '"No, my dear," he said, and went out into the garden.',
    ]
    stats = CorpusStats()
    assert list(normalized_sentences(raw_sentences(book_text(GUTENBERG_BOOK)), stats)) == [
        "it was a quiet morning in eighteen ninety nine",
        "the kettle sang and mr brown read his paper",
        "is it raining asked his wife",
        "no my dear he said and went out into the garden",
    ]


def test_a_contents_block_runs_to_the_first_real_paragraph():
    book = ("Table of Contents\n\nI. A Scandal in Bohemia.\n\nII. The Red-Headed League.\n\n"
            "To Sherlock Holmes she is always the woman, and I have seldom heard him mention her under any other name.")
    assert prose_paragraphs(book) == [book.split("\n\n")[-1]]


def write_text_folder(folder: Path) -> Path:
    """A tiny text folder: one Gutenberg book, one sentence-a-line Tatoeba file, and SOURCES.tsv naming both."""
    (folder / "gutenberg").mkdir(parents=True)
    (folder / "tatoeba").mkdir()
    (folder / "gutenberg" / "0000_A-Small-Tale.txt").write_text(GUTENBERG_BOOK, encoding="utf-8")
    (folder / "tatoeba" / "someone_pairs_fra.txt").write_text("Go.\nI was born in 1990.\nWhat is this?\nThe cat saw the dog.\n", encoding="utf-8")
    (folder / "SOURCES.tsv").write_text(
        "gutenberg/0000_A-Small-Tale.txt\tsomeone/A-Small-Tale_0000\t" + "a" * 40 + "\tPublic domain (US); Project Gutenberg eBook #0000\t60\n"
        "tatoeba/someone_pairs_fra.txt\tsomeone/pairs\t" + "b" * 40 + "\tCC BY 2.0 FR (Tatoeba English column of fra.txt)\t13\n",
        encoding="utf-8",
    )
    return folder


def test_text_folder_reader_reads_books_as_prose_and_tatoeba_as_lines(tmp_path):
    files = read_text_folder(write_text_folder(tmp_path))
    assert [(file.group, file.repository, file.words) for file in files] == [("gutenberg", "someone/A-Small-Tale_0000", 60), ("tatoeba", "someone/pairs", 13)]
    assert files[1].sentences() == ["Go.", "I was born in 1990.", "What is this?", "The cat saw the dog."]
    assert files[0].sentences()[-1] == '"No, my dear," he said, and went out into the garden.'
    assert "CC BY 2.0 FR" in files[1].description and "someone/pairs at bbbbbbbbbbbb" in files[1].description


def test_text_folder_refuses_a_file_without_a_licence_row(tmp_path):
    folder = write_text_folder(tmp_path)
    (folder / "tatoeba" / "unlisted.txt").write_text("Hello there.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unlisted.txt: not listed"):
        read_text_folder(folder)
    with pytest.raises(FileNotFoundError, match="SOURCES.tsv"):
        read_text_folder(tmp_path / "gutenberg")


def test_held_out_sets_never_train_and_every_manifest_transcript_is_excluded(tmp_path):
    manifest = tmp_path / "real" / "dev.jsonl"
    manifest.parent.mkdir()
    manifest.write_text('{"audio_filepath": "a.opus", "duration": 1.0, "text": "what is this"}\n', encoding="utf-8")
    rng = random.Random(0)
    lines = [" ".join("".join(rng.choices("abcdefghij", k=6)) for _ in range(5)) for _ in range(400)]  # no shared words
    inputs = [TextInput("lmtext/tatoeba", ("tatoeba file",), lambda: lines + ["What is this?"], held_out_per_mille=100)]
    text = prepare_text(inputs, BuildOptions(exclude_splits=(), exclude_manifests=(str(manifest),)))
    sampled = text.evaluation["lmtext/tatoeba"]
    assert text.evaluation["real/dev"] == ["what is this"]
    assert 20 < len(sampled) < 70 and set(sampled).isdisjoint(text.lines)
    assert "what is this" not in text.lines and len(text.lines) + len(sampled) == 400
    assert text.stats.dropped_held_out == 1 and text.sources == ["tatoeba file"]


def test_notice_attributes_cc_by_sources_only():
    assert notice_text(["gutenberg/1.txt: a at b; licence: Public domain (US)"]) is None
    notice = notice_text(["tatoeba/x.txt: someone/pairs at bbbb; licence: CC BY 2.0 FR (Tatoeba English column)"])
    assert "Tatoeba contributors" in notice and "creativecommons.org/licenses/by/2.0/fr" in notice and "tatoeba/x.txt" in notice


def test_vocabulary_cut_keeps_the_most_frequent_words_ties_alphabetical():
    assert most_frequent_words(["b a c", "a b", "a d"], 3) == ["a", "b", "c"]


def test_manifests_are_read_as_transcripts_for_perplexity(tmp_path):
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text('{"audio_filepath": "a.opus", "duration": 1.0, "text": "hello there"}\n', encoding="utf-8")
    plain = tmp_path / "lines.txt"
    plain.write_text("General Kenobi!\n\n", encoding="utf-8")
    assert file_sentences([manifest, plain]) == ["hello there", "general kenobi"]


def test_text_folder_build_through_the_cli_records_sources_licences_held_out_sets_and_notice(kenlm_tools, tmp_path):
    folder = write_text_folder(tmp_path / "lmtext")
    manifest = tmp_path / "real" / "dev.jsonl"
    manifest.parent.mkdir()
    manifest.write_text('{"audio_filepath": "a.opus", "duration": 1.0, "text": "is it raining asked his wife"}\n', encoding="utf-8")
    out, held_out_dir = tmp_path / "lm", tmp_path / "held-out"
    argv = ["--text-folder", str(folder), "--exclude-splits", "--exclude-manifests", str(manifest), "--held-out-dir", str(held_out_dir),
            "--out", str(out), "--order", "3", "--vocabulary", "1000", "-q", "8"]
    assert build_main(argv) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    assert [source.split(":")[0] for source in metadata["sources"]] == ["gutenberg/0000_A-Small-Tale.txt", "tatoeba/someone_pairs_fra.txt"]
    assert any("licence: CC BY 2.0 FR" in source for source in metadata["sources"])
    assert any("licence: Public domain (US)" in source for source in metadata["sources"])
    assert set(metadata["perplexity"]) == {"real/dev", "lmtext/gutenberg", "lmtext/tatoeba"}
    assert metadata["held_out"]["real/dev"] == {"sentences": 1, "words": 6}
    assert metadata["corpus"]["dropped_held_out"] == 1 and metadata["corpus"]["with_numbers_spelled"] >= 2
    assert metadata["options"]["vocabulary"] == 1000 and metadata["options"]["exclude_manifests"] == [str(manifest)]
    assert {"eighteen", "nineteen", "ninety"} <= set((out / "unigrams.txt").read_text().split())  # 1899 and 1990 spelled out
    assert "Tatoeba contributors" in (out / "NOTICE").read_text()
    assert sorted(path.name for path in held_out_dir.iterdir()) == ["lmtext-gutenberg.txt", "lmtext-tatoeba.txt"]


def test_tiny_lm_files_and_vocabulary(tiny_lm):
    expected_words = sorted({"the", "cat", "sat", "on", "mat", "dog", "log", "saw", "a", "is", "not", "it", "cost", "five", "dollars"})
    assert (tiny_lm / "unigrams.txt").read_text().split() == expected_words
    assert binary_vocabulary(tiny_lm / "lm.binary") == expected_words
    assert arpa_unigrams(tiny_lm / "lm.arpa") == expected_words
    metadata = json.loads((tiny_lm / "metadata.json").read_text())
    assert metadata["corpus"]["sentences"] == 6 and metadata["corpus"]["dropped_with_digits"] == 1
    assert metadata["corpus"]["with_numbers_spelled"] == 1
    assert metadata["options"]["order"] == 3


def test_tiny_lm_prefers_an_in_corpus_sentence_to_a_scrambled_one(tiny_lm):
    model = kenlm.Model(str(tiny_lm / "lm.binary"))
    assert model.order == 3
    sentence = "the dog saw the cat on the mat"
    scrambled = "mat the on cat the saw dog the"
    assert model.score(sentence) > model.score(scrambled) + 1.0


def test_quantised_pruned_build(kenlm_tools, tmp_path):
    lines = ["the cat sat on the mat", "the dog sat on the log", "a quiet cat sat on a warm mat today", "the cat saw the dog"] * 3
    report = build_lm(lines, ["test lines"], tmp_path, BuildOptions(order=3, prune=(0, 1), quantize=8, exclude_splits=()), kenlm_tools)
    assert report.vocabulary_size == len(set(" ".join(lines).split()))
    model = kenlm.Model(str(tmp_path / "lm.binary"))
    assert model.score("the cat sat on the mat") > model.score("mat the on sat cat the")
    assert report.options["quantize"] == 8 and report.options["prune"] == (0, 1)


def test_tools_are_found_in_the_cache_and_a_rebuild_is_instant(kenlm_tools):
    assert ensure_tools() == find_tools()
    assert all(path.is_file() for path in (kenlm_tools.lmplz, kenlm_tools.build_binary))


def test_missing_tools_name_the_command_that_builds_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ASR_KENLM_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolsError, match="python -m lm.tools"):
        find_tools()


def test_shipped_default_lm_loads_and_fits_the_size_budget():
    binary, unigrams = DEFAULT_LM_DIR / "lm.binary", DEFAULT_LM_DIR / "unigrams.txt"
    metadata = json.loads((DEFAULT_LM_DIR / "metadata.json").read_text())
    model = kenlm.Model(str(binary))
    assert model.order == metadata["options"]["order"]
    assert binary.stat().st_size + unigrams.stat().st_size < 10 * 1000 * 1000
    assert metadata["options"]["exclude_splits"] == ["dev", "test"]
    assert metadata["vocabulary_size"] >= 60_000  # a general-English vocabulary, not the fortunes' 18.7k words
    assert {"real/dev", "real/test", "lmtext/tatoeba", "lmtext/gutenberg"} <= set(metadata["perplexity"])  # measured, recorded
    if any("CC BY" in source for source in metadata["sources"]):
        assert "Tatoeba" in (DEFAULT_LM_DIR / "NOTICE").read_text()  # the attribution its licence asks for


def test_shipped_unigrams_match_the_lm_vocabulary():
    words = (DEFAULT_LM_DIR / "unigrams.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert words == binary_vocabulary(DEFAULT_LM_DIR / "lm.binary")
    assert len(words) == json.loads((DEFAULT_LM_DIR / "metadata.json").read_text())["vocabulary_size"]
    model = kenlm.Model(str(DEFAULT_LM_DIR / "lm.binary"))
    sample = random.Random(0).sample(words, 200)
    assert all(word in model and normalize(word) == word for word in sample)


def test_shipped_lm_scores_english_above_word_salad():
    model = kenlm.Model(str(DEFAULT_LM_DIR / "lm.binary"))
    sentence = "it is better to have loved and lost than never to have loved at all"
    salad = " ".join(reversed(sentence.split()))
    assert model.score(sentence) > model.score(salad) + math.log10(1000)
