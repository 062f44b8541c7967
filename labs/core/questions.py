""" "Predict, then run": a question the learner answers before a run that settles it.

Each question names the settings of the run that answers it and reads the answer off that
run's results, so the lab (not the learner's memory of a textbook) checks the prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Question:
    prompt: str
    options: tuple[str, ...]
    settings: dict = field(default_factory=dict)  # Config fields the answering run uses
    outcome: Callable = None  # RunView -> (one of options, evidence in words)
    why: str = ""  # shown once the run has answered
