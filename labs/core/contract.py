"""The lab contract: what a chapter module in labs/ provides, so that one runner, one set of
figures and one page machinery serve every chapter. docs/architecture.md says the same in prose.

A chapter module `labs/<slug>.py` (the registry's slug, chapters.py) must provide:

- `EXPERIMENTS`: its experiments in the order of the page's Train buttons, by part name: `""`
  for a page with one experiment, else the part that names the page's run key and link
  prefix (`"surface"` -> run key `optimizers--surface`, link settings `surface.<knob>`).
- `QUESTIONS`: the "predict, then run" questions (labs/core/questions.py), answered by runs
  of the page's first experiment.

Each `Experiment` names:

- `config`: a frozen dataclass, one `knob` field per control (labs/core/config.py): range, step,
  help text; defaults that make a good first run. Links, controls, validation and tests all
  read it.
- `train(cfg, device)`: a generator, a plain visible loop over `steps(total)` (or a `Plan`'s
  steps, labs/core/phases.py) that hears Stop through them, logs each step's loss with `log`,
  checks for divergence with `LossWatch` (labs/core/divergence.py), and yields `Snapshot`s of
  plain data, the last one `final=True` with the weights on the CPU. Nothing is sent into it.
- `cost(cfg)`: what a run of that config will take (labs/core/budget.py), for the budget.
- `prefers_gpu`: whether it gains from a GPU (tiny nets are overhead-bound: they stay on the CPU).
- optionally `stacking_key(cfg)` and `stack(device)`: runs whose configs give one key train
  together as one batch (labs/core/batches.py), in a stack the chapter provides: `add(key,
  cfg, control)` a member at the next step, `step()` every member once, returning (key,
  snapshot or the exception that ended it) for what they made, `members` while any trains,
  and `per_second()`: the steps a second its members are watched at (None: full speed; the
  batch's driver waits between steps, labs/core/stackdrive.py).
  A key of None: that run trains alone. Chapters without them always train alone.

Optional, by convention: one-experiment chapters name their pieces `Config`, `train`, `cost`
and `EXPERIMENT`; helpers that take a trained model and return arrays (`load_model`,
`explain_*`, Captum inside) for what the page shows after a run. Nothing outside a chapter's
own page and tests calls them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from labs.core.budget import Cost
    from labs.core.questions import Question
    from labs.core.snapshot import Snapshot


@dataclass(frozen=True)
class Experiment:
    """What a page's Train button starts: a lab's loop, what a config of it costs, and where
    it is best trained."""

    config: type  # the Config dataclass its controls and links are made from
    train: Callable[[object, torch.device], Iterator[Snapshot]]
    cost: Callable[[object], Cost]
    prefers_gpu: bool = False
    stacking_key: Callable[[object], Hashable | None] | None = None  # runs of one key batch together
    stack: Callable[[torch.device], object] | None = None  # where they train as one

    def batch_key(self, cfg) -> Hashable | None:
        """What a run of `cfg` must share with others to train in one batch; None: alone."""
        if self.stacking_key is None or self.stack is None:
            return None
        key = self.stacking_key(cfg)
        return None if key is None else (self.train.__module__, key)


class ChapterLab(Protocol):
    """A chapter module, as the app reads it."""

    EXPERIMENTS: Mapping[str, Experiment]
    QUESTIONS: Sequence[Question]


def lab_of(slug: str) -> ModuleType:
    """The chapter module of a registered slug (chapters.py)."""
    return importlib.import_module(f"labs.{slug}")


def experiments_of(lab: ModuleType) -> Mapping[str, Experiment]:
    """The chapter's experiments by part, checked against the contract."""
    found = getattr(lab, "EXPERIMENTS", None)
    if not isinstance(found, Mapping) or not found:
        raise TypeError(f"{lab.__name__} has no EXPERIMENTS: a mapping of part name to Experiment")
    for part, experiment in found.items():
        if not isinstance(part, str) or not isinstance(experiment, Experiment):
            raise TypeError(f"{lab.__name__}.EXPERIMENTS[{part!r}] is not an Experiment")
    if len(found) > 1 and "" in found:
        raise TypeError(f"{lab.__name__}: a page with several experiments names each one's part")
    return found
