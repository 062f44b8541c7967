"""Chapter 3 — Optimizers & learning rate. UI only: the experiments are labs/optimizers.py, what
they show while they train figures/views/optimizers.py."""

import streamlit as st

import chapters
from chapters import run_key
from components import controls, live, page
from figures import landscape
from figures.views import optimizers as views
from labs import optimizers as lab
from labs import surfaces

PAGE = "optimizers"
SURFACE, FINDER, NET = run_key(PAGE, "surface"), run_key(PAGE, "finder"), run_key(PAGE, "net")
page.intro(PAGE, chapters.by_slug(PAGE).label)
race_tab, finder_tab, net_tab = st.tabs(["Race on a surface", "LR range test", "Race on a real net"])

with race_tab:
    s_cfg = controls.config_controls(lab.SurfaceConfig, SURFACE, st.container())
    st.caption(surfaces.SURFACES[s_cfg.surface].note)
    controls.link_notices(SURFACE)
    live.run_buttons(SURFACE, lab.RACE, s_cfg, views.SURFACE)
    live.show(SURFACE, views.SURFACE)


def use_lr(lr: float) -> None:
    controls.set_control(lab.Config, NET, "learning_rate", lr)


def pick_rate(view) -> None:
    """Once the range test has ended: its suggestion, or a clicked point, sets the net race's rate."""
    suggested = view.view.get("suggested_lr")
    pick = st.session_state.get(live.chart_key(FINDER, "finder"))
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
    f_cfg = controls.config_controls(lab.FinderConfig, FINDER, st.container())
    controls.link_notices(FINDER)
    live.run_buttons(FINDER, lab.FINDER, f_cfg, views.FINDER)
    finder = live.show(FINDER, views.FINDER, selectable=("finder",))
    if finder is not None and "lrs" in finder.view:
        pick_rate(finder)

with net_tab:
    n_cfg = controls.config_controls(lab.Config, NET, st.container())
    controls.link_notices(NET)
    planned = lab.lr_curve(n_cfg.schedule, n_cfg.learning_rate, n_cfg.steps)
    st.plotly_chart(landscape.schedule_figure(planned), key="net-plan", theme=None)
    st.caption("The schedule of the next race. Every optimizer trains its own copy of the same initial net.")
    live.run_buttons(NET, lab.NET, n_cfg, views.NET)
    net = live.show(NET, views.NET)
    if net is not None:
        page.downloads(net, PAGE)

controls.share_link((s_cfg, SURFACE), (f_cfg, FINDER), (n_cfg, NET))
page.questions(lab.QUESTIONS, SURFACE, lab.RACE, views.SURFACE)
page.show_code(lab.race_on_surface, lab.train, lab.lr_range_test)
