"""asr/data: manifests, the LibriSpeech reader, length batching, augmentation and the dataset."""

from __future__ import annotations

import json
import math
from dataclasses import replace
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from asr.data.alsa_recordings import main as alsa_recordings_main
from asr.data.augment import (BAND_KNOTS_HZ, MAX_BAND_SPREAD, AugmentConfig, SpecAugment, VocalTractWarp, WaveformAugmenter,
                              warp_filterbank, warp_frequencies)
from asr.data.batching import LengthBatchSampler
from asr.data.dataset import Batch, SpeechDataset, collate_batch
from asr.data.librispeech import main as librispeech_main
from asr.data.manifest import ManifestEntry, read_manifest, write_manifest
from asr.features import SAMPLE_RATE, AudioError, FeatureConfig, LogMel, compute_features
from asr.text import LABELS, encode

ONLY_NOTHING = dict(speed_prob=0.0, eq_prob=0.0, reverb_prob=0.0, noise_prob=0.0, gain_prob=0.0)


def speech_like(seconds: float, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """A few harmonics under a syllable-rate envelope: enough structure for filters and SNRs to act on."""
    rng = np.random.default_rng(seed)
    times = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = rng.uniform(100, 200)
    voiced = sum(np.sin(2 * np.pi * pitch * k * times) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * times)
    return (0.2 * voiced * envelope).astype(np.float32)


# --- manifest ---------------------------------------------------------------------------------


def test_manifest_round_trip_keeps_paths_relative_to_the_manifest(tmp_path):
    entries = [
        ManifestEntry((tmp_path / "audio" / "a.flac").resolve(), 1.25, "hello world"),
        ManifestEntry((tmp_path / "other" / "b c.flac").resolve(), 0.5, "it's ok"),
    ]
    manifest = tmp_path / "manifests" / "train.jsonl"
    write_manifest(manifest, entries)
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [record["audio_filepath"] for record in records] == ["../audio/a.flac", "../other/b c.flac"]
    assert read_manifest(manifest) == entries
    # A corpus moved as a whole still resolves: paths follow the manifest, not the old location.
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "manifests", moved / "manifests")
    assert read_manifest(moved / "manifests" / "train.jsonl")[0].audio_filepath == (moved / "audio" / "a.flac").resolve()
    assert not list(manifest.parent.glob(".train.jsonl.*")), "temporary file left behind"


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ('{"audio_filepath": "a.flac", "duration": 1.0', "not valid JSON"),
        ('["a.flac", 1.0, "text"]', "expected a JSON object"),
        ('{"audio_filepath": "a.flac", "text": "hi"}', "missing field(s) duration"),
        ('{"audio_filepath": "a.flac", "duration": -1, "text": "hi"}', "duration"),
        ('{"audio_filepath": "", "duration": 1, "text": "hi"}', "audio_filepath"),
    ],
)
def test_malformed_manifest_line_names_file_and_line(tmp_path, bad_line, reason):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"audio_filepath": "a.flac", "duration": 1.0, "text": "fine"}\n' + bad_line + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: ") as error:
        read_manifest(manifest)
    assert reason in str(error.value)


# --- LibriSpeech layout ----------------------------------------------------------------------

LIBRISPEECH_UTTERANCES = {  # utterance id -> (raw transcript, seconds)
    "19-198-0000": ("NORTHANGER ABBEY", 0.5),
    "19-198-0001": ("HE'S A CAPITAL FELLOW-CREATURE", 0.75),
    "26-495-0000": ("CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED", 1.0),
}


def build_librispeech(root: Path) -> None:
    """Two speakers, three utterances, laid out exactly as LibriSpeech ships them."""
    chapters: dict[Path, list[str]] = {}
    for index, (utterance_id, (text, seconds)) in enumerate(LIBRISPEECH_UTTERANCES.items()):
        speaker, chapter, _ = utterance_id.split("-")
        directory = root / speaker / chapter
        directory.mkdir(parents=True, exist_ok=True)
        soundfile.write(directory / f"{utterance_id}.flac", speech_like(seconds, seed=index), SAMPLE_RATE, subtype="PCM_16")
        chapters.setdefault(directory, []).append(f"{utterance_id} {text}")
    for directory, lines in chapters.items():
        (directory / f"{directory.parent.name}-{directory.name}.trans.txt").write_text("\n".join(lines) + "\n")


