"""Running a lab the way the app does (the shared runner, on the CPU) and waiting for the end."""

import torch

from labs.core.runner import RunState, TrainingRun

CPU = torch.device("cpu")


def run_view(train, cfg, must_finish: bool = True, timeout: float = 300):
    """The ended run's view. Unless told a run may end otherwise (some questions are about a
    run that diverges), fails with the run's own message when it did not end DONE."""
    run = TrainingRun(train, cfg, CPU).start()
    assert run.wait(timeout)
    view = run.view()
    assert view.state == RunState.DONE or not must_finish, view.message
    return view
