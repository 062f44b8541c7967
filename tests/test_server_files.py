"""The server's files: learners are never shown where the server keeps them, and a cache two
processes write at once is always whole."""

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from labs import ratings
from labs.core import data
from labs.core.failures import explain_failure, without_paths


def test_a_failure_names_no_server_path_but_keeps_urls():
    err = FileNotFoundError(2, "No such file or directory", "/srv/lab/data/MNIST/raw/t10k.gz")
    assert "/srv" not in explain_failure(err) and "FileNotFoundError" in explain_failure(err)
    url = "unzip https://files.grouplens.org/datasets/movielens/ml-100k.zip into the data folder"
    assert without_paths(url) == url


def test_missing_datasets_tell_the_learner_what_to_do_without_the_servers_paths(tmp_path, monkeypatch):
    secret = tmp_path / "secret-dir"
    with pytest.raises(data.DataUnavailable) as missing:
        data.torchvision_images("mnist", secret, download=False)
    assert str(tmp_path) not in str(missing.value) and "DLLAB_DATA_DIR" in str(missing.value)
    monkeypatch.setenv("DLLAB_DATA_DIR", str(secret))
    with pytest.raises(ratings.RatingsUnavailable) as no_films:
        ratings.movielens(allow_download=False)
    assert str(tmp_path) not in str(no_films.value) and "DLLAB_DATA_DIR" in str(no_films.value)


def _write_when_all_are_ready(barrier, path: Path, value: int) -> None:
    x = np.random.default_rng(value).random(1_000_000 + 150_000 * value).astype(np.float32)  # sizes differ
    x[0] = value
    barrier.wait()
    data._save_quietly(path, x=x)


def test_a_cache_written_by_many_processes_at_once_is_whole(tmp_path):
    """Eight processes write the same cache file at the same moment (as workers and replicas
    do on a first start): it is one writer's whole file, and no temporary file is left."""
    ctx = multiprocessing.get_context("fork")  # the writers touch numpy only
    path, barrier = tmp_path / "cache.npz", ctx.Barrier(8)
    writers = [ctx.Process(target=_write_when_all_are_ready, args=(barrier, path, i)) for i in range(8)]
    [w.start() for w in writers]
    [w.join(60) for w in writers]
    with np.load(path) as f:
        x = f["x"]
    writer = int(x[0])
    assert 0 <= writer < 8 and len(x) == 1_000_000 + 150_000 * writer  # one writer's, whole
    assert np.array_equal(x[1:], np.random.default_rng(writer).random(len(x)).astype(np.float32)[1:])
    assert sorted(p.name for p in Path(tmp_path).iterdir() if not p.name.endswith(".lock")) == ["cache.npz"]
