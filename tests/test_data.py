"""Data, offline first: generated sets, shipped digits, and torchvision's real loading code."""

import gzip
import struct

import numpy as np
import pytest
import torch

from labs.core import data


@pytest.mark.parametrize("name", data.TWO_D_SETS)
def test_two_d_sets_are_balanced_binary_and_seeded(name):
    X, y = data.two_d(name, 300, 0.1, seed=3)
    assert X.shape == (300, 2) and set(y.tolist()) == {0, 1}
    assert 0.35 < y.float().mean() < 0.65 and X.abs().max() < 2.5
    assert torch.equal(X, data.two_d(name, 300, 0.1, seed=3)[0])


@pytest.mark.parametrize("name", data.MULTI_CLASS_SETS)
def test_multi_class_sets_are_balanced_and_seeded(name):
    k = data.classes_of(name)
    X, y = data.two_d(name, 300, 0.1, seed=3)
    assert X.shape == (300, 2) and set(y.tolist()) == set(range(k)) and 3 <= k <= 5
    assert (torch.bincount(y, minlength=k) >= 300 / k - 10).all() and X.abs().max() < 2.5
    assert torch.equal(X, data.two_d(name, 300, 0.1, seed=3)[0])
    assert data.classes_of("moons") == 2


def test_split_is_disjoint_and_complete():
    X, y = data.two_d("moons", 100, 0.1, 0)
    Xa, ya, Xb, yb = data.split(X, y, 0.7, 0)
    assert len(Xa) == 70 and len(Xb) == 30
    assert torch.equal(torch.sort(torch.cat([Xa, Xb])[:, 0]).values, torch.sort(X[:, 0]).values)


def test_shipped_digit_sets_load_offline():
    X8, y8 = data.digits_8x8()
    assert X8.shape == (1797, 1, 8, 8) and 0 <= X8.min() and X8.max() <= 1
    X, y = data.mnist_subset()
    assert X.shape == (5000, 1, 28, 28) and X.max() == 1 and set(y.tolist()) == set(range(10))


def _write_idx(path, array, magic):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for dim in array.shape:
            f.write(struct.pack(">I", dim))
        f.write(array.astype(np.uint8).tobytes())


def test_full_mnist_loads_through_torchvision_when_present(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)), 2051)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)
    for f in raw.glob("*.gz"):  # torchvision reads the unpacked files
        f.with_suffix("").write_bytes(gzip.decompress(f.read_bytes()))
    monkeypatch.setenv("DLLAB_DATA_DIR", str(tmp_path))
    ds = data.image_set("mnist")
    assert ds.name == "mnist" and ds.note == ""
    assert ds.X_train.shape == (30, 1, 28, 28) and ds.X_test.shape == (10, 1, 28, 28)


def test_missing_full_dataset_falls_back_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("DLLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DLLAB_ALLOW_DOWNLOAD", "0")
    ds = data.image_set("fashion_mnist", max_train=100)
    assert ds.name == "mnist_subset" and len(ds.X_train) == 100
    assert "fashion_mnist is not in" in ds.note and "subset that ships" in ds.note
    calls = []
    monkeypatch.setattr(data, "torchvision_images", lambda *a: calls.append(a))
    assert "fashion_mnist is not in" in data.image_set("fashion_mnist").note
    assert calls == []  # the failure is remembered: no new attempt on the next run
