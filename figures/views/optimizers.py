"""Chapter 3 live, one set of views per experiment: the race on a surface, the LR range test,
and the race on a real net."""

from __future__ import annotations

from figures import curves, landscape
from figures.views import Views


def draw_race(run) -> dict:
    v = run.view
    if "paths" not in v:
        return {}
    lines = {name: run.series(name) for name in v["paths"]}
    finish = []
    for name in v["paths"]:
        if name in v["diverged"]:
            finish.append(f"{name}: diverged at step {v['diverged'][name]:,}")
        elif name in v["reached"]:
            finish.append(f"{name}: reached the minimum at step {v['reached'][name]:,}")
        else:
            finish.append(f"{name}: not there yet")
    return {
        "paths": landscape.trajectories_figure(v["contours"], v["paths"], v["minima"]),
        "loss": curves.curves_figure(lines, "height on the surface", log_y=True, styles=_colours(v["paths"])),
        "finish": {"title": "Who got there", "text": "\n".join(finish)},
    }


def _colours(names) -> dict:
    return {n: {"color": landscape.COLORS[n]} for n in names if n in landscape.COLORS}


def draw_finder(run) -> dict:
    v = run.view
    if "lrs" not in v:
        return {}
    return {"finder": landscape.lr_finder_figure(v["lrs"], v["losses"], v.get("suggested_lr"))}


def draw_net(run) -> dict:
    if not run.history:
        return {}
    names = run.cfg.optimizers
    return {
        "schedule": landscape.schedule_figure(run.view["planned_lr"], run.series("lr")),
        "loss": curves.curves_figure(
            {n: run.series(f"{n} loss") for n in names}, "training loss", log_y=True, styles=_colours(names)
        ),
        "accuracy": curves.curves_figure(
            {n: run.series(f"{n} test acc") for n in names}, "test accuracy", styles=_colours(names)
        ),
    }


SURFACE = Views(draw_race, (((("paths",), 3), (("loss", "finish"), 2)),), button="Race")
FINDER = Views(draw_finder, (("finder",),), button="Run range test")
NET = Views(draw_net, (("schedule", "loss"), ("accuracy",)), button="Race")
