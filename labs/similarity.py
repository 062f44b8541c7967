"""How alike two layers' responses are: linear CKA (Kornblith et al., 2019), for comparing a
layer before and after fine-tuning, or two nets' layers, whatever their widths."""

from __future__ import annotations

import torch


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al., 2019) between two layers' responses to the same n images,
    (n, p) and (n, q): 1 for the same representation up to rotation and scale, near 0 for
    unrelated ones. Computed on the n×n Gram matrices (||BᵀA||² = <AAᵀ, BBᵀ>), which stay
    small however wide a layer is."""
    return gram_cka(centred_gram(a), centred_gram(b))


def centred_gram(a: torch.Tensor) -> torch.Tensor:
    a = a.float() - a.float().mean(0)
    return a @ a.T


def gram_cka(ka: torch.Tensor, kb: torch.Tensor) -> float:
    return float((ka * kb).sum() / (ka.norm() * kb.norm() + 1e-12))