def test_librispeech_layout_becomes_a_normalised_manifest(tmp_path, capsys):
    root = tmp_path / "LibriSpeech" / "dev-tiny"
    build_librispeech(root)
    manifest = tmp_path / "manifests" / "dev-tiny.jsonl"
    assert librispeech_main([str(root), "--out", str(manifest)]) == 0
    assert "wrote 3 utterances" in capsys.readouterr().out
    entries = read_manifest(manifest)
    assert [entry.audio_filepath.name for entry in entries] == [f"{name}.flac" for name in LIBRISPEECH_UTTERANCES]
    assert [entry.text for entry in entries] == [
        "northanger abbey",
        "he's a capital fellow creature",
        "chapter one missus rachel lynde is surprised",
    ]
    assert [entry.duration for entry in entries] == pytest.approx([seconds for _, seconds in LIBRISPEECH_UTTERANCES.values()])
    assert all(entry.audio_filepath.is_file() for entry in entries)


def test_librispeech_reader_reports_bad_input_in_one_line(tmp_path, capsys):
    assert librispeech_main([str(tmp_path), "--out", str(tmp_path / "m.jsonl")]) == 1
    assert "no <speaker>/<chapter>/*.trans.txt" in capsys.readouterr().err
    build_librispeech(tmp_path / "split")
    (tmp_path / "split" / "26" / "495" / "26-495-0000.flac").unlink()
    assert librispeech_main([str(tmp_path / "split"), "--out", str(tmp_path / "m.jsonl")]) == 1
    assert "26-495-0000.flac" in capsys.readouterr().err
    assert not (tmp_path / "m.jsonl").exists()


def test_librispeech_max_duration_skips_long_utterances(tmp_path, capsys):
    build_librispeech(tmp_path / "split")
    assert librispeech_main([str(tmp_path / "split"), "--out", str(tmp_path / "m.jsonl"), "--max-duration", "0.8"]) == 0
    assert len(read_manifest(tmp_path / "m.jsonl")) == 2


# --- length batching -------------------------------------------------------------------------

DURATIONS = [float(seconds) for seconds in np.random.default_rng(7).uniform(0.5, 12.0, size=103)]


