"""Chapter 17 live. The grid world: the value of every cell (max over actions of Q) with the
greedy arrows, the agent's latest steps, and value iteration's answer beside it; how much of the
optimal policy has been found. Bellman backups: the values and arrows after each sweep, how
far each sweep moved them, and the share of cells already optimal. CartPole: the cart and pole
drawn from the state, the Q-values of that state, returns per episode with their moving mean,
ε and the replay buffer."""

from __future__ import annotations

import numpy as np

from figures import curves, plot
from figures.views import NUMBERS, Views, last_number

ARROWS = ("↑", "→", "↓", "←")
CELL_TEXT = {"G": "G", "P": "P", "g": "g", "#": ""}
EXIT_VALUE = {"G": 1.0, "P": -1.0, "g": 0.5}  # labs/gridworld.py: what arriving there pays


# ---------------------------------------------------------------- the grid world


def world_figure(rows: list[str], q: np.ndarray, title: str, trail=None, path=None) -> dict:
    """Cells coloured by max_a Q (walls grey, blank), the greedy arrow on every open cell,
    the goal and pit named; the agent's last steps (orange) and the greedy way from S (dashed)."""
    h, w = len(rows), len(rows[0])
    value = np.asarray(q).max(1).reshape(h, w).astype(float)
    kinds = np.array([list(r) for r in rows])
    value[kinds == "#"] = np.nan
    for kind, paid in EXIT_VALUE.items():
        value[kinds == kind] = paid
    walls = np.where(kinds == "#", 0.0, np.nan)
    text = [[CELL_TEXT.get(kinds[r, c], _arrow(q[r * w + c])) for c in range(w)] for r in range(h)]
    heat = plot.heatmap(
        value, "RdBu", zmin=-1, zmax=1, colorbar={"title": {"text": "max Q"}, "thickness": 10}
    )
    heat.update(
        text=text, texttemplate="%{text}", textfont={"size": 18}, hovertemplate="%{z:.3f}<extra></extra>"
    )
    data = [heat, plot.heatmap(walls, "Greys", showscale=False, zmin=-1, zmax=1, hoverinfo="skip")]
    if path:
        ys, xs = np.divmod(np.asarray(path), w)
        data.append(
            plot.line(xs.tolist(), ys.tolist(), "greedy way from S", color="#111", dash="dash", width=2)
        )
    if trail:
        ys, xs = np.divmod(np.asarray(trail), w)
        data.append(plot.line(xs.tolist(), ys.tolist(), "the agent's last steps", color="#f58518", width=3))
        agent = plot.markers([int(xs[-1])], [int(ys[-1])], "the agent", size=16)
        agent["marker"]["color"] = "#f58518"
        data.append(agent)
    start = next((r * w + c for r in range(h) for c in range(w) if kinds[r, c] == "S"), None)
    notes = (
        []
        if start is None
        else [{"text": "S", "x": start % w - 0.35, "y": start // w - 0.3, "showarrow": False}]
    )
    fig = plot.figure(data, title, 60 + 58 * h, annotations=notes)
    fig["layout"]["legend"] = {"orientation": "h", "y": -0.05}
    return plot.image_axes(fig)


def _arrow(q_row: np.ndarray) -> str:
    """The greedy action's arrow; a dot while every action is worth the same (nothing learned)."""
    q_row = np.asarray(q_row)
    return "·" if np.ptp(q_row) == 0 else ARROWS[int(np.argmax(q_row))]


def draw_grid(run) -> dict:
    v = run.view
    parts = {}
    if "q" in v and "rows" in v:  # watching: the world moves from the first step, before an episode ends
        title = "Q-learning: max Q and greedy arrows (G goal +1, P pit −1)"
        parts["world"] = world_figure(v["rows"], v["q"], title, v.get("trail"), v.get("path"))
    if "q_star" in v and "rows" in v:
        title = "value iteration (knows the dynamics)"
        parts["optimal"] = world_figure(v["rows"], v["q_star"], title, path=v.get("optimal_path"))
    if not run.history:
        return parts
    episodes, shares = run.series("optimal policy share")
    parts[NUMBERS] = [
        ["optimal policy share", last_number(run, "optimal policy share", ".0%")],
        ["return, last episode", last_number(run, "return", ".2f")],
        ["optimal from episode", _converged(episodes, shares)],
    ]
    parts["share"] = curves.curves_figure(
        {"greedy action optimal": (episodes, shares)},
        "share of cells where the greedy action is optimal (value iteration's)",
        height=260,
        x_title="episode",
    )
    parts["returns"] = curves.curves_figure(
        {"return": run.series("return"), "steps": _scaled(run.series("length"))},
        "return of the episode (and its steps ÷ 100)",
        height=260,
        x_title="episode",
    )
    return parts


def _scaled(series):
    xs, ys = series
    return xs, [y / 100 for y in ys]


def _converged(episodes: list, shares: list) -> str:
    at = None
    for e, s in zip(episodes, shares):
        at = (at or e) if s >= 1.0 else None
    return "–" if at is None else f"{at:,}"


# ---------------------------------------------------------------- Bellman backups


def draw_bellman(run) -> dict:
    """The values after the latest sweep with their arrows, how far the sweep moved them (log:
    value iteration's error shrinks by γ a sweep), and how much of the optimal policy the arrows
    already are."""
    v = run.view
    parts = {}
    if "q" in v and "rows" in v:
        sweep = run.history[-1]["step"] if run.history else 0
        method = v.get("method", "value iteration")
        title = f"{method}, sweep {sweep}: V and the greedy arrows (g small exit +0.5)"
        parts["world"] = world_figure(v["rows"], v["q"], title, path=v.get("path"))
    if not run.history:
        return parts
    gamma = v.get("gamma")
    parts[NUMBERS] = [
        ["sweeps", f"{run.history[-1]['step']:,}"],
        ["largest change, last sweep", last_number(run, "max change", ".2g")],
        ["value of S", last_number(run, "value of S", ".3f")],
        ["optimal policy share", last_number(run, "optimal policy share", ".0%")],
        ["horizon 1/(1 − γ)", "–" if gamma is None else f"{1 / (1 - gamma):.1f} steps"],
    ]
    if v.get("method") == "policy iteration":
        parts[NUMBERS].append(["policy improvements", last_number(run, "improvements", ".0f")])
    sweeps, changes = run.series("max change")
    shown = [(s, c) for s, c in zip(sweeps, changes) if c > 0]  # improvements move no value
    parts["change"] = curves.curves_figure(
        {"largest change of a value": ([s for s, _ in shown], [c for _, c in shown])},
        "how far the sweep moved the values (log)",
        log_y=True,
        height=260,
        x_title="sweep",
    )
    parts["share"] = curves.curves_figure(
        {"greedy action optimal": run.series("optimal policy share"), "value of S": run.series("value of S")},
        "share of cells already optimal, and the value of S",
        height=260,
        x_title="sweep",
    )
    return parts


# ---------------------------------------------------------------- CartPole


def cart_figure(state: np.ndarray, title: str = "the cart and pole, now") -> dict:
    """The cart as a box on its track, the pole as a line at its angle (drawn from the state:
    x in metres, θ in radians; the episode fails past ±2.4 m or ±12°)."""
    x, _, theta, _ = (float(v) for v in state)
    pole = 1.0  # drawn length (CartPole's half-length is 0.5)
    tip = (x + pole * np.sin(theta), 0.25 + pole * np.cos(theta))
    shapes = [
        {"type": "line", "x0": -2.4, "x1": 2.4, "y0": 0, "y1": 0, "line": {"color": "#555", "width": 2}},
        {
            "type": "rect",
            "x0": x - 0.25,
            "x1": x + 0.25,
            "y0": 0,
            "y1": 0.25,
            "fillcolor": "#4c78a8",
            "line": {"width": 0},
        },
        {
            "type": "line",
            "x0": x,
            "y0": 0.25,
            "x1": tip[0],
            "y1": tip[1],
            "line": {"color": "#e45756", "width": 6},
        },
    ]
    for edge in (-2.4, 2.4):
        shapes.append(
            {
                "type": "line",
                "x0": edge,
                "x1": edge,
                "y0": -0.1,
                "y1": 0.3,
                "line": {"color": "#d62728", "dash": "dot"},
            }
        )
    fig = plot.figure([], f"{title}: θ = {np.degrees(theta):+.1f}°, x = {x:+.2f} m", 260, legend=False)
    fig["layout"].update(
        shapes=shapes,
        xaxis={"range": [-2.6, 2.6], "zeroline": False, "title": "cart position (m)"},
        yaxis={"range": [-0.2, 1.4], "visible": False, "scaleanchor": "x"},
    )
    return fig


def q_figure(q: np.ndarray, actions=("push left", "push right")) -> dict:
    q = np.asarray(q, dtype=float)
    colours = [plot.colour(0) if k == int(q.argmax()) else "#bab0ac" for k in range(len(q))]
    return plot.figure(
        [plot.bar(list(actions), q.tolist(), colours, hovertemplate="%{x}: %{y:.2f}<extra></extra>")],
        "Q-values of this state (blue: the greedy choice)",
        260,
        legend=False,
    )


def returns_figure(returns: np.ndarray, random_return: float | None, window: int = 20) -> dict:
    returns = np.asarray(returns, dtype=float).reshape(-1, 2)
    steps, values = returns[:, 0], returns[:, 1]
    mean = np.convolve(values, np.ones(window) / window, mode="valid") if len(values) >= window else []
    points = plot.markers(steps.tolist(), values.tolist(), "episode return", size=4)
    points["marker"]["color"] = "#9ecae9"
    data = [points]
    if len(mean):
        data.append(
            plot.line(
                steps[window - 1 :].tolist(),
                list(mean),
                f"mean of the last {window}",
                color=plot.colour(0),
                width=3,
            )
        )
    fig = plot.figure(
        data,
        "return per episode (500 = balanced to the end)",
        300,
        xaxis={"title": "step"},
        yaxis={"range": [0, 520]},
    )
    marks = [] if random_return is None else [plot.hline(random_return, f"random policy {random_return:.0f}")]
    return plot.with_marks(fig, *marks)


def attribution_figure(attr: np.ndarray, features, title: str) -> dict:
    attr = np.asarray(attr, dtype=float)
    colours = [plot.colour(0) if a >= 0 else "#e45756" for a in attr]
    return plot.figure(
        [plot.bar(list(features), attr.tolist(), colours, hovertemplate="%{x}: %{y:.3f}<extra></extra>")],
        title,
        280,
        legend=False,
    )


def draw_cartpole(run) -> dict:
    if not run.history:
        return {}
    v = run.view
    parts = {
        NUMBERS: [
            ["mean return, last 20 episodes", last_number(run, "mean return (last 20)", ".0f")],
            ["ε", last_number(run, "epsilon", ".2f")],
            ["replay buffer", last_number(run, "replay size", ",.0f")],
            ["episodes", last_number(run, "episodes", ",.0f")],
        ],
        "epsilon": curves.curves_figure(
            {"ε": run.series("epsilon")}, "ε: chance of a random push", height=220
        ),
        "replay": curves.curves_figure(
            {"transitions": run.series("replay size")}, "replay buffer size", height=220
        ),
        "loss": curves.curves_figure(
            {"TD loss": run.series("td_loss")}, "TD loss (Huber)", log_y=True, height=220
        ),
    }
    if run.last("greedy mean return") is not None:
        parts[NUMBERS].append(
            ["greedy agent, mean of 10 episodes", last_number(run, "greedy mean return", ".0f")]
        )
    if "state" in v:
        parts["cart"] = cart_figure(v["state"])
    if "q" in v:
        parts["q"] = q_figure(v["q"])
    if "returns" in v:
        parts["returns"] = returns_figure(v["returns"], v.get("random_return"))
    return parts


GRID = Views(draw_grid, (("world", "optimal"), ("share", "returns")))
BELLMAN = Views(draw_bellman, (("world",), ("change", "share")))
CARTPOLE = Views(draw_cartpole, (((("cart", "q"), 1), (("returns",), 1.4)), ("epsilon", "replay", "loss")))
