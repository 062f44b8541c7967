"""How a run can fail or end early, and what the learner reads about it.

Every way is a type here, so the runner recognises it by type (never by its message's words),
and `explain_failure` / `ending_message` turn each into words a learner can act on. The server
log gets the same facts with the run's settings (labs/core/runner.py).
"""

from __future__ import annotations

import re

import torch

from labs.core.budget import Limits, duration, size
from labs.core.config import ConfigError
from labs.core.control import Ending
from labs.core.data import DataUnavailable


class Diverged(RuntimeError):
    """The loss became NaN or infinite: a lesson about the learning rate, not a crash."""


class WorkerLost(RuntimeError):
    """The worker process died mid-run and nobody here killed it (the kernel's OOM killer, a crash)."""


class RemoteFailure(RuntimeError):
    """The run failed inside the worker; the message is already in the learner's words."""


class CutShort(RuntimeError):
    """The server ended a worker that did not stop in time; `ending` says why."""

    def __init__(self, ending: Ending, detail: str = ""):
        super().__init__(detail)
        self.ending, self.detail = ending, detail


# Failures whose message is already in a learner's words (a worker's failure was explained,
# and logged, inside the worker).
IN_WORDS = (ConfigError, DataUnavailable, RemoteFailure)
EXPECTED = (ConfigError, DataUnavailable)  # a learner's setting, not a bug: one log line


# an absolute path on the server (/srv/lab/data/x.npz), never part of a URL (https://host/a/b)
SERVER_PATH = re.compile(r"(?<![\w:/.])(?:[A-Za-z]:)?(?:[/\\][\w.\-~@+]+){2,}[/\\]?")


def without_paths(text: str) -> str:
    """`text` with this server's file paths taken out: a learner is told what went wrong, not
    where the server keeps its files (the operator's log has them)."""
    return SERVER_PATH.sub("(a file on the server)", text)


def explain_failure(err: BaseException) -> str:
    """A message a learner can act on, for anything a run may raise (never a server path)."""
    return without_paths(_explained(err))


def _explained(err: BaseException) -> str:
    text = str(err)
    if isinstance(err, torch.cuda.OutOfMemoryError) or "cuda out of memory" in text.lower():
        return (
            "Out of GPU memory: the server's GPU is full. Try a smaller model or batch "
            "size, or train again when other runs have finished."
        )
    if "can't allocate memory" in text.lower() or isinstance(err, MemoryError):
        return (
            "Out of memory: the server could not give this run the memory it asked for. Try a "
            "smaller model or batch size."
        )
    if isinstance(err, WorkerLost):
        return (
            "The run's training process ended unexpectedly (it was killed, or the server ran out "
            "of memory). The curves so far are kept; try a smaller model or batch size."
        )
    if isinstance(err, Diverged):
        return f"Training diverged: {text} Try a smaller learning rate."
    if isinstance(err, IN_WORDS):
        return text
    return (
        f"The run failed ({type(err).__name__}: {text}). The app is fine; change a setting and train again."
    )


def ending_message(ending: Ending | None, limits: Limits, weights_kept: bool, peak_bytes: float = 0) -> str:
    """How a run that ended early ended, in the learner's words."""
    kept = "the curves and weights so far are kept" if weights_kept else "the curves so far are kept"
    if ending == Ending.TIME:
        return (
            f"Stopped at this server's time limit of {duration(limits.seconds)} per run: {kept}. "
            "Fewer steps or a smaller model fit in it."
        )
    if ending == Ending.MEMORY:
        used = f"about {size(peak_bytes)}" if peak_bytes else "more"
        return (
            f"Stopped: the run took {used} of memory, past this server's {size(limits.memory_bytes)} "
            f"per run; {kept}. Try a smaller model or batch size."
        )
    if weights_kept:
        return "Stopped: the curves and weights so far are kept."
    return (
        "Stopped: the run was in the middle of a long step, so its process was ended. The curves "
        "so far are kept, but not the weights of that moment."
    )