def epoch_batches(sampler: LengthBatchSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_sampler_covers_every_utterance_once_per_epoch_within_limits():
    sampler = LengthBatchSampler(DURATIONS, batch_seconds=40.0, max_batch_size=8)
    for epoch in range(3):
        batches = epoch_batches(sampler, epoch)
        assert len(batches) == len(sampler)
        assert sorted(index for batch in batches for index in batch) == list(range(len(DURATIONS)))
        for batch in batches:
            assert len(batch) <= 8
            assert len(batch) == 1 or len(batch) * max(DURATIONS[index] for index in batch) <= 40.0


def test_sampler_gives_an_overlong_utterance_its_own_batch():
    batches = list(LengthBatchSampler([1.0, 1.0, 50.0], batch_seconds=10.0, max_batch_size=4))
    assert batches == [[0, 1], [2]]


def test_sortagrad_first_epoch_is_shortest_first_then_shuffled_per_epoch():
    sampler = LengthBatchSampler(DURATIONS, batch_seconds=40.0, max_batch_size=8, seed=3)
    longest = [max(DURATIONS[index] for index in batch) for batch in epoch_batches(sampler, 0)]
    assert longest == sorted(longest)
    first, second = epoch_batches(sampler, 1), epoch_batches(sampler, 2)
    assert first != epoch_batches(sampler, 0) and first != second
    # Batches keep their members (similar lengths stay together); only their order changes.
    assert sorted(map(sorted, first)) == sorted(map(sorted, epoch_batches(sampler, 0)))
    assert first == epoch_batches(LengthBatchSampler(DURATIONS, 40.0, 8, seed=3), 1), "order must depend only on seed and epoch"
    assert first != epoch_batches(LengthBatchSampler(DURATIONS, 40.0, 8, seed=4), 1)
    assert epoch_batches(LengthBatchSampler(DURATIONS, 40.0, 8, sortagrad=False), 0) != epoch_batches(sampler, 0)


@pytest.mark.parametrize("num_replicas, drop_last", [(2, False), (3, False), (4, True)])
def test_ranks_get_equal_numbers_of_disjoint_batches(num_replicas, drop_last):
    def shards(epoch: int) -> list[list[list[int]]]:
        return [
            epoch_batches(LengthBatchSampler(DURATIONS, 30.0, 6, seed=1, num_replicas=num_replicas, rank=rank, drop_last=drop_last), epoch)
            for rank in range(num_replicas)
        ]

    total = len(LengthBatchSampler(DURATIONS, 30.0, 6))
    for epoch in (0, 1):
        per_rank = shards(epoch)
        assert len({len(batches) for batches in per_rank}) == 1
        steps = len(per_rank[0])
        assert steps == (total // num_replicas if drop_last else math.ceil(total / num_replicas))
        all_batches = [tuple(batch) for batches in per_rank for batch in batches]
        # Only the padding (repeats of the first batches to even out the ranks) may appear twice.
        padding = steps * num_replicas - total if not drop_last else 0
        assert len(all_batches) - len(set(all_batches)) == padding
        if not drop_last:
            assert sorted({index for batch in all_batches for index in batch}) == list(range(len(DURATIONS)))


def test_ranks_are_disjoint_when_batches_divide_evenly():
    durations = [1.0] * 40  # 10 batches of 4
    shards = [list(LengthBatchSampler(durations, 4.0, 4, num_replicas=2, rank=rank)) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert not {i for batch in shards[0] for i in batch} & {i for batch in shards[1] for i in batch}


# --- waveform augmentation -------------------------------------------------------------------


def only(**probabilities) -> AugmentConfig:
    return AugmentConfig(**{**ONLY_NOTHING, **probabilities})


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_changes_length_by_the_factor(factor):
    waveform = torch.from_numpy(speech_like(1.0))
    augmented = WaveformAugmenter(only(speed_prob=1.0, speed_range=(factor, factor)))(waveform)
    assert augmented.numel() == pytest.approx(waveform.numel() / factor, abs=2)


def test_default_augmentation_keeps_length_and_finite_values_and_changes_the_signal():
    waveform = torch.from_numpy(speech_like(1.0))
    augmenter = WaveformAugmenter(AugmentConfig(speed_prob=0.0, eq_prob=1.0, reverb_prob=1.0, noise_prob=1.0, gain_prob=1.0), seed=5)
    for _ in range(5):
        augmented = augmenter(waveform)
        assert augmented.shape == waveform.shape
        assert torch.isfinite(augmented).all() and augmented.abs().max() <= 1.0
        assert (augmented - waveform).abs().max() > 1e-3


def test_every_step_changes_the_signal_and_only_speed_changes_its_length():
    waveform = torch.from_numpy(speech_like(0.5))
    for step in ("speed_prob", "eq_prob", "reverb_prob", "noise_prob", "gain_prob"):
        augmented = WaveformAugmenter(only(**{step: 1.0}, speed_range=(1.05, 1.05)), seed=1)(waveform)
        assert torch.isfinite(augmented).all()
        if step == "speed_prob":
            assert augmented.numel() != waveform.numel()
        else:
            assert augmented.shape == waveform.shape and not torch.allclose(augmented, waveform, atol=1e-4)


def test_augmenter_is_reproducible_from_its_seed():
    waveform = torch.from_numpy(speech_like(0.5))
    first, again, other = (WaveformAugmenter(AugmentConfig(), seed)(waveform) for seed in (1, 1, 2))
    assert torch.equal(first, again)
    assert first.shape != other.shape or not torch.equal(first, other)


def test_scaled_augmentation_scales_only_probabilities_and_zero_leaves_the_signal_alone():
    base = AugmentConfig()
    light = base.scaled(0.5)
    assert light.noise_prob == base.noise_prob / 2 and light.snr_db_range == base.snr_db_range
    assert base.scaled(10.0).gain_prob == 1.0
    waveform = torch.from_numpy(speech_like(0.5))
    assert base.scaled(0.0).speed_prob == base.speed_prob  # the talker's speed is not a room property
    quiet = replace(base.scaled(0.0), speed_prob=0.0)
    assert torch.equal(WaveformAugmenter(quiet, seed=3)(waveform), waveform.clamp(-1, 1))


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble"])
@pytest.mark.parametrize("snr_db", [5.0, 20.0])
def test_added_noise_has_the_requested_snr(kind, snr_db):
    waveform = torch.from_numpy(speech_like(1.0))
    config = only(noise_prob=1.0, snr_db_range=(snr_db, snr_db), noise_kinds=(kind,))
    noise = WaveformAugmenter(config, seed=2)(waveform) - waveform
    measured = 10 * math.log10(waveform.pow(2).sum() / noise.pow(2).sum())
    assert measured == pytest.approx(snr_db, abs=0.1)


def test_room_response_decays_by_60_db_over_rt60():
    response = WaveformAugmenter(seed=0).room_response(rt60=0.4, direct_to_reverb_db=6.0)
    assert response[0] == 1.0
    assert 10 * math.log10(1.0 / response[1:].pow(2).sum()) == pytest.approx(6.0, abs=1e-3)
    first, last = response[160:1760].pow(2).mean(), response[-1600:].pow(2).mean()  # 10-110 ms vs the last 100 ms
    assert 10 * math.log10(first / last) == pytest.approx(60 * 0.29 / 0.4, abs=4.0)


# --- SpecAugment -----------------------------------------------------------------------------


def masked_counts(original: torch.Tensor, masked: torch.Tensor) -> tuple[int, int]:
    """(mel bins masked over every frame, frames masked over every bin)."""
    changed = masked != original
    return int(changed.all(dim=0).sum()), int(changed.all(dim=1).sum())


def tone(frequency_hz: float, seconds: float = 0.5) -> torch.Tensor:
    return 0.3 * torch.sin(2 * math.pi * frequency_hz * torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE)


@pytest.mark.parametrize("alpha", [0.9, 1.12])
def test_vocal_tract_warp_moves_a_tone_by_alpha_below_the_boundary(alpha):
    log_mel = LogMel()
    warped = warp_filterbank(log_mel.filterbank, alpha, SAMPLE_RATE, boundary_hz=4800.0)
    heard = log_mel(tone(1000.0), warped).mean(0)
    expected = log_mel(tone(1000.0 * alpha)).mean(0)
    unwarped = log_mel(tone(1000.0)).mean(0)
    assert heard.argmax() == expected.argmax() != unwarped.argmax()
    assert heard.max() == pytest.approx(float(expected.max()), abs=0.3)  # moved, not attenuated


def test_vocal_tract_warp_keeps_nyquist_and_alpha_one_is_the_identity():
    filterbank = LogMel().filterbank
    assert torch.allclose(warp_filterbank(filterbank, 1.0, SAMPLE_RATE, 4800.0), filterbank, atol=1e-6)
    for alpha in (0.85, 1.15):
        warped = warp_filterbank(filterbank, alpha, SAMPLE_RATE, 4800.0)
        assert warped.shape == filterbank.shape and torch.isfinite(warped).all()
        assert torch.allclose(warped[-1], filterbank[-1], atol=1e-6)  # the top bin still reads the top bin


def test_vocal_tract_warp_draws_per_probability_and_reproducibly():
    filterbank = LogMel().filterbank
    assert VocalTractWarp(probability=0.0).filterbank(filterbank, SAMPLE_RATE) is filterbank
    first, again, other = (VocalTractWarp(1.0, (0.8, 1.2), seed=seed).filterbank(filterbank, SAMPLE_RATE) for seed in (3, 3, 4))
    assert torch.equal(first, again) and not torch.equal(first, other) and not torch.equal(first, filterbank)


def test_band_warp_moves_each_formant_region_by_its_own_factor():
    log_mel = LogMel()
    factors = (1.0, 1.1, 1.0)  # only the region around 1500 Hz moves, by alpha * 1.1
    warped = warp_filterbank(log_mel.filterbank, 1.0, SAMPLE_RATE, 4800.0, factors)
    assert log_mel(tone(1500.0), warped).mean(0).argmax() == log_mel(tone(1650.0)).mean(0).argmax() \
        != log_mel(tone(1500.0)).mean(0).argmax()
    assert log_mel(tone(500.0), warped).mean(0).argmax() == log_mel(tone(500.0)).mean(0).argmax()
    assert torch.equal(warp_filterbank(log_mel.filterbank, 1.1, SAMPLE_RATE, 4800.0, (1.0, 1.0, 1.0)),
                       warp_filterbank(log_mel.filterbank, 1.1, SAMPLE_RATE, 4800.0))


@pytest.mark.parametrize("alpha", [0.85, 1.0, 1.15])
def test_band_warp_stays_monotone_and_keeps_nyquist_at_the_largest_spread(alpha):
    frequencies = torch.linspace(0.0, 8000.0, 4001, dtype=torch.float64)
    for signs in [(1, -1, 1), (-1, 1, -1), (1, 1, 1), (-1, -1, -1)]:
        factors = tuple(1 + sign * MAX_BAND_SPREAD for sign in signs)
        warped = warp_frequencies(frequencies, alpha, 8000.0, 4800.0, factors)
        assert (warped.diff() > 0).all() and warped[0] == 0 and warped[-1] == pytest.approx(8000.0)
    single = frequencies.float()  # np.interp works in float64; the warp keeps its input's dtype either way
    assert warp_frequencies(single, alpha, 8000.0, 4800.0, factors).dtype == warp_frequencies(single, alpha, 8000.0, 4800.0).dtype
    with pytest.raises(ValueError):
        VocalTractWarp(band_spread=MAX_BAND_SPREAD + 0.01)
    with pytest.raises(ValueError):
        warp_frequencies(frequencies, 1.0, 8000.0, 4800.0, (1.0,) * (len(BAND_KNOTS_HZ) + 1))


def test_band_spread_zero_keeps_the_old_random_stream_and_nonzero_adds_variety():
    filterbank = LogMel().filterbank
    plain = VocalTractWarp(1.0, (0.9, 1.1), seed=5).filterbank(filterbank, SAMPLE_RATE)
    assert torch.equal(plain, VocalTractWarp(1.0, (0.9, 1.1), seed=5, band_spread=0.0).filterbank(filterbank, SAMPLE_RATE))
    banded = [VocalTractWarp(1.0, (1.0, 1.0), seed=seed, band_spread=0.1).filterbank(filterbank, SAMPLE_RATE) for seed in (5, 5, 6)]
    assert torch.equal(banded[0], banded[1]) and not torch.equal(banded[0], banded[2])
    assert not torch.equal(banded[0], filterbank)  # alpha fixed at 1: the bands alone moved it


def test_dataset_applies_the_vocal_tract_warp_only_to_features(tmp_path):
    path = tmp_path / "a.wav"
    soundfile.write(path, speech_like(1.0), SAMPLE_RATE)
    entries = [ManifestEntry(path, 1.0, "a")]
    plain = SpeechDataset(entries)[0][0]
    warped = SpeechDataset(entries, vocal_tract_warp=VocalTractWarp(1.0, (1.1, 1.1)))[0][0]
    assert warped.shape == plain.shape and not torch.allclose(warped, plain, atol=1e-3)


def test_spec_augment_masks_at_most_the_configured_bins_and_frames():
    torch.manual_seed(0)
    features = torch.randn(200, 80)
    spec_augment = SpecAugment(freq_masks=2, freq_width=10, time_masks=3, time_width_fraction=0.05)
    seen_frequency, seen_time = set(), set()
    for _ in range(50):
        masked = spec_augment(features)
        assert masked.shape == features.shape
        bins, frames = masked_counts(features, masked)
        assert bins <= 2 * 10 and frames <= 3 * 10  # 5 % of 200 frames = 10 per mask
        seen_frequency.add(bins)
        seen_time.add(frames)
        changed = masked != features
        assert torch.equal(masked[changed], features.mean(dim=0).expand_as(features)[changed]), "filled with the bin's mean"
        assert changed.sum() == bins * 200 + frames * 80 - bins * frames, "only whole bins and whole frames are masked"
    assert max(seen_frequency) > 10 and max(seen_time) > 10


def test_spec_augment_with_one_full_width_mask_covers_exactly_that_many_bins():
    features = torch.randn(50, 80)
    widths = {masked_counts(features, SpecAugment(1, 4, 0, 0.0)(features))[0] for _ in range(200)}
    assert widths == {0, 1, 2, 3, 4}


# --- dataset and batches ---------------------------------------------------------------------


def write_entries(directory: Path, seconds: list[float], sample_rate: int = SAMPLE_RATE) -> list[ManifestEntry]:
    texts = ["hello", "Good morning, world!", "it's a test"]
    entries = []
    for index, duration in enumerate(seconds):
        path = directory / f"utt{index}.flac"
        soundfile.write(path, speech_like(duration, sample_rate, seed=index), sample_rate, subtype="PCM_16")
        entries.append(ManifestEntry(path.resolve(), duration, texts[index % len(texts)]))
    return entries


def test_dataset_features_match_inference_features_and_targets_are_label_indices(tmp_path):
    entries = write_entries(tmp_path, [0.6], sample_rate=22_050)
    dataset = SpeechDataset(entries, FeatureConfig())
    features, target = dataset[0]
    samples, rate = soundfile.read(entries[0].audio_filepath, dtype="float32")
    assert features.dtype == torch.float32 and target.dtype == torch.long
    assert torch.equal(features, compute_features(samples, rate, FeatureConfig()))
    assert features.shape == (58, 80)  # 0.6 s at 16 kHz, 25 ms windows every 10 ms, no centre padding
    assert target.tolist() == encode("hello")
    assert dataset.durations == [0.6]


def test_collated_batch_is_padded_with_true_lengths(tmp_path):
    entries = write_entries(tmp_path, [0.5, 1.0, 0.3])
    dataset = SpeechDataset(entries, augmenter=WaveformAugmenter(AugmentConfig(speed_prob=0.0), seed=0), spec_augment=SpecAugment())
    items = [dataset[index] for index in range(len(dataset))]
    batch = collate_batch(items)
    assert isinstance(batch, Batch) and len(batch) == 3
    assert batch.features.shape == (3, 98, 80)
    assert batch.feature_lengths.tolist() == [48, 98, 28]
    assert batch.target_lengths.tolist() == [5, 18, 11]
    assert batch.targets.shape == (3, 18)
    assert "".join(LABELS[index] for index in batch.targets[1].tolist()) == "good morning world"
    assert torch.all(batch.targets[0, 5:] == 0) and torch.all(batch.features[2, 28:] == 0)
    for row, (features, target) in enumerate(items):
        assert torch.equal(batch.features[row, : len(features)], features)
        assert torch.equal(batch.targets[row, : len(target)], target)


def test_data_loader_with_length_sampler_yields_batches(tmp_path):
    entries = write_entries(tmp_path, [0.3, 0.5, 0.4, 0.6])
    dataset = SpeechDataset(entries)
    sampler = LengthBatchSampler(dataset.durations, batch_seconds=1.0, max_batch_size=2)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_batch)
    batches = list(loader)
    assert [batch.feature_lengths.tolist() for batch in batches] == [[28, 38], [48], [58]]


def test_unreadable_audio_error_names_the_file(tmp_path):
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"not audio at all")
    dataset = SpeechDataset([ManifestEntry(broken, 1.0, "x"), ManifestEntry(tmp_path / "missing.flac", 1.0, "x")])
    for index, name in enumerate(["broken.flac", "missing.flac"]):
        with pytest.raises(AudioError, match=name):
            dataset[index]


def test_recode_writes_a_smaller_opus_copy_that_reads_back_at_the_same_rate_and_length(tmp_path, capsys):
    from asr.__main__ import main as cli

    corpus = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    entries = []
    for index in range(3):
        seconds = 1.0 + index
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        audio = 0.3 * np.sin(2 * np.pi * 220 * (1 + index) * t) + 0.01 * rng.standard_normal(t.size)
        path = corpus / "train" / f"voice{index}" / f"utt{index}.wav"
        path.parent.mkdir(parents=True)
        soundfile.write(path, audio.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        entries.append(ManifestEntry(path, seconds, f"utterance {index}"))
    write_manifest(corpus / "train.jsonl", entries)

    assert cli(["recode", str(corpus / "train.jsonl"), "--out", str(tmp_path / "packed"), "--workers", "2"]) == 0
    assert "MiB of Ogg Opus" in capsys.readouterr().out
    recoded = read_manifest(tmp_path / "packed" / "train.jsonl")
    assert [e.text for e in recoded] == [e.text for e in entries]
    for original, copy in zip(entries, recoded):
        assert copy.audio_filepath == (tmp_path / "packed" / original.audio_filepath.relative_to(corpus)).with_suffix(".ogg")
        audio, rate = soundfile.read(copy.audio_filepath, dtype="float32")
        assert rate == SAMPLE_RATE and abs(audio.size / rate - original.duration) < 0.02
        assert copy.audio_filepath.stat().st_size < original.audio_filepath.stat().st_size / 5
    assert json.loads((tmp_path / "packed" / "train.jsonl").read_text().splitlines()[0])["audio_filepath"] == "train/voice0/utt0.ogg"


def test_recode_refuses_a_level_outside_0_to_1(tmp_path):
    from asr.__main__ import main as cli

    with pytest.raises(SystemExit, match="between 0 and 1"):
        cli(["recode", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "packed"), "--level", "1.5"])


def test_recode_refuses_audio_outside_the_manifest_folder(tmp_path):
    from asr.__main__ import main as cli

    elsewhere = tmp_path / "elsewhere.wav"
    soundfile.write(elsewhere, np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    write_manifest(tmp_path / "corpus" / "train.jsonl", [ManifestEntry(elsewhere, 1.0, "silence")])
    with pytest.raises(SystemExit, match="outside"):
        cli(["recode", str(tmp_path / "corpus" / "train.jsonl"), "--out", str(tmp_path / "packed")])
    assert not (tmp_path / "packed").exists()


def test_alsa_recordings_manifest_reads_the_text_from_each_spoken_clip(tmp_path, capsys):
    sounds = tmp_path / "alsa"
    sounds.mkdir()
    for name, seconds in (("Front_Left", 1.5), ("Rear_Center", 1.25), ("Noise", 1.0)):  # Noise.wav is not speech
        soundfile.write(sounds / f"{name}.wav", speech_like(seconds, 48000), 48000)
    out = tmp_path / "real.jsonl"
    assert alsa_recordings_main(["--out", str(out), "--sounds", str(sounds)]) == 0
    entries = read_manifest(out)
    assert [(e.text, e.duration) for e in entries] == [("front left", 1.5), ("rear center", 1.25)]
    assert all(e.audio_filepath.is_file() for e in entries)
    assert alsa_recordings_main(["--out", str(tmp_path / "none.jsonl"), "--sounds", str(tmp_path / "missing")]) == 1
    assert "alsa-utils" in capsys.readouterr().err and not (tmp_path / "none.jsonl").exists()
