"""Chapter 23's model and data path: the CNN chapter's 28×28 digits as an ordinary map-style `Dataset` whose
`__getitem__` augments one image at a time (as torchvision's transforms do in most training
scripts), fed by an ordinary `DataLoader`.

The lab's runs train inside worker processes that multiprocessing marks daemonic, and a daemonic
process may not start children, so a DataLoader with workers would be refused there. Its
workers are started with that mark lifted (`children_allowed`): they are daemonic themselves,
end with their loader, and exit on their own if the process that made them dies (PyTorch's
worker watchdog), so nothing is left behind.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from contextlib import contextmanager

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision.transforms import v2

from labs import convnets
from labs.core import data

# How the DataLoader's workers start. The lab's worker processes are spawned, and a spawned
# process makes its own children by spawning too: each DataLoader worker would then import torch
# afresh, ~5 s before its first batch, every epoch. Forking (what a training script on Linux gets)
# starts one in milliseconds. Elsewhere (macOS) the platform's default stays.
WORKER_START = "fork" if sys.platform.startswith("linux") else None

AUGMENTATIONS = {
    "none": "none",
    "crop": "shift (pad 2, random crop)",
    "affine": "rotate, shift, scale",
    "elastic": "rotate, shift, scale, then elastic warp",
}


def augmentation(name: str):
    """The per-image transform, or None. Their costs differ by ~30× (elastic warps the most)."""
    affine = v2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.9, 1.1))
    return {
        "none": None,
        "crop": v2.RandomCrop(28, padding=2),
        "affine": affine,
        "elastic": v2.Compose([affine, v2.ElasticTransform(alpha=20.0, sigma=4.0)]),
    }[name]


class Digits(Dataset):
    """(image (1, 28, 28) in [0, 1], label), augmented afresh on every read."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, augment: str = "none"):
        self.X, self.y = X, y
        self.transform = augmentation(augment)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        image = self.X[i]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.y[i]


def cnn(device: torch.device, channels_last: bool = False) -> torch.nn.Module:
    """The CNN chapter's default CNN (two conv layers, 8 and 16 channels, max pooling)."""
    model = convnets.build_model(convnets.Config(), 28).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def digits(seed: int) -> data.ImageSet:
    """4,000 training and 1,000 held-out digits (the CNN chapter's default set)."""
    X, y = data.mnist_subset()
    X_train, y_train, X_test, y_test = data.split(X, y, 0.8, seed)
    return data.ImageSet(X_train, y_train, X_test, y_test, tuple(map(str, range(10))), "mnist_subset")


def loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    pin_memory: bool,
    g: torch.Generator,
    samples: int | None = None,
) -> DataLoader:
    """Shuffled batches. Workers start afresh each epoch (not persistent): each epoch's
    iterator then seeds its workers from `g` alone, which is what lets a resumed run draw the
    very same augmentations as the run it continues. `samples`: one "epoch" of that many
    images, reshuffled as often as needed (a measurement that must not cross an epoch's end)."""
    sampler = RandomSampler(dataset, num_samples=samples, generator=g) if samples else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        generator=g,
        multiprocessing_context=WORKER_START if workers else None,
    )


@contextmanager
def children_allowed():
    """Let this process start the DataLoader's worker processes even when it is a daemonic
    worker of the lab's pool (see the module's docstring); as it was afterwards."""
    config = mp.current_process()._config  # the flag Process.start() checks; no public setter
    was = config.get("daemon", False)
    config["daemon"] = False
    try:
        yield
    finally:
        config["daemon"] = was


def epoch_batches(data_loader: DataLoader):
    """An iterator over one epoch's batches, its workers (if any) started now."""
    with children_allowed():
        return iter(data_loader)
