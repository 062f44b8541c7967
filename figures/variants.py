"""How a side-by-side run names each variant's numbers: "LSTM: test_acc", "plain: layer 3".

labs/core/compare.py writes a comparison's history with these names; the figures read it back
with the same functions, so the two cannot drift apart.
"""

from __future__ import annotations

SEPARATOR = ": "


def metric(variant: str, name: str) -> str:
    """The history key of one variant's metric (or per-layer statistic)."""
    return variant + SEPARATOR + name


def layer_history_of(layer_history: list[tuple[int, dict]], variant: str) -> list[tuple[int, dict]]:
    """One variant's per-layer statistics over time, with its own layer names."""
    prefix = variant + SEPARATOR
    picked = []
    for step, layers in layer_history:
        mine = {k[len(prefix) :]: v for k, v in layers.items() if k.startswith(prefix)}
        if mine:
            picked.append((step, mine))
    return picked
