"""Real-speech readers (shared corpus manifests, Common Voice releases), speaker-disjoint splits, manifest mixing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.__main__ import main as cli_main
from asr.data.manifest import read_manifest
from asr.data.mix import main as mix_main, mix
from asr.data.real_speech import read_common_voice, read_corpus_manifest
from asr.data.real_splits import SplitPlan, build_splits, main as real_splits_main, split_corpus


def write_clip(path: Path, seconds: float = 0.5, sample_rate: int = 16000, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = (np.random.default_rng(len(path.name)).standard_normal(int(seconds * sample_rate)) * 0.1).astype(np.float32)
    soundfile.write(str(path), samples, sample_rate, format=fmt)
    return path


def write_corpus(root: Path, corpus: str, clips: list[tuple[str, str, str]]) -> Path:
    """A corpus folder like ../shared/speech/<corpus>: audio/ and a manifest.jsonl of (file, text, speaker)."""
    folder = root / corpus
    with open(write_clip(folder / "audio" / clips[0][0]).parent.parent / "manifest.jsonl", "w") as manifest:
        for name, text, speaker in clips:
            write_clip(folder / "audio" / name)
            manifest.write(json.dumps({"audio_filepath": f"audio/{name}", "text": text, "speaker": speaker,
                                       "duration": 0.5, "source_sample_rate": 16000}) + "\n")
    return folder / "manifest.jsonl"


def test_corpus_manifest_texts_are_normalised_with_numbers_spelled_and_unreadable_ones_dropped(tmp_path):
    manifest = write_corpus(tmp_path, "readers", [
        ("a.wav", "In 1984, he paid $5.", "s1"),
        ("b.wav", "It's the 2nd TIME!", "s2"),
        ("c.wav", "Play the MP3 file", "s2"),  # digits glued to letters: no rule reads them
        ("d.wav", "?!", "s3"),
    ])
    utterances, counts = read_corpus_manifest(manifest)
    assert [u.entry.text for u in utterances] == ["in nineteen eighty four he paid five dollars", "it's the second time"]
    assert [u.speaker for u in utterances] == ["s1", "s2"] and {u.corpus for u in utterances} == {"readers"}
    assert (counts.kept, counts.unreadable_numbers, counts.empty_text) == (2, 1, 1)
    assert utterances[0].entry.audio_filepath == (tmp_path / "readers" / "audio" / "a.wav").resolve()


def test_corpus_manifest_without_speaker_names_file_and_line(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text('{"audio_filepath": "a.wav", "text": "hi", "speaker": "s"}\n{"audio_filepath": "b.wav", "text": "x"}\n')
    with pytest.raises(ValueError, match=r"manifest.jsonl:2: .*speaker"):
        read_corpus_manifest(manifest)


def build_common_voice(root: Path, with_durations: bool) -> None:
    """A Common Voice release in miniature: clips/*.mp3 and train.tsv with its real column set."""
    columns = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"
    rows = [("aaa", "common_voice_en_1.mp3", 'He said "hello" twice.'), ("bbb", "common_voice_en_2.mp3", "Room 101 is free"),
            ("aaa", "common_voice_en_3.mp3", "Version 2b ships")]
    lines = [columns] + [f"{client}\t{clip}\tsid\t{text}\t\t2\t0\t\t\t\t\ten\t" for client, clip, text in rows]
    (root / "train.tsv").parent.mkdir(parents=True, exist_ok=True)
    (root / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for _, clip, _ in rows:
        write_clip(root / "clips" / clip, seconds=1.0, sample_rate=48000, fmt="MP3")
    if with_durations:
        (root / "clip_durations.tsv").write_text("clip\tduration[ms]\n" + "".join(f"{c}\t1250\n" for _, c, _ in rows))


@pytest.mark.parametrize("with_durations", [False, True])
def test_common_voice_release_layout_becomes_a_manifest(tmp_path, capsys, with_durations):
    root = tmp_path / "cv" / "en"
    build_common_voice(root, with_durations)
    utterances, counts = read_common_voice(root, "train")
    assert [(u.speaker, u.entry.text) for u in utterances] == [("aaa", "he said hello twice"),
                                                               ("bbb", "room one hundred and one is free")]
    assert counts.unreadable_numbers == 1
    expected_seconds = 1.25 if with_durations else 1.0
    assert all(abs(u.entry.duration - expected_seconds) < 0.1 for u in utterances)

    out = tmp_path / "cv-train.jsonl"
    assert cli_main(["commonvoice", str(root), "--split", "train", "--out", str(out)]) == 0
    assert "wrote 2 utterances" in capsys.readouterr().out
    entries = read_manifest(out)
    assert [e.text for e in entries] == ["he said hello twice", "room one hundred and one is free"]
    samples, rate = soundfile.read(str(entries[0].audio_filepath))  # the mp3 decodes through the project's reader
    assert rate == 48000 and len(samples) > 40000


def test_common_voice_reader_skips_a_corrupt_clip_and_refuses_a_missing_split(tmp_path, capsys):
    root = tmp_path / "en"
    build_common_voice(root, with_durations=False)
    (root / "clips" / "common_voice_en_2.mp3").write_bytes(b"not audio")
    utterances, counts = read_common_voice(root, "train")
    assert [u.entry.audio_filepath.name for u in utterances] == ["common_voice_en_1.mp3"] and counts.unreadable_audio == 1
    assert cli_main(["commonvoice", str(root), "--split", "dev", "--out", str(tmp_path / "x.jsonl")]) == 1
    assert "no dev.tsv" in capsys.readouterr().err


def corpus_of(speakers: int, clips_each: int, tmp_path: Path, corpus: str = "cv") -> list:
    manifest = write_corpus(tmp_path, corpus, [(f"{s}_{c}.wav", f"words of {s}", f"spk{s}")
                                               for s in range(speakers) for c in range(clips_each)])
    return read_corpus_manifest(manifest)[0]


def test_splits_are_speaker_disjoint_sized_by_the_plan_and_stable(tmp_path):
    utterances = corpus_of(20, 3, tmp_path)
    splits = split_corpus(utterances, SplitPlan(held_out_share=0.25))
    speakers = {name: {u.speaker for u in clips} for name, clips in splits.items()}
    assert [len(speakers[name]) for name in ("train", "dev", "test")] == [10, 5, 5]
    assert not (speakers["dev"] & speakers["test"] or speakers["dev"] & speakers["train"] or speakers["test"] & speakers["train"])
    assert sum(len(clips) for clips in splits.values()) == 60
    again = split_corpus(list(reversed(utterances)), SplitPlan(held_out_share=0.25))  # input order does not matter
    assert {name: [u.entry for u in clips] for name, clips in again.items()} == {name: [u.entry for u in clips] for name, clips in splits.items()}


def test_held_out_speakers_are_capped_and_a_single_speaker_always_trains(tmp_path):
    capped = split_corpus(corpus_of(6, 10, tmp_path, "digits"), SplitPlan(held_out_speakers=1, max_clips_per_held_out_speaker=4))
    assert (len(capped["dev"]), len(capped["test"]), len(capped["train"])) == (4, 4, 40)
    alone = split_corpus(corpus_of(1, 5, tmp_path, "reader"), SplitPlan(held_out_share=0.5))
    assert (len(alone["train"]), len(alone["dev"]), len(alone["test"])) == (5, 0, 0)


def test_real_splits_command_writes_pooled_and_per_corpus_manifests(tmp_path, capsys):
    speech = tmp_path / "speech"
    write_corpus(speech, "commonvoice", [(f"{s}.wav", f"sentence number {s}", f"c{s}") for s in range(10)])
    write_corpus(speech, "dc_tts_reader", [(f"r{c}.wav", "a reader reads", "reader") for c in range(3)])
    out = tmp_path / "real"
    assert real_splits_main(["--speech", str(speech), "--out", str(out)]) == 0
    assert "dev   commonvoice" in capsys.readouterr().out
    dev, test, train = (read_manifest(out / f"{split}.jsonl") for split in ("dev", "test", "train"))
    assert (len(dev), len(test), len(train)) == (4, 4, 5)  # 35 % of 10 speakers each way; the reader trains
    assert read_manifest(out / "dev-commonvoice.jsonl") == dev
    assert len(read_manifest(out / "train-dc_tts_reader.jsonl")) == 3
    assert not (out / "dev-dc_tts_reader.jsonl").exists()
    assert build_splits(speech)["commonvoice"]["dev"][0].entry == dev[0]
    assert real_splits_main(["--speech", str(tmp_path / "nowhere"), "--out", str(out)]) == 1


def test_mix_repeats_each_manifest_its_share_of_times(tmp_path, capsys):
    synthetic = write_corpus(tmp_path, "synthetic", [("s1.wav", "one", "a"), ("s2.wav", "two", "a")])
    real = write_corpus(tmp_path, "real", [("r1.wav", "three", "b")])
    out = tmp_path / "mixed" / "train.jsonl"
    assert mix_main([str(synthetic), f"{real}=3", "--out", str(out)]) == 0
    assert [e.text for e in read_manifest(out)] == ["one", "two", "three", "three", "three"]
    assert read_manifest(out)[2].audio_filepath == (tmp_path / "real" / "audio" / "r1.wav").resolve()
    for bad in ("0", "1.5", "-2", "many"):
        assert mix_main([f"{real}={bad}", "--out", str(out)]) == 1
        assert "fraction in (0, 1) or a whole number" in capsys.readouterr().err


def test_mix_fraction_takes_a_stable_subset_of_about_that_share(tmp_path):
    many = write_corpus(tmp_path, "many", [(f"u{index}.wav", "word", "a") for index in range(200)])
    half = [e.audio_filepath for e in mix([(many, 0.5)])[0]]
    assert 70 < len(half) < 130 and len(set(half)) == len(half)
    assert half == [e.audio_filepath for e in mix([(many, 0.5)])[0]]
    assert set([e.audio_filepath for e in mix([(many, 0.25)])[0]]) < set(half)  # a smaller share is a subset
