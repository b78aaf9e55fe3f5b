"""Manifest entries -> (log-mel features, label indices), and padded batches of them for CTC training.

Features are computed exactly as at inference (asr.features: resample to 16 kHz, LogMel), with
waveform augmentation slotted in between, on the 16 kHz signal, so the model trains on what
the recogniser will feed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import soundfile
import torch
import torchaudio.functional as F
from torch.nn.utils.rnn import pad_sequence

from asr.data.augment import SpecAugment, VocalTractWarp, WaveformAugmenter
from asr.data.manifest import ManifestEntry
from asr.features import AudioError, FeatureConfig, LogMel, to_mono_float32
from asr.text import BLANK_INDEX, encode, normalize


class SpeechDataset(torch.utils.data.Dataset):
    """Indexable utterances of a manifest, featurised (and optionally augmented) on access."""

    def __init__(
        self,
        entries: Sequence[ManifestEntry],
        feature_config: FeatureConfig = FeatureConfig(),
        augmenter: WaveformAugmenter | None = None,
        spec_augment: SpecAugment | None = None,
        vocal_tract_warp: VocalTractWarp | None = None,
    ):
        self.entries = list(entries)
        self.feature_config = feature_config
        self.augmenter = augmenter
        self.spec_augment = spec_augment
        self.vocal_tract_warp = vocal_tract_warp
        self.log_mel = LogMel(feature_config)

    @property
    def durations(self) -> list[float]:
        """Seconds per utterance, in index order: what LengthBatchSampler batches by."""
        return [entry.duration for entry in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (frames, n_mels) float32, target (length,) long) of one utterance."""
        entry = self.entries[index]
        waveform = self.load_waveform(entry)
        if self.augmenter is not None:
            waveform = self.augmenter(waveform)
        filterbank = None
        if self.vocal_tract_warp is not None:
            filterbank = self.vocal_tract_warp.filterbank(self.log_mel.filterbank, self.feature_config.sample_rate)
        features = self.log_mel(waveform, filterbank)
        if self.spec_augment is not None:
            features = self.spec_augment(features)
        target = torch.tensor(encode(normalize(entry.text)), dtype=torch.long)
        return features.float(), target

    def load_waveform(self, entry: ManifestEntry) -> torch.Tensor:
        """Mono float32 at the feature rate, resampled the same way compute_features does it."""
        try:
            samples, sample_rate = soundfile.read(str(entry.audio_filepath), dtype="float32")
            mono = torch.from_numpy(to_mono_float32(samples, sample_rate))
        except (soundfile.LibsndfileError, RuntimeError, OSError, AudioError) as error:
            raise AudioError(f"{entry.audio_filepath}: cannot use this audio ({error})") from None
        if sample_rate != self.feature_config.sample_rate:
            mono = F.resample(mono, int(sample_rate), self.feature_config.sample_rate)
        return mono


@dataclass
class Batch:
    """Zero-padded features and targets of several utterances, with their true lengths (as CTC loss wants them)."""

    features: torch.Tensor  # (batch, max frames, n_mels) float32
    feature_lengths: torch.Tensor  # (batch,) long
    targets: torch.Tensor  # (batch, max target length) long, padded with the blank index
    target_lengths: torch.Tensor  # (batch,) long

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch on another device."""
        return Batch(*(tensor.to(device, non_blocking=non_blocking) for tensor in self._tensors()))

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True), for faster asynchronous copies to the GPU."""
        return Batch(*(tensor.pin_memory() for tensor in self._tensors()))

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return self.features, self.feature_lengths, self.targets, self.target_lengths

    def __len__(self) -> int:
        return self.features.shape[0]


def collate_batch(items: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
    """Pad a list of (features, target) pairs into one Batch (DataLoader's collate_fn)."""
    features, targets = zip(*items)
    return Batch(
        features=pad_sequence(features, batch_first=True, padding_value=0.0),
        feature_lengths=torch.tensor([item.shape[0] for item in features], dtype=torch.long),
        targets=pad_sequence(targets, batch_first=True, padding_value=BLANK_INDEX),
        target_lengths=torch.tensor([item.shape[0] for item in targets], dtype=torch.long),
    )
