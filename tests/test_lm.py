"""lm/: corpus preparation, held-out filtering, perplexity with known answers, tiny real builds, the shipped default LM."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import kenlm
import pytest

from asr.text import normalize
from lm import DEFAULT_LM_DIR
from lm.build import BuildOptions, BuildReport, arpa_unigrams, binary_vocabulary, build_lm, main as build_main, text_file_sentences, validate
from lm.corpus import CorpusStats, leaking_lines, normalized_sentences, raw_sentences
from lm.perplexity import perplexity
from lm.sources import osis_to_text
from lm.sweep import Candidate, best
from lm.tools import ToolsError, check_build_prerequisites, ensure_tools, find_tools

TINY_CORPUS = """The cat sat on the mat.  The dog sat on the log!
The cat saw the dog.

The dog saw the cat on the mat.   A cat is not a dog.
It cost 5 dollars.
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
    assert lines == ["don't panic he said", "it's fine really", "new paragraph here"]
    assert stats.dropped_with_digits == 1
    assert all(normalize(line) == line for line in lines)


def test_raw_sentences_split_after_end_punctuation_before_a_capital():
    assert list(raw_sentences("Mr. smith left. Then he ate!  Why? no idea")) == ["Mr. smith left.", "Then he ate!", "Why? no idea"]


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


def fake_candidate(order: int, megabytes: float, dev_perplexity: float) -> Candidate:
    report = BuildReport([], {}, {}, 0, int(megabytes * 1e6), 0, {"dev": {"with_oovs": dev_perplexity}})
    return Candidate(BuildOptions(order=order), report, Path("."))


def test_sweep_picks_the_smallest_model_within_one_percent_of_the_best_under_the_cap():
    candidates = [fake_candidate(6, 12.0, 300.0), fake_candidate(5, 3.5, 379.2), fake_candidate(4, 2.6, 379.3), fake_candidate(3, 1.8, 384.9)]
    assert best(candidates).options.order == 4
    with pytest.raises(ValueError, match="no candidate fits"):
        best(candidates[:1])


def test_osis_markup_becomes_running_text():
    markup = '<title type="x">Chapter One</title><w lemma="a">In</w> <w lemma="b">the</w> beginning<note placement="foot">a footnote</note>.<lb/>Then'
    assert " ".join(osis_to_text(markup).split()) == "In the beginning . Then"


def test_tiny_lm_files_and_vocabulary(tiny_lm):
    expected_words = sorted({"the", "cat", "sat", "on", "mat", "dog", "log", "saw", "a", "is", "not"})
    assert (tiny_lm / "unigrams.txt").read_text().split() == expected_words
    assert binary_vocabulary(tiny_lm / "lm.binary") == expected_words
    assert arpa_unigrams(tiny_lm / "lm.arpa") == expected_words
    metadata = json.loads((tiny_lm / "metadata.json").read_text())
    assert metadata["corpus"]["sentences"] == 5 and metadata["corpus"]["dropped_with_digits"] == 1
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
