"""The computation graph autograd recorded (labs/autograd_graph.py), drawn left to right from
the leaves to the output, with the size of the gradient that flowed back along each edge."""

from __future__ import annotations

from figures import plot


def graph_figure(graph: dict, height: int = 260) -> dict:
    nodes, edges = graph["nodes"], graph["edges"]
    if not nodes:
        return plot.empty("a constant: nothing for autograd to record")
    deepest = max(n["depth"] for n in nodes)
    rows: dict[int, int] = {}
    where = {}
    for n in sorted(nodes, key=lambda n: (n["depth"], n["id"])):  # leaves left, output right
        row = rows.get(n["depth"], 0)
        rows[n["depth"]] = row + 1
        where[n["id"]] = (deepest - n["depth"], -row)
    notes = []  # one layout update for all: add_annotation per edge costs ~10 ms each
    for e in edges:
        (x0, y0), (x1, y1) = where[e["src"]], where[e["dst"]]
        notes.append(  # an arrow from the node nearer the output back to its input
            dict(
                x=x1 + 0.12,
                y=y1,
                ax=x0 - 0.12,
                ay=y0,
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                showarrow=True,
                arrowhead=2,
                arrowwidth=1.5,
                arrowcolor="#e45756",
            )
        )
        notes.append(
            dict(
                x=(x0 + x1) / 2,
                y=(y0 + y1) / 2 + 0.18,
                text=f"‖grad‖ {e['grad_norm']:.3g}",
                showarrow=False,
                font=dict(size=11, color="#e45756"),
            )
        )
    xs, ys = zip(*(where[n["id"]] for n in nodes))
    nodes_trace = {
        "type": "scatter",
        "x": list(xs),
        "y": list(ys),
        "mode": "markers+text",
        "text": [n["label"] for n in nodes],
        "textposition": "bottom center",
        "marker": {
            "size": 26,
            "color": ["#54a24b" if n["op"] == "AccumulateGrad" else "#4c78a8" for n in nodes],
        },
        "hovertext": [n["op"] for n in nodes],
        "hoverinfo": "text",
        "showlegend": False,
    }
    return plot.figure(
        [nodes_trace],
        "backward: gradients flow right to left (green: leaves that get a .grad)",
        height,
        legend=False,
        annotations=notes,
        xaxis={"visible": False, "range": [-0.5, deepest + 0.5]},
        yaxis={"visible": False, "range": [min(ys) - 0.8, 0.6]},
    )


def example() -> dict:
    graph = {
        "nodes": [
            {"id": 0, "op": "MeanBackward0", "label": "mean", "depth": 0},
            {"id": 1, "op": "PowBackward0", "label": "power", "depth": 1},
            {"id": 2, "op": "AccumulateGrad", "label": "c", "depth": 2},
        ],
        "edges": [{"src": 0, "dst": 1, "grad_norm": 0.1}, {"src": 1, "dst": 2, "grad_norm": 0.3}],
    }
    return graph_figure(graph)
