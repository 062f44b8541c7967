"""Learned vectors (embeddings of stores, films, words) drawn on a plane."""

from __future__ import annotations

import numpy as np


def principal_plane(vectors: np.ndarray) -> np.ndarray:
    """(n, d) vectors on their first two principal components, (n, 2). Each axis's sign is set
    so that its largest coordinate is positive: a live map does not flip between two frames.
    One-number vectors lie on the x axis."""
    centred = vectors - vectors.mean(0)
    if vectors.shape[1] == 1:
        return np.concatenate([centred, np.zeros_like(centred)], 1)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    plane = centred @ vt[:2].T
    if plane.shape[1] == 1:  # two numbers but one of them constant: still a plane
        plane = np.concatenate([plane, np.zeros_like(plane)], 1)
    signs = np.sign(plane[np.abs(plane).argmax(0), range(2)])
    return plane * np.where(signs == 0, 1, signs)
