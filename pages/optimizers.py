"""Chapter 3 — Optimizers & learning rate. UI only: the experiments are labs/optimizers.py, what
they show while they train components/views/optimizers.py."""

import streamlit as st

import chapters
from components import controls, landscape, live, page
from components.views import optimizers as views
from labs import optimizers as lab
from labs import surfaces

PAGE = "optimizers"
page.intro(PAGE, chapters.by_slug(PAGE).label)
race_tab, finder_tab, net_tab = st.tabs(["Race on a surface", "LR range test", "Race on a real net"])

with race_tab:
    s_cfg = controls.config_controls(lab.SurfaceConfig, f"{PAGE}--surface", st.container(), prefix="surface.")
    st.caption(surfaces.SURFACES[s_cfg.surface].note)
    controls.link_notices(f"{PAGE}--surface")
    live.run_buttons(f"{PAGE}--surface", lab.RACE, s_cfg, views.RACE)
    live.show(f"{PAGE}--surface", views.RACE)


def use_lr(lr: float) -> None:
    controls.set_control(lab.Config, f"{PAGE}--net", "learning_rate", lr)


def pick_rate(view) -> None:
    """Once the range test has ended: its suggestion, or a clicked point, sets the net race's rate."""
    suggested = view.view.get("suggested_lr")
    pick = st.session_state.get(live.chart_key(f"{PAGE}--finder", "finder"))
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
    live.run_buttons(f"{PAGE}--finder", lab.FINDER, f_cfg, views.FINDER)
    finder = live.show(f"{PAGE}--finder", views.FINDER, selectable=("finder",))
    if finder is not None and "lrs" in finder.view:
        pick_rate(finder)

with net_tab:
    n_cfg = controls.config_controls(lab.Config, f"{PAGE}--net", st.container(), prefix="net.")
    controls.link_notices(f"{PAGE}--net")
    planned = lab.lr_curve(n_cfg.schedule, n_cfg.learning_rate, n_cfg.steps)
    st.plotly_chart(landscape.schedule_figure(planned), key="net-plan", theme=None)
    st.caption("The schedule of the next race. Every optimizer trains its own copy of the same initial net.")
    live.run_buttons(f"{PAGE}--net", lab.NET, n_cfg, views.NET)
    net = live.show(f"{PAGE}--net", views.NET)
    if net is not None:
        page.downloads(net, PAGE)

controls.share_link((s_cfg, "surface."), (f_cfg, "finder."), (n_cfg, "net."))
page.questions(lab.QUESTIONS, f"{PAGE}--surface", lab.RACE, views.RACE)
page.show_code(lab.race_on_surface, lab.train, lab.lr_range_test)
