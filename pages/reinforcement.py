"""Chapter 17 — Reinforcement learning. UI only: Q-learning is labs/qlearning.py (the world
labs/gridworld.py), value and policy iteration labs/bellman.py, the DQN labs/dqn.py, what they
show figures/views/reinforcement.py."""

import streamlit as st

import chapters
from chapters import run_key
from components import controls, live, page
from figures.views import reinforcement as views
from labs import bellman, dqn
from labs import reinforcement as lab

PAGE = "reinforcement"
GRID, BELLMAN, CARTPOLE = (run_key(PAGE, part) for part in ("grid", "bellman", "cartpole"))
page.intro(PAGE, chapters.by_slug(PAGE).label)
grid_tab, bellman_tab, cart_tab = st.tabs(
    ["Q-learning on a grid world", "Bellman backups", "DQN on CartPole"]
)


def greedy_replay(view) -> None:
    """The trained agent's greedy episode, frame by frame, with IG of its choice."""
    played = view.view.get("replay")
    if not played:
        return
    states, qs, attrs = played["states"], played["q"], played["attributions"]
    st.subheader("The trained agent, replayed")
    frame = st.slider("Frame", 0, len(states) - 1, 0, key=f"{CARTPOLE}-frame")
    action = dqn.ACTIONS[int(qs[frame].argmax())]
    left, right = st.columns(2)
    left.plotly_chart(
        views.cart_figure(states[frame], f"frame {frame}"), key=f"{CARTPOLE}-frame-cart", theme=None
    )
    right.plotly_chart(views.q_figure(qs[frame], dqn.ACTIONS), key=f"{CARTPOLE}-frame-q", theme=None)
    left.plotly_chart(
        views.attribution_figure(
            attrs["value"][frame], dqn.FEATURES, f"IG of Q(“{action}”): what it expects"
        ),
        key=f"{CARTPOLE}-frame-ig",
        theme=None,
    )
    right.plotly_chart(
        views.attribution_figure(attrs["margin"][frame], dqn.FEATURES, f"IG of the margin: why “{action}”"),
        key=f"{CARTPOLE}-frame-margin",
        theme=None,
    )
    value, margin = (abs(attrs[k]).mean(0) for k in ("value", "margin"))
    st.caption(
        f"The greedy agent kept going for {len(states)} steps; then {played['ended']}. Integrated "
        "Gradients from the resting state (cart centred and still, pole upright): left, of the "
        "chosen push's Q-value (what the agent expects to collect from this frame on); right, of "
        "that Q-value minus the other push's (what made it choose). Over the whole episode, "
        "the Q-value leaned most on **"
        + dqn.FEATURES[int(value.argmax())]
        + "** and the choice on **"
        + dqn.FEATURES[int(margin.argmax())]
        + "** (mean |IG| of the choice: "
        + ", ".join(f"{f} {m:.2f}" for f, m in zip(dqn.FEATURES, margin))
        + ")."
    )


with grid_tab:
    g_cfg = controls.config_controls(lab.GridConfig, GRID, st.container())
    controls.link_notices(GRID)
    live.run_buttons(GRID, lab.GRID, g_cfg, views.GRID)
    page.downloads(live.show(GRID, views.GRID), GRID)
    page.questions(lab.QUESTIONS, GRID, lab.GRID, views.GRID)

with bellman_tab:
    b_cfg = controls.config_controls(lab.BellmanConfig, BELLMAN, st.container())
    controls.link_notices(BELLMAN)
    live.run_buttons(BELLMAN, lab.BELLMAN, b_cfg, views.BELLMAN)
    page.downloads(live.show(BELLMAN, views.BELLMAN), BELLMAN)
    page.questions(lab.BELLMAN_QUESTIONS, BELLMAN, lab.BELLMAN, views.BELLMAN)

with cart_tab:
    if not dqn.available():
        st.warning(dqn.GYM_MISSING)
    c_cfg = controls.config_controls(lab.CartPoleConfig, CARTPOLE, st.container())
    controls.link_notices(CARTPOLE)
    live.run_buttons(CARTPOLE, lab.CARTPOLE, c_cfg, views.CARTPOLE)
    cart_view = live.show(CARTPOLE, views.CARTPOLE)
    if cart_view is not None and cart_view.state_dict:
        greedy_replay(cart_view)
    page.downloads(cart_view, CARTPOLE)

controls.share_link((g_cfg, GRID), (b_cfg, BELLMAN), (c_cfg, CARTPOLE))
page.show_code(lab.train_grid, bellman.value_sweeps, bellman.policy_sweeps, dqn.train, dqn.td_loss)
