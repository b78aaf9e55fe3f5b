"""Batches of similar-length utterances, SortaGrad ordering, and an equal share per DDP rank.

Grouping by length keeps padding (wasted compute) small and bounds the memory of a batch by
its padded seconds rather than its count. SortaGrad (Deep Speech 2, section 3.1) feeds the
first epoch shortest-first, which steadies early CTC training; later epochs shuffle the
batches so the model does not see a fixed curriculum.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def length_batches(durations: Sequence[float], batch_seconds: float, max_batch_size: int) -> list[list[int]]:
    """Indices sorted by duration, cut into batches whose padded seconds and size stay within the limits."""
    order = sorted(range(len(durations)), key=lambda index: (durations[index], index))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # Sorted ascending, so the newcomer is the longest: it sets the padded length of the batch.
        fits = (len(current) + 1) * durations[index] <= batch_seconds and len(current) < max_batch_size
        if current and not fits:
            batches.append(current)
            current = []
        current.append(index)  # an utterance longer than batch_seconds still gets a batch of its own
    if current:
        batches.append(current)
    return batches


class LengthBatchSampler(Sampler[list[int]]):
    """Batch sampler for DataLoader(batch_sampler=...): length buckets, SortaGrad, DDP sharding."""

    def __init__(
        self,
        durations: list[float],
        batch_seconds: float,
        max_batch_size: int,
        sortagrad: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ):
        _check_arguments(len(durations), batch_seconds, max_batch_size, num_replicas, rank)
        self.batches = length_batches(durations, batch_seconds, max_batch_size)
        self.sortagrad, self.seed = sortagrad, seed
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, drop_last
        self.epoch = 0
        if drop_last and len(self.batches) < num_replicas:
            raise ValueError(f"{len(self.batches)} batches cannot give each of {num_replicas} ranks one with drop_last")

    def set_epoch(self, epoch: int) -> None:
        """Pick the epoch's order; every rank must call it with the same epoch before iterating."""
        self.epoch = epoch

    def epoch_order(self) -> list[int]:
        """Batch numbers in this epoch's order, identical on every rank (seeded by seed and epoch only)."""
        if self.sortagrad and self.epoch == 0:
            return list(range(len(self.batches)))
        return np.random.default_rng((self.seed, self.epoch)).permutation(len(self.batches)).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self.epoch_order()
        total = len(self) * self.num_replicas
        # Pad by repeating from the start so every rank takes the same number of steps (DDP would hang otherwise).
        order = (order * math.ceil(total / len(order)))[:total]
        # Striding keeps ranks in step on similar lengths during the shortest-first epoch.
        for batch_number in order[self.rank :: self.num_replicas]:
            yield list(self.batches[batch_number])

    def __len__(self) -> int:
        """Batches this rank yields per epoch."""
        if self.drop_last:
            return len(self.batches) // self.num_replicas
        return math.ceil(len(self.batches) / self.num_replicas)


def _check_arguments(count: int, batch_seconds: float, max_batch_size: int, num_replicas: int, rank: int) -> None:
    """Reject settings that would yield no batches or overlapping shards."""
    if count == 0:
        raise ValueError("no utterances to batch")
    if batch_seconds <= 0 or max_batch_size < 1:
        raise ValueError(f"batch_seconds must be > 0 and max_batch_size >= 1, got {batch_seconds} and {max_batch_size}")
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} is not in 0..{num_replicas - 1}")
