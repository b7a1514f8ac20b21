"""Training batches: an endless, deterministic, resumable stream grouped by aspect ratio.

Which images make up batch ``i``, and how each is augmented, is a pure function of (seed, i, rank, world size):
the sampler shuffles with a generator seeded by (seed, epoch) and gives each image an augmentation seed drawn from
the same generator. Resuming at iteration ``k`` replays the index stream (no image is decoded) up to ``k``, so a
resumed run sees exactly the batches an uninterrupted one would.

Aspect-ratio grouping puts landscape and portrait images in separate batches, so that padding a batch to its
largest image wastes little. Images without instances are kept: they teach the model what background looks like.

An image that fails to decode (a ``UserError`` from the dataset) does not stop training: its batch comes without it,
and with the message naming it, for the trainer to report. The same image fails the same way in a resumed run, so
resuming stays exact.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from maskrcnn.errors import UserError

Sample = tuple[int, int]  # (dataset index, augmentation seed)


class GroupedBatchSampler(Sampler[list[Sample]]):
    """Endless batches of (index, augmentation seed) for one process of ``world_size``.

    Each epoch is a seeded permutation of the whole dataset, dealt round-robin to the processes; within a process,
    images wait in a landscape or a portrait bucket until ``batch_size`` of one kind are there. Buckets carry over
    epochs, so no image is dropped and batches are always full.

    Example: 5 images, batch 2, one process, all landscape -> epoch 0 permutation [3, 0, 4, 1, 2] gives batches
    [3, 0], [4, 1], then [2, <first of epoch 1>], ...
    """

    def __init__(
        self,
        aspect_ratios: list[float],
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_iter: int = 0,
        group_by_aspect: bool = True,
    ):
        if not aspect_ratios:
            raise ValueError("cannot sample batches from an empty dataset")
        self.groups = np.array([int(r >= 1.0) if group_by_aspect else 0 for r in aspect_ratios], dtype=np.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_iter = start_iter

    def _stream(self) -> Iterator[list[Sample]]:
        buckets: dict[int, list[Sample]] = {0: [], 1: []}
        epoch = 0
        n = len(self.groups)
        while True:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(n)
            aug_seeds = rng.integers(0, 2**31 - 1, size=n)
            # Deal the permutation round-robin; pad it so that every process gets the same number of images.
            per_rank = -(-n // self.world_size)
            padded = np.resize(order, per_rank * self.world_size)
            for index in padded[self.rank :: self.world_size]:
                group = int(self.groups[index])
                buckets[group].append((int(index), int(aug_seeds[index])))
                if len(buckets[group]) == self.batch_size:
                    yield buckets[group]
                    buckets[group] = []
            epoch += 1

    def __iter__(self) -> Iterator[list[Sample]]:
        stream = self._stream()
        for _ in range(self.start_iter):  # replay indices only: cheap, and exact
            next(stream)
        yield from stream

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return 2**62


class SkipUnreadable(Dataset):
    """``dataset`` whose items that raise ``UserError`` (an image that cannot be decoded) come back as that error's
    message instead, for ``collate`` to leave out of the batch."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __getitem__(self, key: Sample) -> tuple[Tensor, dict] | str:
        try:
            return self.dataset[key]
        except UserError as e:
            return str(e)

    def __len__(self) -> int:
        return len(self.dataset)


def collate(batch: list[tuple[Tensor, dict] | str]) -> tuple[list[Tensor], list[dict], list[str]]:
    """N x (image, target) or message -> (images, targets, messages): images differ in size, the model pads them;
    the messages name the images left out."""
    samples = [item for item in batch if not isinstance(item, str)]
    return [image for image, _ in samples], [target for _, target in samples], [m for m in batch if isinstance(m, str)]


def build_train_loader(
    dataset: Dataset,
    *,
    aspect_ratios: list[float],
    batch_size: int,
    seed: int,
    num_workers: int,
    start_iter: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """An endless DataLoader of (images, targets, unreadable) batches (see ``collate``); iteration ``k`` of it is
    training iteration ``start_iter + k``."""
    sampler = GroupedBatchSampler(
        aspect_ratios, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, start_iter=start_iter
    )
    return DataLoader(
        SkipUnreadable(dataset),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        persistent_workers=num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
        worker_init_fn=_worker_init,
        # Its own generator: creating the iterator must not draw from the global RNG, which the model's samplers
        # use and a resumed run restores.
        generator=torch.Generator().manual_seed(seed),
    )


def _worker_init(_: int) -> None:
    # Workers decode and resize images; one thread each keeps them from fighting the main process for cores.
    torch.set_num_threads(1)
    # Ctrl-C reaches every process of the terminal's group, and schedulers (Slurm, torchrun, systemd) send SIGTERM to
    # the whole group: the main process decides when to stop (after the current iteration) and then shuts the
    # workers down; a worker that died of the signal would fail the batch in hand. A worker whose main process is
    # gone (SIGKILL) exits by itself within seconds (DataLoader's watchdog).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
