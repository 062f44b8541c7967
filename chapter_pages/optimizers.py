"""Chapter 3 — Optimizers & learning rate. UI only: the experiments are labs/optimizers.py."""

import streamlit as st

import chapters
from components import controls, curves, landscape, live, page
from labs import optimizers as lab
from labs import surfaces

PAGE = "optimizers"
page.intro(PAGE, chapters.by_slug(PAGE).label)
race_tab, finder_tab, net_tab = st.tabs(["Race on a surface", "LR range test", "Race on a real net"])


def draw_race(view):
    if view is None or view.latest is None:
        return
    v = view.view
    left, right = st.columns([3, 2])
    left.plotly_chart(landscape.trajectories_figure(v["contours"], v["paths"], v["minima"]), key="race-paths")
    with right:
        curves.show_curves(view.history, list(v["paths"]), "race-loss", title="loss", log_y=True)
        for name in v["paths"]:
            if name in v["diverged"]:
                st.write(f"**{name}**: diverged at step {v['diverged'][name]}")
            else:
                reached = v["reached"].get(name)
                st.write(
                    f"**{name}**: "
                    + (f"reached the minimum at step {reached}" if reached else "not there yet")
                )


with race_tab:
    s_cfg = controls.config_controls(lab.SurfaceConfig, f"{PAGE}--surface", st.container(), prefix="surface.")
    st.caption(surfaces.SURFACES[s_cfg.surface].note)
    controls.link_notices(f"{PAGE}--surface")
    live.run_buttons(f"{PAGE}--surface", lab.RACE, s_cfg, "Race")
    live.live(f"{PAGE}--surface", draw_race)


def use_lr(lr: float) -> None:
    controls.set_control(lab.Config, f"{PAGE}--net", "learning_rate", lr)


def draw_finder(view):
    if view is None or "lrs" not in view.view:
        return
    v = view.view
    suggested = v.get("suggested_lr")
    pick = st.plotly_chart(
        landscape.lr_finder_figure(v["lrs"], v["losses"], suggested),
        key="finder-curve",
        on_select="rerun",
        selection_mode="points",
    )
    points = pick.selection.points if pick and pick.selection else []
    left, right = st.columns(2)
    if suggested:
        left.button(
            f"Use suggested ({suggested:.2g}) in the net race",
            on_click=use_lr,
            args=(suggested,),
            key="finder-use",
        )
    if points:
        right.button(
            f"Use picked point ({points[0]['x']:.2g})",
            on_click=use_lr,
            args=(points[0]["x"],),
            key="finder-pick",
        )
    else:
        right.caption("…or click a point on the curve to pick its learning rate.")


with finder_tab:
    f_cfg = controls.config_controls(lab.FinderConfig, f"{PAGE}--finder", st.container(), prefix="finder.")
    controls.link_notices(f"{PAGE}--finder")
    live.run_buttons(f"{PAGE}--finder", lab.FINDER, f_cfg, "Run range test")
    live.live(f"{PAGE}--finder", draw_finder)


def draw_net(view):
    names = view.cfg.optimizers if view else ()
    planned = lab.lr_curve(n_cfg.schedule, n_cfg.learning_rate, n_cfg.steps)  # the next run's
    left, right = st.columns(2)
    left.plotly_chart(landscape.schedule_figure(planned, view.history if view else None), key="net-lr")
    if view is None or not view.history:
        return
    with right:
        curves.show_curves(
            view.history, [f"{n} loss" for n in names], "net-loss", title="training loss", log_y=True
        )
    curves.show_curves(view.history, [f"{n} test acc" for n in names], "net-acc", title="test accuracy")
    st.caption("Every optimizer trains its own copy of the same initial net on the same batches.")
    page.downloads(view, PAGE)


with net_tab:
    n_cfg = controls.config_controls(lab.Config, f"{PAGE}--net", st.container(), prefix="net.")
    controls.link_notices(f"{PAGE}--net")
    live.run_buttons(f"{PAGE}--net", lab.NET, n_cfg, "Race")
    live.live(f"{PAGE}--net", draw_net)

controls.share_link((s_cfg, "surface."), (f_cfg, "finder."), (n_cfg, "net."))
page.questions(lab.QUESTIONS, f"{PAGE}--surface", lab.RACE)
page.show_code(lab.race_on_surface, lab.train, lab.lr_range_test)
