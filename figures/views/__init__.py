"""What each chapter shows while it trains: a layout of named parts and one pure function that
draws them from a run's history (`labs/core/history.py`).

The function runs in the worker process, where the snapshots are made (labs/core/frames.py),
and again in the server once the run has ended, for the final state: the same figures live
and at the end. It imports neither Streamlit nor a model.

A part is a plain plotly figure dict, a list of headline numbers (`NUMBERS`), or a block of
text ({"title": ..., "text": ...}). A layout is a tuple of rows; a row is a tuple of cells; a
cell is a part's name, or (names, width) to stack several parts in one wider column. A name
ending in "*" stands for every part whose name starts with the rest, three to a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

NUMBERS = "numbers"


@dataclass(frozen=True)
class Views:
    draw: Callable  # run (History or RunView) -> {name: part}
    layout: tuple
    button: str = "Train"  # what the page's Train button says, for the captions

    def __post_init__(self):
        for row in self.layout:
            for cell in row:
                ok = isinstance(cell, str) or (
                    isinstance(cell, tuple)
                    and len(cell) == 2
                    and isinstance(cell[1], (int, float))
                    and (isinstance(cell[0], str) or all(isinstance(n, str) for n in cell[0]))
                )
                if not ok:
                    raise ValueError(f"layout cell {cell!r}: a name, or (names, width)")


def views_of(module, part: str) -> Views:
    """A chapter's views for one of its experiments (the lab's EXPERIMENTS, by part): `VIEWS`
    in a module for a one-experiment page, else the Views named after the part (SURFACE, TOY)."""
    return module.VIEWS if not part else getattr(module, part.upper())


def cells(layout: tuple, names: list[str]) -> list[list[tuple[tuple[str, ...], float]]]:
    """The layout with its wildcards resolved against the parts drawn: rows of (names, width),
    leaving out parts that were not drawn and rows left empty."""
    rows = []
    for row in layout:
        resolved = []
        for cell in row:
            parts, width = (cell, 1.0) if isinstance(cell, str) else cell
            parts = (parts,) if isinstance(parts, str) else parts
            if len(parts) == 1 and parts[0].endswith("*"):
                matching = [n for n in names if n.startswith(parts[0][:-1])]
                rows += [[((n,), 1.0) for n in matching[i : i + 3]] for i in range(0, len(matching), 3)]
                continue
            present = tuple(p for p in parts if p in names)
            if present:
                resolved.append((present, width))
        if resolved:
            rows.append(resolved)
    return rows


def last_number(run, metric: str, fmt: str) -> str:
    value = run.last(metric)
    return "–" if value is None else format(value, fmt)
