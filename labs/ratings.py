"""Ratings for chapter 11: generated from hidden genres, or MovieLens 100k when it is in the data
directory (downloaded there when allowed). Each set is (user, item, rating) triples plus each
item's genre, which the models never see."""

from __future__ import annotations

import io
import logging
import os
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from labs.core.data import data_dir, exclusive

log = logging.getLogger("dllab.data")

GENRES = ("action", "comedy", "drama", "horror", "romance")
MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# u.item's 19 genre flags, in file order
MOVIELENS_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip


class RatingsUnavailable(RuntimeError):
    """MovieLens is not on disk and could not be fetched; the message says what to do."""


@dataclass(frozen=True)
class Ratings:
    name: str
    users: np.ndarray  # int64 user index per rating
    items: np.ndarray  # int64 item index per rating
    values: np.ndarray  # float32 rating
    n_users: int
    n_items: int
    genre: np.ndarray  # each item's (main) genre, as a string
    titles: list[str]
    scale: tuple[float, float]  # lowest and highest rating

    def __len__(self) -> int:
        return len(self.values)


CHUNK = 262_144  # ratings computed at once


@lru_cache(maxsize=4)
def generated(n_users: int, n_items: int, density: float, noise: float, seed: int) -> Ratings:
    """Each item belongs to one hidden genre (with a little of the others); each user likes
    some genres and dislikes others. rating = 3.4 + user bias + item bias + taste·genre +
    noise, rounded to half stars in [0.5, 5]. Popular items get more ratings (a long tail)."""
    rng = np.random.default_rng((seed, 11))
    genre = rng.integers(0, len(GENRES), n_items)
    profile = np.eye(len(GENRES))[genre] + rng.normal(0, 0.15, (n_items, len(GENRES)))
    taste = rng.normal(0, 0.8, (n_users, len(GENRES)))
    user_bias, item_bias = rng.normal(0, 0.35, n_users), rng.normal(0, 0.45, n_items)
    popularity = rng.pareto(1.5, n_items) + 0.2
    n = int(density * n_users * n_items)
    users = rng.integers(0, n_users, 2 * n)
    items = rng.choice(n_items, 2 * n, p=popularity / popularity.sum())
    pairs = np.unique(users * n_items + items)  # one rating per user and item
    pairs = rng.permutation(pairs)[:n]
    users, items = pairs // n_items, pairs % n_items
    liking = np.concatenate(  # a chunk at a time: millions of ratings × genres would take GBs
        [
            (taste[users[at : at + CHUNK]] * profile[items[at : at + CHUNK]]).sum(1)
            for at in range(0, len(users), CHUNK)
        ]
        or [np.zeros(0)]
    )
    raw = 3.4 + user_bias[users] + item_bias[items] + liking
    raw += rng.normal(0, noise, len(raw))
    values = np.clip(np.round(raw * 2) / 2, 0.5, 5.0).astype(np.float32)
    titles = [f"{GENRES[g]} #{i}" for i, g in enumerate(genre)]
    return Ratings(
        "generated", users, items, values, n_users, n_items, np.array(GENRES)[genre], titles, (0.5, 5.0)
    )


def movielens_dir() -> os.PathLike:
    return data_dir() / "ml-100k"


def movielens(allow_download: bool | None = None) -> Ratings:
    """MovieLens 100k (943 users, 1,682 films, 100,000 ratings of 1-5 stars) from the data
    directory; fetched into it first when missing and downloads are allowed."""
    folder = movielens_dir()
    if not (folder / "u.data").exists():
        if allow_download is None:
            allow_download = os.environ.get("DLLAB_ALLOW_DOWNLOAD", "1") != "0"
        if not allow_download:
            log.info("MovieLens 100k is not in %s and downloads are off", folder)
            raise RatingsUnavailable(
                "MovieLens 100k is not in this server's data folder and downloads are off: the "
                f"operator can unzip {MOVIELENS_URL} into the data folder (DLLAB_DATA_DIR)."
            )
        with exclusive(folder):  # one process downloads; the others find it there
            if not (folder / "u.data").exists():
                _download(folder)
    return _read_movielens(str(folder))


def _download(folder) -> None:
    """Fetch and unzip beside `folder`, then move it into place whole: a reader never sees a
    half-unzipped folder."""
    try:
        with urllib.request.urlopen(MOVIELENS_URL, timeout=20) as response:
            archive = response.read()
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".ml-100k-") as unpacked:
            zipfile.ZipFile(io.BytesIO(archive)).extractall(unpacked)
            os.replace(Path(unpacked) / folder.name, folder)
    except (OSError, zipfile.BadZipFile) as err:
        log.warning("MovieLens 100k could not be downloaded into %s: %s", folder, err)
        raise RatingsUnavailable(
            f"MovieLens 100k could not be downloaded ({type(err).__name__}): the operator can unzip "
            f"{MOVIELENS_URL} into the data folder (DLLAB_DATA_DIR)."
        ) from None


@lru_cache(maxsize=1)
def _read_movielens(folder: str) -> Ratings:
    raw = np.loadtxt(os.path.join(folder, "u.data"), dtype=np.int64, usecols=(0, 1, 2))
    titles, genre = [], []
    with open(os.path.join(folder, "u.item"), encoding="latin-1") as f:
        for line in f:
            fields = line.rstrip("\n").split("|")
            if len(fields) < 24:
                continue
            flags = [int(x or 0) for x in fields[5:24]]
            titles.append(fields[1])
            # the first genre flagged, skipping "unknown": Toy Story is Animation
            genre.append(next((MOVIELENS_GENRES[k] for k in range(1, 19) if flags[k]), "unknown"))
    users, items = raw[:, 0] - 1, raw[:, 1] - 1
    return Ratings(
        "MovieLens 100k",
        users,
        items,
        raw[:, 2].astype(np.float32),
        int(users.max()) + 1,
        max(int(items.max()) + 1, len(titles)),
        np.array(genre),
        titles,
        (1.0, 5.0),
    )


def split(n: int, seed: int, share: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation ratings, the same for every model of one seed."""
    order = np.random.default_rng((seed, 1)).permutation(n)
    cut = int(round(n * (1 - share)))
    return order[:cut], order[cut:]
